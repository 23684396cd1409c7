"""What the ensemble concludes about images and studies; the input of ``reporting``."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRACTURE = "fracture"
FAT_PAD = "fat_pad"

# Operating points of a detector box. A package that states only one box threshold per detector
# marks every box HIGH_SPECIFICITY, which overlays draw solid as before two tiers existed.
HIGH_SENSITIVITY = "high_sensitivity"
HIGH_SPECIFICITY = "high_specificity"
BOX_TIERS = (HIGH_SENSITIVITY, HIGH_SPECIFICITY)

# Bones a box may name as its finding site.
BONES = ("radius", "ulna", "humerus")


@dataclass(frozen=True)
class Box:
    """A detector box in source image pixels: x is the column, y the row, both 0-based.

    ``tier`` is HIGH_SPECIFICITY when the confidence reached the detector's high-specificity
    threshold (or the detector has a single threshold), else HIGH_SENSITIVITY. ``bone`` is one
    of BONES when the detector names the fractured bone, else None.
    """

    label: str
    confidence: float
    x0: float
    y0: float
    x1: float
    y1: float
    tier: str = HIGH_SPECIFICITY
    bone: str | None = None

    def __post_init__(self) -> None:
        if self.tier not in BOX_TIERS:
            raise ValueError(f"box tier {self.tier!r} is invalid; expected one of {', '.join(BOX_TIERS)}")
        if self.bone is not None and self.bone not in BONES:
            raise ValueError(f"box bone {self.bone!r} is invalid; expected one of {', '.join(BONES)} or None")


@dataclass(frozen=True)
class ProcessingStep:
    """One transform of the pixel pipeline or of a model's input, with the parameters that reproduce it.

    ``parameters`` are (name, value) pairs in the order they were recorded; a value of None means
    the parameter does not apply.
    """

    name: str
    parameters: tuple[tuple[str, str | int | float | bool | None], ...] = ()

    @classmethod
    def of(cls, name: str, **parameters: str | int | float | bool | None) -> ProcessingStep:
        """Build a step from keyword parameters, keeping their order."""
        return cls(name, tuple(parameters.items()))

    def describe(self) -> str:
        """Return the step as one line, e.g. ``VOI LUT: source=window, center=2048, width=4096``."""
        shown = ", ".join(f"{key}={_format(value)}" for key, value in self.parameters if value is not None)
        return f"{self.name}: {shown}" if shown else self.name


def _format(value: str | int | float | bool) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@dataclass(frozen=True)
class MemberOutput:
    """One ensemble member's fracture probability for one image."""

    member: str
    kind: str
    probability: float
    weight: float


@dataclass(frozen=True)
class ImageFinding:
    """The ensemble's reading of one radiograph."""

    sop_instance_uid: str
    body_part: str
    view: str
    laterality: str | None
    view_source: str
    probability: float
    threshold: float
    positive: bool
    members: tuple[MemberOutput, ...]
    boxes: tuple[Box, ...]
    display: np.ndarray = field(repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    body_part_source: str = "unknown"
    steps: tuple[ProcessingStep, ...] = ()
    nonconformance: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedImage:
    """An instance of the study that was not read, with the reason in plain words.

    ``body_part``, ``view`` and ``laterality`` are set when they were resolved before the image
    was skipped, such as for an oblique view, so that the image still takes its place in a pair.
    """

    sop_instance_uid: str
    reason: str
    body_part: str | None = None
    view: str | None = None
    laterality: str | None = None


@dataclass(frozen=True)
class ViewPair:
    """The views of one body part and side in a study: normally one AP and one lateral image.

    Each tuple contains SOP Instance UIDs. ``ap`` and ``lateral`` were read. ``unread`` contains
    images of the same body part and side that were not read, such as obliques. ``side_source`` is
    ``"tags"`` when every image states the side, ``"assumed"`` when images without a side joined
    the only side found in the study, and ``"unknown"`` when no image states it.
    """

    body_part: str
    laterality: str | None
    ap: tuple[str, ...]
    lateral: tuple[str, ...]
    unread: tuple[str, ...] = ()
    side_source: str = "tags"

    @property
    def complete(self) -> bool:
        """True when at least one AP and one lateral image were read."""
        return bool(self.ap) and bool(self.lateral)

    @property
    def single_view(self) -> bool:
        """True when the images read show only one view."""
        return bool(self.ap) != bool(self.lateral)

    @property
    def repeated(self) -> bool:
        """True when a view was read more than once."""
        return len(self.ap) > 1 or len(self.lateral) > 1

    @property
    def images(self) -> tuple[str, ...]:
        return self.ap + self.lateral


@dataclass(frozen=True)
class StudyFinding:
    """The patient-level result of one study: positive if any image read is positive."""

    study_instance_uid: str
    images: tuple[ImageFinding, ...]
    skipped: tuple[SkippedImage, ...]
    model_name: str
    model_version: str
    pairs: tuple[ViewPair, ...] = ()

    @property
    def probability(self) -> float:
        """Maximum image probability, or 0.0 when no image was read."""
        return max((image.probability for image in self.images), default=0.0)

    @property
    def positive(self) -> bool:
        return any(image.positive for image in self.images)

    @property
    def views_read(self) -> tuple[str, ...]:
        return tuple(sorted({image.view for image in self.images}))
