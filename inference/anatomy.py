"""Body part, view and laterality of a radiograph, from its DICOM attributes.

Hospitals fill these attributes unevenly, so several are read in a fixed order. Each image or
series attribute that names exactly one body part (or view, or side) casts a vote, and the first
vote decides. A later vote that disagrees is kept as a conflict, so that the caller can let the
view classifier decide or apply the non-conformance policy. An attribute that names two views at
once, such as "WRIST AP/LAT", casts no vote. Study Description and Patient Orientation are read only
when no image or series attribute votes, because a study's description covers all its series and
Patient Orientation is often left at a modality default. Korean and English wording is recognised.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

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

OTHER = "other"
OBLIQUE = "OTHER"

# Words are matched on upper-cased text split at anything but letters and digits, so "Rt." is
# the word RT. Korean words of two or more syllables also match inside longer words, because
# Korean descriptions are often written without spaces ("손목정면"); the longest word wins.
BODY_PART_WORDS: dict[str, tuple[str, ...]] = {
    "wrist": ("WRIST", "WRI", "RADIUS", "ULNA", "FOREARM", "DISTAL RADIUS", "SCAPHOID", "CARPAL", "손목",
              "손목관절", "완관절", "수근관절", "전완", "전완부", "요골", "척골", "주상골"),
    "elbow": ("ELBOW", "ELB", "SUPRACONDYLAR", "OLECRANON", "주관절", "팔꿈치", "팔굽", "과상부"),
    OTHER: ("CHEST", "THORAX", "LUNG", "RIB", "RIBS", "ABDOMEN", "PELVIS", "HIP", "KNEE", "ANKLE", "FOOT", "TOE",
            "LEG", "LOWER LEG", "TIBIA", "FIBULA", "FEMUR", "SHOULDER", "CLAVICLE", "SCAPULA", "HUMERUS", "SKULL",
            "HEAD", "SINUS", "SPINE", "CSPINE", "TSPINE", "LSPINE", "CERVICAL", "LUMBAR", "NECK", "TEETH", "DENTAL",
            "MANDIBLE", "HAND", "FINGER", "THUMB", "BONE AGE", "흉부", "복부", "골반", "무릎", "슬관절", "발목",
            "족관절", "어깨", "견관절", "두개골", "척추", "경추", "요추", "손가락", "수부", "족부", "치아",
            "골연령", "손"),
}
VIEW_WORDS: dict[str, tuple[str, ...]] = {
    "AP": ("AP", "PA", "FRONTAL", "정면", "전후", "후전", "전후면"),
    "LAT": ("LAT", "LATERAL", "LL", "RL", "LATERO", "측면", "측방"),
    OBLIQUE: ("OBL", "OBLI", "OBLIQUE", "RLO", "LLO", "RAO", "LAO", "RPO", "LPO", "RLD", "LLD", "사위", "사면",
              "사방향", "사위상"),
}
LATERALITY_WORDS: dict[str, tuple[str, ...]] = {
    "L": ("L", "LT", "LEFT", "좌", "좌측", "왼쪽", "왼"),
    "R": ("R", "RT", "RIGHT", "우", "우측", "오른쪽", "오른"),
    "B": ("BILAT", "BILATERAL", "BOTH", "양측", "양쪽"),
}

SERIES_TEXT_ATTRIBUTES = (
    "SeriesDescription",
    "ProtocolName",
    "AcquisitionDeviceProcessingDescription",
)
TEXT_ATTRIBUTES = (*SERIES_TEXT_ATTRIBUTES, "StudyDescription")
TAGS = {
    "BodyPartExamined": "(0018,0015)",
    "ViewPosition": "(0018,5101)",
    "ImageLaterality": "(0020,0062)",
    "Laterality": "(0020,0060)",
    "PatientOrientation": "(0020,0020)",
    "SeriesDescription": "(0008,103E)",
    "ProtocolName": "(0018,1030)",
    "AcquisitionDeviceProcessingDescription": "(0018,1400)",
    "StudyDescription": "(0008,1030)",
}


@dataclass(frozen=True)
class Vote:
    """One attribute's vote: its keyword, the value it names and the word that named it."""

    keyword: str
    value: str
    word: str

    def describe(self) -> str:
        """Return e.g. ``ViewPosition (0018,5101) says AP ('PA')``."""
        tag = f" {TAGS[self.keyword]}" if self.keyword in TAGS else ""
        return f"{self.keyword}{tag} says {self.value} ({self.word!r})"


@dataclass(frozen=True)
class Anatomy:
    """Body part, view and side of a radiograph; ``None`` where the attributes do not state them.

    ``body_part`` is ``"wrist"``, ``"elbow"``, ``"other"`` or None; ``view`` is ``"AP"`` (any
    frontal projection, AP or PA), ``"LAT"``, ``"OTHER"`` (oblique and similar) or None;
    ``laterality`` is ``"L"``, ``"R"``, ``"B"`` (both) or None. Each ``*_source`` is the keyword of
    the attribute that decided. ``view_word`` is the word that decided the view, such as "PA".
    ``body_part_word`` is the word that decided the body part.
    ``conflicts`` describes every attribute that disagrees with the one that decided.
    """

    body_part: str | None
    body_part_source: str | None
    view: str | None
    view_source: str | None
    laterality: str | None
    laterality_source: str | None = None
    view_word: str | None = None
    body_part_word: str | None = None
    body_part_conflicts: tuple[str, ...] = ()
    view_conflicts: tuple[str, ...] = ()
    laterality_conflicts: tuple[str, ...] = ()

    @property
    def conflicts(self) -> tuple[str, ...]:
        return self.body_part_conflicts + self.view_conflicts + self.laterality_conflicts


def is_radiograph(dataset: Dataset) -> bool:
    """True for CR, DX and Secondary Capture images of a projection radiograph.

    Reads (0008,0016) SOPClassUID and, for Secondary Capture, (0008,0060) Modality.
    """
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in RADIOGRAPH_CLASSES:
        return False
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        return str(dataset.get("Modality", "")).upper() in RADIOGRAPH_MODALITIES | {"OT"}
    return True


def not_radiograph_reason(dataset: Dataset) -> str:
    """Return why a dataset is not read, naming its Modality and SOP Class UID."""
    modality = str(dataset.get("Modality", "") or "unknown")
    return f"not a projection radiograph (Modality {modality}, SOP Class {dataset.get('SOPClassUID', 'missing')})"


def find_words(text: str, table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Return each key of ``table`` that ``text`` names, with the word that named it.

    ASCII words match whole words of the upper-cased text. Korean words of two or more syllables
    also match inside longer words, longest first, and a matched stretch is not matched again,
    so "손목" (wrist) does not also count as "손" (hand).
    """
    upper = text.upper()
    tokens = " " + " ".join(re.split(r"[^0-9A-Z가-힣]+", upper)) + " "
    found: dict[str, str] = {}
    for key, words in table.items():
        for word in sorted(words, key=len, reverse=True):
            if f" {word} " in tokens:
                found.setdefault(key, word)
                break

    remaining = tokens
    korean = sorted(((word, key) for key, words in table.items() for word in words
                     if not word.isascii() and len(word) >= 2), key=lambda pair: -len(pair[0]))
    for word, key in korean:
        if word in remaining:
            found.setdefault(key, word)
            remaining = remaining.replace(word, " ")
    return found


def resolve_anatomy(dataset: Dataset) -> Anatomy:
    """Read body part, view and laterality from the attributes, noting the ones that disagree.

    The body part is read first from (0018,0015) BodyPartExamined, the view from (0018,5101)
    ViewPosition, and the side from (0020,0062) ImageLaterality and (0020,0060) Laterality. Each
    is then read from (0008,103E) SeriesDescription, (0018,1030) ProtocolName and (0018,1400)
    AcquisitionDeviceProcessingDescription. Only when none of these votes does (0008,1030)
    StudyDescription, and for the view then (0020,0020) PatientOrientation. A row or column toward
    A or P with the other toward H or F is a lateral view, and toward L or R with H or F a frontal one.
    """
    body_part = _decide(_votes(dataset, ("BodyPartExamined", *SERIES_TEXT_ATTRIBUTES), BODY_PART_WORDS)
                        or _votes(dataset, ("StudyDescription",), BODY_PART_WORDS))
    view = _decide(_votes(dataset, ("ViewPosition", *SERIES_TEXT_ATTRIBUTES), VIEW_WORDS)
                   or _votes(dataset, ("StudyDescription",), VIEW_WORDS) or _orientation_votes(dataset))
    laterality = _decide(_laterality_votes(dataset))
    return Anatomy(
        body_part=body_part.value, body_part_source=body_part.source, body_part_word=body_part.word,
        view=view.value, view_source=view.source, view_word=view.word,
        laterality=laterality.value, laterality_source=laterality.source,
        body_part_conflicts=body_part.conflicts, view_conflicts=view.conflicts,
        laterality_conflicts=laterality.conflicts,
    )


@dataclass(frozen=True)
class _Decision:
    value: str | None = None
    source: str | None = None
    word: str | None = None
    conflicts: tuple[str, ...] = ()


def _decide(votes: list[Vote]) -> _Decision:
    if not votes:
        return _Decision()
    first = votes[0]
    conflicts = tuple(f"{vote.describe()}, but {first.describe()}" for vote in votes[1:] if vote.value != first.value)
    return _Decision(first.value, first.keyword, first.word, conflicts)


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return " ".join(str(item) for item in value)
    return str(value)


def _votes(dataset: Dataset, keywords: tuple[str, ...], table: dict[str, tuple[str, ...]]) -> list[Vote]:
    """Return one vote per attribute that names exactly one key of ``table``."""
    votes = []
    for keyword in keywords:
        found = find_words(_text(dataset, keyword), table)
        if len(found) == 1:
            (value, word), = found.items()
            votes.append(Vote(keyword, value, word))
    return votes


def _laterality_votes(dataset: Dataset) -> list[Vote]:
    votes = []
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(dataset, keyword).strip().upper()
        if value in ("L", "R", "B"):
            votes.append(Vote(keyword, value, value))
    votes += _votes(dataset, SERIES_TEXT_ATTRIBUTES, LATERALITY_WORDS)
    return votes or _votes(dataset, ("StudyDescription",), LATERALITY_WORDS)


def _orientation_votes(dataset: Dataset) -> list[Vote]:
    """Return the view that (0020,0020) PatientOrientation implies, as a vote, or nothing."""
    values = [str(item).strip().upper() for item in (dataset.get("PatientOrientation") or [])]
    if len(values) != 2 or not all(values):
        return []

    kinds = {_direction_kind(value) for value in values}
    if kinds == {"AP", "HF"}:
        return [Vote("PatientOrientation", "LAT", "\\".join(values))]
    if kinds == {"LR", "HF"}:
        return [Vote("PatientOrientation", "AP", "\\".join(values))]
    return []


def _direction_kind(value: str) -> str | None:
    """Classify one Patient Orientation direction by its letters; mixed (oblique) directions get None."""
    for kind, letters in (("AP", set("AP")), ("LR", set("LR")), ("HF", set("HF"))):
        if set(value) <= letters:
            return kind
    return None
