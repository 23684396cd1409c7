"""Caption and box label text burned into the overlay, in Korean or English."""
from __future__ import annotations

from typing import Final

from inference.findings import FAT_PAD, FRACTURE, Box, ImageFinding

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
        f"{_MODEL[language]} {model_identity}",
        _DISCLAIMER[language],
    ]


def box_label(box: Box, *, language: str) -> str:
    """Return the label drawn beside a detector box, e.g. "fracture 0.87" or "골절 0.87".

    Raises ValueError for a box label other than ``fracture`` or ``fat_pad``.
    """
    check_language(language)
    names = _BOX_LABEL[language]
    if box.label not in names:
        raise ValueError(f"unsupported box label {box.label!r}; expected one of {', '.join(names)}")

    return f"{names[box.label]} {box.confidence:.2f}"
