"""Synthetic pediatric wrist and elbow radiographs ("phantoms") with fracture and fat pad boxes.

The phantoms train and test the demonstration models and the pipeline. They are drawings, not
patient data. Each one shows a few tube-shaped long bones with a bright cortex, a less bright
medulla with trabecular texture and dark growth plates. Carpal or elbow ossification centres, soft
tissue, blur, quantum-like noise and a burned-in side marker complete it.

A fracture is a jagged lucent line across one bone, complete or incomplete, often with a displaced
or angulated distal fragment. On a lateral elbow view a fracture often also lifts the anterior fat
pad into a dark triangle (the "sail sign"). Every value comes from the ``numpy.random.Generator``
passed in, so a seed reproduces the same images.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.findings import FAT_PAD, FRACTURE
from inference.package import BODY_PARTS, VIEWS

logger = logging.getLogger(__name__)

Box = tuple[str, float, float, float, float]


@dataclass(frozen=True)
class Phantom:
    """One synthetic radiograph and its ground truth.

    ``image`` is float32 in [0, 1] with bone bright. ``boxes`` are (label, x0, y0, x1, y1) in image
    pixels, x the column and y the row. ``fracture`` is True for every image of a fractured study.
    """

    image: np.ndarray = field(repr=False)
    boxes: list[Box]
    fracture: bool
    body_part: str
    view: str
    laterality: str
    patient_id: str


@dataclass(frozen=True)
class Anatomy:
    """Per-patient parameters that both views of one study share."""

    age: float
    bone_scale: float
    soft_tissue: float
    fracture: FractureSpec | None


@dataclass(frozen=True)
class FractureSpec:
    """Site and appearance of a fracture, shared by both views; each view adds its own random details."""

    site: str
    position: float
    complete: bool
    gap_width: float
    gap_strength: float
    shift: float
    angulation: float
    swelling: float
    fat_pad: bool


@dataclass
class _Bone:
    """A long bone as a centreline from proximal to distal end with a half-width per point."""

    points: np.ndarray
    half_widths: np.ndarray
    cortex: float
    physis_from_end: float | None = None
    round_distal: bool = True


@dataclass
class _Scene:
    """Attenuation layers of one image before the display transform, plus the finding outlines."""

    body_part: str
    view: str
    height: int
    width: int
    scale: float
    soft: np.ndarray
    bones: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, _Bone] = field(default_factory=dict)
    findings: list[tuple[str, np.ndarray]] = field(default_factory=list)


# Fracture sites per body part: (bone name, range of position along the bone from its distal end,
# as a fraction of the bone length in view) and their relative frequency.
FRACTURE_SITES = {
    "wrist": {"radius-distal": 0.6, "radius-shaft": 0.15, "ulna-distal": 0.25},
    "elbow": {"humerus-supracondylar": 0.55, "humerus-lateral-condyle": 0.2, "radius-neck": 0.25},
}


def generate_phantom(
    rng: np.random.Generator,
    *,
    body_part: str,
    view: str,
    laterality: str = "R",
    fracture: bool = False,
    patient_id: str = "PHANTOM",
    anatomy: Anatomy | None = None,
) -> Phantom:
    """Draw one synthetic radiograph.

    Parameters
    ----------
    rng
        Source of every random value.
    body_part, view, laterality
        ``"wrist"`` or ``"elbow"``, ``"AP"`` or ``"LAT"``, ``"L"`` or ``"R"``.
    fracture
        Whether to draw a fracture; ignored when ``anatomy`` is given, which already decides it.
    patient_id
        Copied to the result.
    anatomy
        Patient parameters to share between views; drawn from ``rng`` when None.

    Returns
    -------
    The phantom with its image and boxes.
    """
    _check_choice("body_part", body_part, BODY_PARTS)
    _check_choice("view", view, VIEWS)
    _check_choice("laterality", laterality, ("L", "R"))
    if anatomy is None:
        anatomy = sample_anatomy(rng, body_part, fracture=fracture)

    scene = _build_scene(rng, body_part, view, anatomy)
    attenuation, points = _compose(rng, scene, anatomy)
    image, points = _place(rng, attenuation, points)
    if laterality == "L":
        image, points = _mirror(image, points)

    image = _finish(rng, image, laterality, view)
    boxes = _boxes(points, image.shape, scene.scale)
    return Phantom(
        image=image,
        boxes=boxes,
        fracture=anatomy.fracture is not None,
        body_part=body_part,
        view=view,
        laterality=laterality,
        patient_id=patient_id,
    )


def sample_anatomy(rng: np.random.Generator, body_part: str, *, fracture: bool) -> Anatomy:
    """Draw the patient parameters of one study: age, size, soft tissue and the fracture, if any."""
    age = float(rng.uniform(3.0, 15.0))
    spec = _sample_fracture(rng, body_part) if fracture else None
    return Anatomy(
        age=age,
        bone_scale=float(rng.uniform(0.85, 1.1) * (0.9 + 0.01 * age)),
        soft_tissue=float(rng.uniform(0.2, 0.32)),
        fracture=spec,
    )


def generate_study(
    rng: np.random.Generator,
    *,
    body_part: str,
    fracture: bool,
    patient_id: str,
    laterality: str | None = None,
) -> list[Phantom]:
    """Draw an AP and a lateral view of one patient, sharing anatomy, side and fracture."""
    side = laterality or str(rng.choice(["L", "R"]))
    anatomy = sample_anatomy(rng, body_part, fracture=fracture)
    return [
        generate_phantom(rng, body_part=body_part, view=view, laterality=side, patient_id=patient_id, anatomy=anatomy)
        for view in VIEWS
    ]


def generate_dataset(
    patients: int,
    *,
    seed: int,
    body_parts: Sequence[str] = BODY_PARTS,
    fracture_rate: float = 0.5,
    first_patient: int = 0,
) -> list[Phantom]:
    """Draw one AP and one lateral phantom per patient.

    Patient ``i`` draws from ``numpy.random.default_rng([seed, i])``, so a patient's images do not
    depend on how many patients are drawn, and ranges of ``first_patient`` never overlap.

    Parameters
    ----------
    patients
        Number of patients. The result contains twice as many phantoms.
    seed
        Seed of the whole set.
    body_parts
        Body parts, assigned to patients in turn.
    fracture_rate
        Probability that a patient's study shows a fracture.
    first_patient
        Index of the first patient, to draw disjoint sets with one seed.

    Returns
    -------
    The phantoms, two per patient, with patient ids ``PH<seed>-<index>``.
    """
    if patients < 0:
        raise ValueError(f"patients must be 0 or more, found {patients}")
    for part in body_parts:
        _check_choice("body_part", part, BODY_PARTS)

    phantoms: list[Phantom] = []
    for index in range(first_patient, first_patient + patients):
        rng = np.random.default_rng([seed, index])
        body_part = body_parts[index % len(body_parts)]
        fracture = bool(rng.random() < fracture_rate)
        patient_id = f"PH{seed}-{index:05d}"
        phantoms.extend(generate_study(rng, body_part=body_part, fracture=fracture, patient_id=patient_id))

    logger.debug("generated %d phantoms of %d patients, seed %d", len(phantoms), patients, seed)
    return phantoms


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, found {value!r}")


def _sample_fracture(rng: np.random.Generator, body_part: str) -> FractureSpec:
    sites = FRACTURE_SITES[body_part]
    names = list(sites)
    probabilities = np.array([sites[name] for name in names])
    site = str(rng.choice(names, p=probabilities / probabilities.sum()))

    complete = bool(rng.random() < 0.65)
    displaced = complete and rng.random() < 0.8
    return FractureSpec(
        site=site,
        position=float(rng.uniform(0.0, 1.0)),
        complete=complete,
        gap_width=float(rng.uniform(3.0, 6.0)),
        gap_strength=float(rng.uniform(0.7, 1.0)),
        shift=float(rng.uniform(10.0, 35.0)) if displaced else 0.0,
        angulation=float(rng.uniform(8.0, 25.0)) if rng.random() < 0.7 else 0.0,
        swelling=float(rng.uniform(0.05, 0.12)),
        fat_pad=body_part == "elbow" and bool(rng.random() < 0.75),
    )


# ----------------------------------------------------------------------------------------------
# Geometry of the bones for each body part and view, in a canonical right-side frame.


def _canvas(rng: np.random.Generator, body_part: str, view: str) -> tuple[int, int]:
    height = int(rng.integers(680, 860))
    aspect = {
        ("wrist", "AP"): (0.66, 0.78),
        ("wrist", "LAT"): (0.55, 0.68),
        ("elbow", "AP"): (0.7, 0.85),
        ("elbow", "LAT"): (0.9, 1.1),
    }[(body_part, view)]
    return height, int(height * rng.uniform(*aspect))


def _curve(start: Sequence[float], middle: Sequence[float], end: Sequence[float], count: int = 48) -> np.ndarray:
    """Sample a quadratic Bezier curve from ``start`` to ``end`` bent towards ``middle``."""
    t = np.linspace(0.0, 1.0, count)[:, None]
    a, b, c = (np.asarray(p, dtype=np.float64) for p in (start, middle, end))
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


def _flare(count: int, shaft: float, end: float, flare_from: float) -> np.ndarray:
    """Half-widths that stay at ``shaft`` and widen smoothly to ``end`` over the distal part."""
    t = np.linspace(0.0, 1.0, count)
    ramp = np.clip((t - flare_from) / (1.0 - flare_from), 0.0, 1.0)
    return shaft + (end - shaft) * ramp**1.6


def _wrist_bones(rng: np.random.Generator, h: int, w: int, s: float, age: float, view: str) -> dict[str, _Bone]:
    physis = 0.05 * h * (1.1 - 0.02 * age)
    if view == "AP":
        radius_x = w * rng.uniform(0.36, 0.42)
        ulna_x = radius_x + w * rng.uniform(0.2, 0.25)
        radius_end = h * rng.uniform(0.34, 0.4)
        radius = _Bone(
            _curve((radius_x + 8 * s, h + 30), (radius_x - 6 * s, h * 0.7), (radius_x, radius_end)),
            _flare(48, 23 * s, 43 * s, 0.62), 6.0 * s, physis)
        ulna = _Bone(
            _curve((ulna_x - 6 * s, h + 30), (ulna_x + 4 * s, h * 0.7), (ulna_x, radius_end + h * rng.uniform(0.02, 0.05))),
            _flare(48, 15 * s, 22 * s, 0.7), 5.0 * s, physis * 0.9)
    else:
        axis_x = w * rng.uniform(0.45, 0.55)
        radius_end = h * rng.uniform(0.34, 0.4)
        tilt = rng.uniform(6, 14) * s
        radius = _Bone(
            _curve((axis_x, h + 30), (axis_x - 4 * s, h * 0.65), (axis_x + tilt, radius_end)),
            _flare(48, 22 * s, 34 * s, 0.65), 5.5 * s, physis)
        ulna = _Bone(
            _curve((axis_x - 10 * s, h + 30), (axis_x - 12 * s, h * 0.7), (axis_x - 8 * s, radius_end + 0.03 * h)),
            _flare(48, 14 * s, 18 * s, 0.72), 4.5 * s, physis * 0.9)
    return {"radius": radius, "ulna": ulna}


def _elbow_bones(rng: np.random.Generator, h: int, w: int, s: float, age: float, view: str) -> dict[str, _Bone]:
    physis = 0.035 * h * (1.1 - 0.02 * age)
    if view == "AP":
        humerus_x = w * rng.uniform(0.45, 0.55)
        humerus_end = h * rng.uniform(0.46, 0.52)
        joint = humerus_end + 30 * s
        humerus = _Bone(
            _curve((humerus_x - 6 * s, -30), (humerus_x + 5 * s, h * 0.25), (humerus_x, humerus_end)),
            _flare(48, 25 * s, 68 * s, 0.72), 6.0 * s, None, round_distal=False)
        radius = _Bone(
            _curve((humerus_x - 38 * s, joint), (humerus_x - 44 * s, h * 0.8), (humerus_x - 36 * s, h + 30)),
            _radius_profile(48, s), 4.5 * s)
        ulna = _Bone(
            _curve((humerus_x + 22 * s, humerus_end - 16 * s), (humerus_x + 30 * s, h * 0.75), (humerus_x + 26 * s, h + 30)),
            _ulna_profile(48, s), 5.0 * s)
    else:
        humerus_x = w * rng.uniform(0.36, 0.44)
        humerus_end = h * rng.uniform(0.5, 0.56)
        joint_y = humerus_end + 8 * s
        humerus = _Bone(
            _curve((humerus_x - 10 * s, -30), (humerus_x - 4 * s, h * 0.3), (humerus_x + 14 * s, humerus_end)),
            _flare(48, 26 * s, 40 * s, 0.78), 6.0 * s, None, round_distal=True)
        radius = _Bone(
            _curve((humerus_x + 34 * s, joint_y + 18 * s), (w * 0.7, joint_y + 22 * s), (w + 30, joint_y + 26 * s)),
            _radius_profile(48, s), 4.5 * s)
        ulna = _Bone(
            _curve((humerus_x - 40 * s, humerus_end - 40 * s), (humerus_x - 10 * s, joint_y + 60 * s), (w + 30, joint_y + 50 * s)),
            _ulna_profile(48, s), 5.0 * s)
    return {"humerus": humerus, "radius": radius, "ulna": ulna}


def _radius_profile(count: int, s: float) -> np.ndarray:
    """Forearm radius seen from the elbow: a wide head, a narrow neck, then the shaft."""
    t = np.linspace(0.0, 1.0, count)
    head = 22 * s * np.exp(-((t / 0.06) ** 2))
    return 13 * s + head + 2 * s * t


def _ulna_profile(count: int, s: float) -> np.ndarray:
    """Proximal ulna: a broad olecranon tapering into the shaft."""
    t = np.linspace(0.0, 1.0, count)
    return 14 * s + 16 * s * np.exp(-((t / 0.18) ** 2))


# ----------------------------------------------------------------------------------------------
# Rendering.


def _build_scene(rng: np.random.Generator, body_part: str, view: str, anatomy: Anatomy) -> _Scene:
    h, w = _canvas(rng, body_part, view)
    s = anatomy.bone_scale * h / 800.0
    soft = _soft_tissue(rng, body_part, view, h, w, s, anatomy.soft_tissue)
    scene = _Scene(body_part=body_part, view=view, height=h, width=w, scale=s, soft=soft)

    if body_part == "wrist":
        scene.shapes = _wrist_bones(rng, h, w, s, anatomy.age, view)
    else:
        scene.shapes = _elbow_bones(rng, h, w, s, anatomy.age, view)

    for name, bone in scene.shapes.items():
        scene.bones[name] = _render_bone(rng, bone, h, w)
        if bone.physis_from_end is not None:
            _cut_physis(rng, scene.bones[name], bone, bone.physis_from_end, s)

    if body_part == "wrist":
        scene.bones["carpals"] = _carpals(rng, scene, anatomy.age, view)
    else:
        scene.bones["centres"] = _elbow_centres(rng, scene, anatomy.age, view)
    return scene


def _soft_tissue(
    rng: np.random.Generator, body_part: str, view: str, h: int, w: int, s: float, thickness: float
) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    centre = w * rng.uniform(0.46, 0.54)
    if body_part == "wrist":
        limb = w * (0.62 if view == "AP" else 0.5) * rng.uniform(0.9, 1.05)
        hand = limb * (1.25 if view == "AP" else 1.1)
        polygon = [(centre - limb / 2, h + 5), (centre - limb * 0.46, h * 0.35), (centre - hand / 2, -5),
                   (centre + hand / 2, -5), (centre + limb * 0.46, h * 0.35), (centre + limb / 2, h + 5)]
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255, cv2.LINE_AA)
    elif view == "AP":
        limb = w * 0.66 * rng.uniform(0.9, 1.05)
        polygon = [(centre - limb * 0.45, -5), (centre - limb / 2, h * 0.5), (centre - limb * 0.44, h + 5),
                   (centre + limb * 0.44, h + 5), (centre + limb / 2, h * 0.5), (centre + limb * 0.45, -5)]
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255, cv2.LINE_AA)
    else:
        # The humerus runs down near x = 0.4 w and the forearm leaves to the right near y = 0.58 h.
        arm = 130 * s * rng.uniform(0.9, 1.1)
        arm_x = w * 0.4 + 5 * s
        elbow_y = h * 0.58
        cv2.fillPoly(mask, [np.round([(arm_x - arm, -5), (arm_x + arm, -5), (arm_x + arm, elbow_y),
                                      (arm_x - arm, elbow_y)]).astype(np.int32)], 255, cv2.LINE_AA)
        cv2.fillPoly(mask, [np.round([(arm_x - arm * 0.9, elbow_y - arm * 0.8), (w + 5, elbow_y - arm * 0.8),
                                      (w + 5, elbow_y + arm * 0.75), (arm_x - arm * 0.6, elbow_y + arm * 0.9)]).astype(np.int32)],
                     255, cv2.LINE_AA)
        cv2.circle(mask, (int(arm_x), int(elbow_y)), int(arm * 1.05), 255, -1, cv2.LINE_AA)

    profile = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=max(3.0, 0.05 * w))
    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, (h, w)).astype(np.float32), (0, 0), sigmaX=25.0)
    return thickness * profile * (1.0 + 0.6 * texture) + 0.02


def _bone_polygon(bone: _Bone) -> np.ndarray:
    tangent = np.gradient(bone.points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    left = bone.points + normal * bone.half_widths[:, None]
    right = bone.points - normal * bone.half_widths[:, None]
    return np.concatenate([left, right[::-1]])


def _axis_at(bone: _Bone, from_end: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Return the centreline point ``from_end`` pixels before the distal end, its axis and half-width."""
    steps = np.linalg.norm(np.diff(bone.points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    target = max(arc[-1] - from_end, 0.0)
    index = int(np.clip(np.searchsorted(arc, target), 1, len(arc) - 1))
    axis = bone.points[index] - bone.points[index - 1]
    axis = axis / np.linalg.norm(axis)
    point = np.array([np.interp(target, arc, bone.points[:, 0]), np.interp(target, arc, bone.points[:, 1])])
    return point, axis, float(np.interp(target, arc, bone.half_widths))


def _render_bone(rng: np.random.Generator, bone: _Bone, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(_bone_polygon(bone)).astype(np.int32)], 255, cv2.LINE_AA)
    if bone.round_distal:
        end, axis, half = _axis_at(bone, 0.0)
        angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
        cv2.ellipse(mask, (round(end[0]), round(end[1])), (max(1, round(half * 0.45)), max(1, round(half))),
                    angle, 0, 360, 255, -1, cv2.LINE_AA)
    return _bone_density(rng, mask, bone.cortex)


def _bone_density(rng: np.random.Generator, mask: np.ndarray, cortex: float) -> np.ndarray:
    """Attenuation of a bone outline: a bright cortical rim and a textured medulla."""
    inside = (mask > 127).astype(np.uint8)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    rim = np.clip(cortex - depth + 0.5, 0.0, 1.0)

    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, mask.shape).astype(np.float32), (0, 0), sigmaX=1.6)
    medulla = float(rng.uniform(0.38, 0.48)) * (1.0 + 0.35 * texture)
    cortical = float(rng.uniform(0.8, 0.95))
    return (medulla + (cortical - medulla) * rim) * (mask.astype(np.float32) / 255.0)


def _wavy_line(centre: np.ndarray, along: np.ndarray, half_length: float, amplitude: float,
               rng: np.random.Generator, jagged: float = 0.0) -> np.ndarray:
    """Points of a line through ``centre`` across direction ``along`` with a sinusoidal wave."""
    across = np.array([-along[1], along[0]])
    u = np.linspace(-half_length, half_length, 40)
    phase = rng.uniform(0, 2 * np.pi)
    offset = amplitude * np.sin(u / max(half_length, 1.0) * np.pi * rng.uniform(1.0, 2.0) + phase)
    offset = offset + jagged * rng.normal(0.0, 1.0, u.shape)
    return centre + u[:, None] * across + offset[:, None] * along


def _cut_physis(rng: np.random.Generator, layer: np.ndarray, bone: _Bone, from_end: float, s: float) -> None:
    """Replace a band of bone near its end by cartilage (a dark growth plate) with a sclerotic edge."""
    centre, axis, half = _axis_at(bone, from_end)
    line = _wavy_line(centre, axis, half * 1.4, 2.5 * s, rng)
    plate = np.zeros(layer.shape, np.uint8)
    cv2.polylines(plate, [np.round(line).astype(np.int32)], False, 255, max(2, round(rng.uniform(3.0, 5.0) * s)), cv2.LINE_AA)
    plate_f = cv2.GaussianBlur(plate.astype(np.float32) / 255.0, (0, 0), sigmaX=0.8)

    edge = np.zeros(layer.shape, np.uint8)
    cv2.polylines(edge, [np.round(line - axis * 4 * s).astype(np.int32)], False, 255, max(1, round(2 * s)), cv2.LINE_AA)
    inside = (layer > 0.05).astype(np.float32)
    layer *= 1.0 - 0.92 * plate_f
    layer += 0.18 * inside * (edge.astype(np.float32) / 255.0) * (1.0 - plate_f)


def _ellipse_bone(rng: np.random.Generator, shape: tuple[int, int], centre: Sequence[float],
                  axes: Sequence[float], angle: float, cortex: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), (max(1, round(axes[0])), max(1, round(axes[1]))),
                angle, 0, 360, 255, -1, cv2.LINE_AA)
    return _bone_density(rng, mask, cortex)


def _carpals(rng: np.random.Generator, scene: _Scene, age: float, view: str) -> np.ndarray:
    """Carpal ossification centres, more of them in older children, and metacarpal bases."""
    h, w, s = scene.height, scene.width, scene.scale
    radius_end, _, _ = _axis_at(scene.shapes["radius"], 0.0)
    ulna_end, _, _ = _axis_at(scene.shapes["ulna"], 0.0)
    layer = np.zeros((h, w), np.float32)
    count = int(np.clip(round(1 + age / 2.0 + rng.normal(0, 0.7)), 2, 8))
    spread = (ulna_end[0] - radius_end[0]) * 1.3 if view == "AP" else 40 * s
    centre_x = (radius_end[0] + ulna_end[0]) / 2
    for _ in range(count):
        x = centre_x + rng.uniform(-0.55, 0.55) * spread
        y = radius_end[1] - rng.uniform(25, 110) * s
        size = rng.uniform(10, 20) * s * (0.7 + age / 25)
        layer += 0.75 * _ellipse_bone(rng, (h, w), (x, y), (size, size * rng.uniform(0.7, 1.1)), rng.uniform(0, 180), 3 * s)

    for index in range(3 if view == "AP" else 2):
        x = centre_x + (index - 1) * spread * (0.35 if view == "AP" else 0.1) + rng.normal(0, 4 * s)
        base_y = radius_end[1] - rng.uniform(130, 160) * s
        bone = _Bone(_curve((x, base_y), (x + rng.normal(0, 4 * s), base_y / 2), (x + rng.normal(0, 8 * s), -30)),
                     np.full(48, 11 * s), 3.5 * s, round_distal=False)
        layer += _render_bone(rng, bone, h, w)
    return layer


def _elbow_centres(rng: np.random.Generator, scene: _Scene, age: float, view: str) -> np.ndarray:
    """Capitellum, and from age 5 the medial epicondyle, beyond the distal humeral physis."""
    h, w, s = scene.height, scene.width, scene.scale
    end, axis, half = _axis_at(scene.shapes["humerus"], 0.0)
    layer = np.zeros((h, w), np.float32)
    size = rng.uniform(13, 18) * s * (0.6 + age / 20)
    if view == "AP":
        capitellum = end + np.array([-half * 0.45, size * 0.9 + 6 * s])
        layer += _ellipse_bone(rng, (h, w), capitellum, (size * 1.3, size * 0.8), rng.uniform(-10, 10), 3 * s)
        if age > 5:
            epicondyle = end + np.array([half * 0.95, -6 * s])
            layer += _ellipse_bone(rng, (h, w), epicondyle, (size * 0.6, size * 0.5), 0, 2.5 * s)
    else:
        capitellum = end + axis * (size + 6 * s) + np.array([10 * s, 0.0])
        layer += _ellipse_bone(rng, (h, w), capitellum, (size, size * 1.05), 0, 3 * s)
    return layer


def _compose(rng: np.random.Generator, scene: _Scene, anatomy: Anatomy) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Apply the fracture and fat pad, then sum the layers into one attenuation image."""
    findings: list[tuple[str, np.ndarray]] = []
    if anatomy.fracture is not None:
        findings.append((FRACTURE, _fracture(rng, scene, anatomy.fracture)))

    if scene.body_part == "elbow" and scene.view == "LAT":
        lifted = anatomy.fracture is not None and anatomy.fracture.fat_pad
        outline = _fat_pad(rng, scene, lifted)
        if lifted:
            findings.append((FAT_PAD, outline))

    attenuation = scene.soft.copy()
    for layer in scene.bones.values():
        attenuation += layer
    return attenuation, findings


def _fracture(rng: np.random.Generator, scene: _Scene, spec: FractureSpec) -> np.ndarray:
    """Break one bone along a jagged line, displace its distal fragment, return the line's points."""
    s = scene.scale
    bone_name, low, high = {
        "radius-distal": ("radius", 0.1, 0.2),
        "radius-shaft": ("radius", 0.3, 0.5),
        "ulna-distal": ("ulna", 0.08, 0.2),
        "humerus-supracondylar": ("humerus", 0.06, 0.14),
        "humerus-lateral-condyle": ("humerus", 0.02, 0.07),
        "radius-neck": ("radius", 0.86, 0.92),
    }[spec.site]
    bone = scene.shapes[bone_name]
    length = float(np.sum(np.linalg.norm(np.diff(bone.points, axis=0), axis=1)))
    from_end = length * (low + (high - low) * spec.position) * rng.uniform(0.95, 1.05)
    centre, axis, half = _axis_at(bone, from_end)

    if spec.site == "humerus-lateral-condyle":
        axis = _rotate(axis, rng.uniform(35, 55) * rng.choice([-1, 1]))
    else:
        axis = _rotate(axis, rng.uniform(-30, 30))
    across = np.array([-axis[1], axis[0]])
    extent = (-half * 1.3, half * 1.3) if spec.complete else _partial_extent(rng, half)

    layer = scene.bones[bone_name]
    moving = [layer]
    if bone_name == "humerus":
        moving.append(scene.bones["centres"])  # the capitellum travels with the distal humerus
    _displace_fragment(rng, moving, centre, axis, spec, s)
    u = np.linspace(extent[0], extent[1], 40)
    jag = np.cumsum(rng.normal(0.0, 0.9 * s, u.shape))
    line = centre + u[:, None] * across + (jag - jag.mean())[:, None] * axis
    _draw_lucency(layer, line, spec, s)
    _swell(rng, scene, centre, spec.swelling)
    if not spec.complete:
        _buckle(rng, layer, centre, across, half, extent, s)
    return line


def _swell(rng: np.random.Generator, scene: _Scene, centre: np.ndarray, strength: float) -> None:
    """Thicken the soft tissue around a fracture, as haematoma and oedema do."""
    h, w = scene.soft.shape
    rows, columns = np.mgrid[0:h, 0:w].astype(np.float32)
    sigma = float(rng.uniform(30, 55)) * scene.scale
    squared = (columns - centre[0]) ** 2 + (rows - centre[1]) ** 2
    inside = np.clip(scene.soft / max(float(scene.soft.max()), 1e-6), 0.0, 1.0)
    scene.soft += strength * np.exp(-squared / (2 * sigma**2)) * inside


def _rotate(vector: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def _partial_extent(rng: np.random.Generator, half: float) -> tuple[float, float]:
    """Return the extent of an incomplete fracture across the bone: from one cortex to 50-85 % of the way."""
    reach = half * 2.0 * rng.uniform(0.5, 0.85)
    return (-half * 1.3, -half + reach) if rng.random() < 0.5 else (half - reach, half * 1.3)


def _displace_fragment(rng: np.random.Generator, layers: list[np.ndarray], centre: np.ndarray, axis: np.ndarray,
                       spec: FractureSpec, s: float) -> None:
    """Shift and tilt what lies beyond the fracture line; where fragments overlap, bone looks denser."""
    if spec.shift == 0.0 and spec.angulation == 0.0:
        return

    h, w = layers[0].shape
    rows, columns = np.mgrid[0:h, 0:w].astype(np.float32)
    beyond = ((columns - centre[0]) * axis[0] + (rows - centre[1]) * axis[1]) > 0

    across = np.array([-axis[1], axis[0]])
    shift = across * spec.shift * s * rng.choice([-1, 1]) - axis * rng.uniform(0, 4) * s
    tilt = spec.angulation * rng.choice([-1, 1])
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(tilt), 1.0)
    matrix[:, 2] += shift

    for layer in layers:
        fragment = np.where(beyond, layer, 0.0).astype(np.float32)
        moved = cv2.warpAffine(fragment, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        layer[beyond] = 0.0
        layer += moved


def _draw_lucency(layer: np.ndarray, line: np.ndarray, spec: FractureSpec, s: float) -> None:
    gap = np.zeros(layer.shape, np.uint8)
    cv2.polylines(gap, [np.round(line).astype(np.int32)], False, 255, max(1, round(spec.gap_width * s)), cv2.LINE_AA)
    gap_f = cv2.GaussianBlur(gap.astype(np.float32) / 255.0, (0, 0), sigmaX=0.7 * s)
    layer *= 1.0 - spec.gap_strength * gap_f


def _buckle(rng: np.random.Generator, layer: np.ndarray, centre: np.ndarray, across: np.ndarray,
            half: float, extent: tuple[float, float], s: float) -> None:
    """Add a cortical bulge where an incomplete fracture reaches the surface (torus pattern)."""
    side = -1.0 if extent[0] < -half else 1.0
    bump = centre + across * side * half
    mask = np.zeros(layer.shape, np.uint8)
    cv2.circle(mask, (round(bump[0]), round(bump[1])), max(2, round(rng.uniform(7, 12) * s)), 255, -1, cv2.LINE_AA)
    layer += 0.55 * cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=1.0)


def _fat_pad(rng: np.random.Generator, scene: _Scene, lifted: bool) -> np.ndarray:
    """Darken fat anterior to the distal humerus: a thin strip when normal, a triangle when lifted."""
    s = scene.scale
    humerus = scene.shapes["humerus"]
    base_low, axis, half = _axis_at(humerus, 25 * s)
    base_high, _, _ = _axis_at(humerus, 25 * s + rng.uniform(55, 80) * s)
    anterior = np.array([axis[1], -axis[0]])
    if anterior[0] < 0:
        anterior = -anterior

    low = base_low + anterior * (half + 2 * s)
    high = base_high + anterior * (half + 2 * s)
    if lifted:
        apex = (low + high) / 2 - axis * rng.uniform(10, 25) * s + anterior * rng.uniform(26, 42) * s
        outline = np.array([low, high, apex])
    else:
        outline = np.array([low, high, high + anterior * 4 * s, low + anterior * 4 * s])

    mask = np.zeros(scene.soft.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 255, cv2.LINE_AA)
    darkening = float(rng.uniform(0.07, 0.11))
    scene.soft -= darkening * cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=1.5 * s)
    return outline


# ----------------------------------------------------------------------------------------------
# Positioning, display and boxes.


def _place(rng: np.random.Generator, attenuation: np.ndarray,
           findings: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Rotate and shift the whole projection a little, as positioning varies between exposures."""
    h, w = attenuation.shape
    angle = float(rng.uniform(-8, 8))
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, float(rng.uniform(0.94, 1.04)))
    matrix[:, 2] += rng.uniform(-0.04, 0.04, 2) * (w, h)
    placed = cv2.warpAffine(attenuation, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = [(label, points @ matrix[:, :2].T + matrix[:, 2]) for label, points in findings]
    return placed, moved


def _mirror(image: np.ndarray, findings: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    w = image.shape[1]
    mirrored = [(label, np.column_stack([w - 1 - points[:, 0], points[:, 1]])) for label, points in findings]
    return np.ascontiguousarray(image[:, ::-1]), mirrored


def _finish(rng: np.random.Generator, attenuation: np.ndarray, laterality: str, view: str) -> np.ndarray:
    """Convert attenuation to display values, blur, add noise and burn in the side marker."""
    gain = float(rng.uniform(1.4, 1.9))
    image = 1.0 - np.exp(-gain * np.clip(attenuation, 0.0, None))
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=float(rng.uniform(0.6, 1.3)))

    level = float(rng.uniform(0.008, 0.02))
    image = image + rng.normal(0.0, 1.0, image.shape).astype(np.float32) * level * np.sqrt(image + 0.05)
    image = np.clip(image, 0.0, 1.0) ** float(rng.uniform(0.85, 1.2))
    _burn_marker(rng, image, laterality, view)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _burn_marker(rng: np.random.Generator, image: np.ndarray, laterality: str, view: str) -> None:
    h, w = image.shape
    scale = h / 330.0
    thickness = max(2, round(h / 220))
    (text_w, text_h), _ = cv2.getTextSize(laterality, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = int(rng.uniform(0.03, 0.07) * w)
    corners = ["top-left", "top-right"] if view == "AP" else ["top-left", "top-right", "bottom-left", "bottom-right"]
    corner = str(rng.choice(corners))
    x = margin if corner.endswith("left") else w - margin - text_w
    y = margin + text_h if corner.startswith("top") else h - margin
    text = np.zeros(image.shape, np.uint8)  # putText draws on 8-bit images only
    cv2.putText(text, laterality, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    np.maximum(image, text.astype(np.float32) / 255.0, out=image)


def _boxes(findings: list[tuple[str, np.ndarray]], shape: tuple[int, int], s: float) -> list[Box]:
    """Bound each finding's outline with a margin, clipped to the image; drop boxes that leave it."""
    h, w = shape
    margin = 10.0 * s
    boxes: list[Box] = []
    for label, points in findings:
        x0 = max(0.0, float(points[:, 0].min()) - margin)
        y0 = max(0.0, float(points[:, 1].min()) - margin)
        x1 = min(float(w), float(points[:, 0].max()) + margin)
        y1 = min(float(h), float(points[:, 1].max()) + margin)
        if x1 - x0 >= 4 and y1 - y0 >= 4:
            boxes.append((label, round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1)))
    return boxes
