"""Pairing of a study's images into the AP and lateral views of one body part and side.

A pediatric elbow or wrist series is read as a pair: an AP (or PA) and a lateral view of the same
side. A study of both elbows has two pairs. An image that shows the side nowhere joins the only
side of its body part in the study; with both sides present it stays in a pair of unknown side.
Repeated views stay in their pair, and images of the pair that were not read (obliques) are
listed with it, so that nothing read or received is dropped from the report.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inference.findings import ImageFinding, SkippedImage, ViewPair
from inference.package import BODY_PARTS

_SIDES = ("R", "L")
_SIDE_ORDER = {"R": 0, "L": 1, "B": 2, None: 3}


@dataclass(frozen=True)
class _Entry:
    sop_instance_uid: str
    body_part: str
    view: str | None
    laterality: str | None
    read: bool


def pair_views(images: Sequence[ImageFinding], skipped: Sequence[SkippedImage] = (), *,
               patients: Mapping[str, str] | None = None) -> tuple[ViewPair, ...]:
    """Group the images of one study into view pairs per patient, body part and side.

    Parameters
    ----------
    images
        The images read.
    skipped
        Images not read; those with an elbow or wrist body part join their pair as unread.
    patients
        Patient ID per SOP Instance UID, so that images of two patients in one study never share a
        pair. Images missing from it count as one patient.

    Returns
    -------
    The pairs, ordered by patient, body part and side (right, left, both, unknown).
    """
    entries = [_Entry(image.sop_instance_uid, image.body_part, image.view, image.laterality, True) for image in images]
    entries += [_Entry(item.sop_instance_uid, item.body_part, item.view, item.laterality, False) for item in skipped
                if item.body_part in BODY_PARTS]

    groups: dict[tuple[str, str], list[_Entry]] = defaultdict(list)
    for entry in entries:
        patient = (patients or {}).get(entry.sop_instance_uid, "")
        groups[(patient, entry.body_part)].append(entry)

    pairs: list[ViewPair] = []
    for (_patient, body_part), members in sorted(groups.items(), key=lambda item: (item[0][0], BODY_PARTS.index(item[0][1]))):
        pairs.extend(_pairs_of(body_part, members))
    return tuple(pairs)


def _pairs_of(body_part: str, entries: list[_Entry]) -> list[ViewPair]:
    """Split the images of one body part by side and build one pair per side."""
    sides = {entry.laterality for entry in entries if entry.laterality in _SIDES}
    by_side: dict[str | None, list[_Entry]] = defaultdict(list)
    assumed = False
    for entry in entries:
        side = entry.laterality if entry.laterality in (*_SIDES, "B") else None
        if side is None and len(sides) == 1:
            side, assumed = next(iter(sides)), True
        by_side[side].append(entry)

    pairs = []
    for side in sorted(by_side, key=_SIDE_ORDER.__getitem__):
        members = by_side[side]
        unstated = any(entry.laterality != side for entry in members)
        source = "tags"
        if side is None:
            source = "unknown"
        elif assumed and unstated:
            source = "assumed"
        pairs.append(ViewPair(
            body_part=body_part,
            laterality=side,
            ap=tuple(entry.sop_instance_uid for entry in members if entry.read and entry.view == "AP"),
            lateral=tuple(entry.sop_instance_uid for entry in members if entry.read and entry.view == "LAT"),
            unread=tuple(entry.sop_instance_uid for entry in members if not entry.read),
            side_source=source,
        ))
    return pairs


def pair_name(pair: ViewPair) -> str:
    """Return the body part and side of a pair in words, e.g. ``right elbow``."""
    side = {"R": "right", "L": "left", "B": "bilateral"}.get(pair.laterality or "")
    return f"{side} {pair.body_part}" if side else f"{pair.body_part} (side not stated)"


def describe_pair(pair: ViewPair) -> str:
    """Return one sentence on a pair, e.g. ``right elbow: AP and lateral read``."""
    counts = []
    for name, uids in (("AP", pair.ap), ("lateral", pair.lateral)):
        if uids:
            counts.append(name if len(uids) == 1 else f"{name} ({len(uids)} images, repeated view)")

    if pair.complete:
        text = f"{' and '.join(counts)} read"
    elif counts:
        text = f"only one view read ({counts[0]}); single-view reading"
    else:
        text = "no AP or lateral view read"
    if pair.unread:
        text += f"; {len(pair.unread)} more {'image' if len(pair.unread) == 1 else 'images'} of this side not read"
    if pair.side_source == "assumed":
        text += "; side taken from the other images of the study"
    return f"{pair_name(pair)}: {text}"
