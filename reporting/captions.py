"""Caption and box label text burned into the overlay, in Korean or English."""
from __future__ import annotations

from typing import Final

from pydicom.valuerep import PersonName

from inference.findings import FAT_PAD, FRACTURE, HIGH_SENSITIVITY, HIGH_SPECIFICITY, Box, ImageFinding

LANGUAGES: Final = ("ko", "en")

_VERDICT: Final = {
    "en": {True: "AI: fracture suspected", False: "AI: no fracture detected"},
    "ko": {True: "AI: 골절 의심", False: "AI: 골절 소견 없음"},
}
_DISCLAIMER: Final = {
    "en": "AI assistance, not for diagnosis alone",
    "ko": "AI 보조 판독 — 진단용 단독 사용 금지",
}
_MODEL: Final = {"en": "model", "ko": "모델"}
_PATIENT: Final = {"en": "patient", "ko": "환자"}
_LEGEND: Final = {
    "en": "boxes: solid = high specificity, dotted = high sensitivity",
    "ko": "상자: 실선 = 고특이도, 점선 = 고민감도",
}
_TIER: Final = {
    "en": {HIGH_SENSITIVITY: "high sensitivity", HIGH_SPECIFICITY: "high specificity"},
    "ko": {HIGH_SENSITIVITY: "고민감도", HIGH_SPECIFICITY: "고특이도"},
}
_SIDE: Final = {
    "en": {"R": "right", "L": "left", "B": "both"},
    "ko": {"R": "우측", "L": "좌측", "B": "양측"},
}
_BODY_PART: Final = {
    "en": {"wrist": "wrist", "elbow": "elbow"},
    "ko": {"wrist": "손목", "elbow": "팔꿈치"},
}
_BOX_LABEL: Final = {
    "en": {FRACTURE: "fracture", FAT_PAD: "fat pad"},
    "ko": {FRACTURE: "골절", FAT_PAD: "지방 패드"},
}


def check_language(language: str) -> str:
    """Return ``language`` if captions exist for it, else raise ValueError."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported caption language {language!r}; expected one of {', '.join(LANGUAGES)}")
    return language


def verdict_line(finding: ImageFinding, *, language: str) -> str:
    """Return the first caption line: the ensemble's verdict and probability, e.g. "AI: fracture suspected, p=0.91"."""
    check_language(language)
    return f"{_VERDICT[language][finding.positive]}, p={finding.probability:.2f}"


def anatomy_line(finding: ImageFinding, *, language: str) -> str:
    """Return the side, body part and view, e.g. "right wrist AP" or "우측 손목 AP".

    The side is left out when the laterality is unknown, and an unknown body part is shown as
    given by the finding.
    """
    check_language(language)
    body_part = _BODY_PART[language].get(finding.body_part, finding.body_part)
    side = _SIDE[language].get(finding.laterality or "")

    words = [side, body_part, finding.view] if side else [body_part, finding.view]
    return " ".join(words)


def caption_lines(finding: ImageFinding, *, language: str, model_identity: str) -> list[str]:
    """Return the caption lines of an overlay: verdict, anatomy, model and the disclaimer.

    Parameters
    ----------
    finding
        The ensemble's reading of the image.
    language
        ``"ko"`` or ``"en"``. Any other value raises ValueError.
    model_identity
        Model name and version as shown to the reader, e.g. ``"pedfrac-ensemble 1.2.0"``.
    """
    check_language(language)
    return [
        verdict_line(finding, language=language),
        anatomy_line(finding, language=language),
        model_line(model_identity, language=language),
        _DISCLAIMER[language],
    ]


def model_line(model_identity: str, *, language: str) -> str:
    """Return the model line, e.g. "model pedfrac-ensemble 1.2.0" or "모델 pedfrac-ensemble 1.2.0"."""
    check_language(language)
    return f"{_MODEL[language]} {model_identity}"


def disclaimer(*, language: str) -> str:
    """Return "AI assistance, not for diagnosis alone" in ``language``."""
    check_language(language)
    return _DISCLAIMER[language]


def legend_line(*, language: str) -> str:
    """Return the key to the box styles: solid for high specificity, dotted for high sensitivity."""
    check_language(language)
    return _LEGEND[language]


def tier_name(tier: str, *, language: str) -> str:
    """Return the operating point of a box tier in words, e.g. "high sensitivity" or "고민감도"."""
    check_language(language)
    return _TIER[language][tier]


def patient_line(patient_name: PersonName | str | None, patient_id: str | None, *, language: str) -> str:
    """Return the patient line of an overlay, e.g. "patient 김희중, ID PF0001".

    Each component group of the name (alphabetic, ideographic, phonetic; PS3.5 6.2.1.1) is
    shown with its "^" separators as spaces, and the groups are joined by " / ".
    """
    check_language(language)
    name = _readable_name(patient_name)
    identifier = str(patient_id or "").strip()

    parts = [part for part in (name, f"ID {identifier}" if identifier else "") if part]
    return f"{_PATIENT[language]} {', '.join(parts)}" if parts else _PATIENT[language]


def _readable_name(patient_name: PersonName | str | None) -> str:
    if patient_name is None:
        return ""

    groups = str(patient_name).split("=")
    readable = [" ".join(part for part in group.split("^") if part.strip()) for group in groups]
    return " / ".join(group for group in readable if group)


def for_dicom_text(text: str) -> str:
    """Return ``text`` with each em dash replaced by a hyphen, for DICOM text attributes.

    Neither ISO 2022 IR 149 (KS X 1001) nor ISO_IR 100 contains the em dash (U+2014), so a
    text attribute keeps the source's character set only without it.
    """
    return text.replace("\u2014", "-")


def box_label(box: Box, *, language: str) -> str:
    """Return the label drawn beside a detector box, e.g. "fracture 0.87" or "골절 0.87".

    Raises ValueError for a box label other than ``fracture`` or ``fat_pad``.
    """
    check_language(language)
    names = _BOX_LABEL[language]
    if box.label not in names:
        raise ValueError(f"unsupported box label {box.label!r}; expected one of {', '.join(names)}")

    return f"{names[box.label]} {box.confidence:.2f}"
