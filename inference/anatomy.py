"""Body part, view and laterality of a radiograph, from its DICOM attributes.

Hospitals fill these attributes unevenly, so several are read in a fixed order and the first
that names a body part or view decides; the attribute that decided is kept for the report.
Korean and English wording is recognised.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG", "DR"})
SECONDARY_CAPTURE_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.7.2",
    "1.2.840.10008.5.1.4.1.1.7.4",
})
RADIOGRAPH_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
}) | SECONDARY_CAPTURE_CLASSES

# Words are matched on upper-cased text split at anything but letters and digits.
_BODY_PART_WORDS = {
    "wrist": ("WRIST", "WRI", "RADIUS", "ULNA", "FOREARM", "DISTAL RADIUS", "손목", "손목관절", "완관절", "전완"),
    "elbow": ("ELBOW", "ELB", "주관절", "팔꿈치", "팔굽", "SUPRACONDYLAR"),
}
_VIEW_WORDS = {
    "AP": ("AP", "PA", "FRONTAL", "정면", "전후"),
    "LAT": ("LAT", "LATERAL", "LL", "RL", "측면", "측방"),
    "OTHER": ("OBL", "OBLIQUE", "사위", "사면"),
}
_LATERALITY_WORDS = {
    "L": ("L", "LT", "LEFT", "좌", "좌측", "왼쪽"),
    "R": ("R", "RT", "RIGHT", "우", "우측", "오른쪽"),
}

_TEXT_ATTRIBUTES = (
    "SeriesDescription",
    "ProtocolName",
    "StudyDescription",
    "AcquisitionDeviceProcessingDescription",
)


@dataclass(frozen=True)
class Anatomy:
    """Where a radiograph was taken and how; ``None`` where the attributes do not say."""

    body_part: str | None
    body_part_source: str | None
    view: str | None
    view_source: str | None
    laterality: str | None


def is_radiograph(dataset: Dataset) -> bool:
    """True for CR, DX and Secondary Capture images of a projection radiograph."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in RADIOGRAPH_CLASSES:
        return False
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        return str(dataset.get("Modality", "")).upper() in RADIOGRAPH_MODALITIES | {"OT"}
    return True


def not_radiograph_reason(dataset: Dataset) -> str:
    """Why a dataset is not read, naming its Modality and SOP Class UID."""
    modality = str(dataset.get("Modality", "") or "unknown")
    return f"not a projection radiograph (Modality {modality}, SOP Class {dataset.get('SOPClassUID', 'missing')})"


def _tokens(text: str) -> str:
    # Padded with spaces so a phrase matches only at word boundaries.
    return " " + " ".join(re.split(r"[^0-9A-Z가-힣]+", text.upper())) + " "


def _match(text: str, table: dict[str, tuple[str, ...]]) -> str | None:
    tokens = _tokens(text)
    for key, words in table.items():
        if any(f" {word} " in tokens for word in words):
            return key
    # Korean words are often written without spaces ("손목정면"), so match them as substrings too.
    for key, words in table.items():
        if any(word in tokens for word in words if not word.isascii()):
            return key
    return None


def resolve_anatomy(dataset: Dataset) -> Anatomy:
    """Read body part, view and laterality from (0018,0015), (0018,5101), (0020,0062) and descriptions."""
    body_part, body_part_source = _body_part(dataset)
    view, view_source = _view(dataset)
    return Anatomy(body_part, body_part_source, view, view_source, _laterality(dataset))


def _body_part(dataset: Dataset) -> tuple[str | None, str | None]:
    for keyword in ("BodyPartExamined", *_TEXT_ATTRIBUTES):
        found = _match(str(dataset.get(keyword, "") or ""), _BODY_PART_WORDS)
        if found:
            return found, keyword
    return None, None


def _view(dataset: Dataset) -> tuple[str | None, str | None]:
    for keyword in ("ViewPosition", *_TEXT_ATTRIBUTES):
        found = _match(str(dataset.get(keyword, "") or ""), _VIEW_WORDS)
        if found:
            return found, keyword
    return None, None


def _laterality(dataset: Dataset) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(dataset.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value

    for keyword in _TEXT_ATTRIBUTES:
        found = _match(str(dataset.get(keyword, "") or ""), _LATERALITY_WORDS)
        if found:
            return found
    return None
