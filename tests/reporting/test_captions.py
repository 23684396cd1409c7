from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inference.findings import FAT_PAD, FRACTURE, HIGH_SENSITIVITY, HIGH_SPECIFICITY, Box, ImageFinding
from reporting.captions import (
    anatomy_line,
    box_label,
    caption_lines,
    for_dicom_text,
    legend_line,
    patient_line,
    tier_name,
    verdict_line,
)


def make_finding(*, probability: float = 0.91, positive: bool = True, laterality: str | None = "R", body_part: str = "wrist") -> ImageFinding:
    return ImageFinding(
        sop_instance_uid="2.25.1",
        body_part=body_part,
        view="AP",
        laterality=laterality,
        view_source="ViewPosition",
        probability=probability,
        threshold=0.5,
        positive=positive,
        members=(),
        boxes=(),
        display=np.zeros((4, 4), dtype=np.uint8),
    )


@pytest.mark.parametrize(
    ("language", "positive", "probability", "expected"),
    [
        ("en", True, 0.91, "AI: fracture suspected, p=0.91"),
        ("en", False, 0.12, "AI: no fracture detected, p=0.12"),
        ("ko", True, 0.91, "AI: 골절 의심, p=0.91"),
        ("ko", False, 0.12, "AI: 골절 소견 없음, p=0.12"),
    ],
)
def test_verdict_line_per_language(language: str, positive: bool, probability: float, expected: str) -> None:
    finding = make_finding(probability=probability, positive=positive)

    assert verdict_line(finding, language=language) == expected


@pytest.mark.parametrize(
    ("language", "laterality", "body_part", "expected"),
    [
        ("en", "R", "wrist", "right wrist AP"),
        ("ko", "R", "wrist", "우측 손목 AP"),
        ("ko", "L", "elbow", "좌측 팔꿈치 AP"),
        ("en", None, "elbow", "elbow AP"),
    ],
)
def test_anatomy_line_names_side_part_and_view(language: str, laterality: str | None, body_part: str, expected: str) -> None:
    finding = make_finding(laterality=laterality, body_part=body_part)

    assert anatomy_line(finding, language=language) == expected


def test_caption_lines_english() -> None:
    lines = caption_lines(make_finding(), language="en", model_identity="pedfrac-ensemble 0.1.0")

    assert lines[2] == "model pedfrac-ensemble 0.1.0"
    assert lines[3] == "AI assistance, not for diagnosis alone"
    assert len(lines) == 4


def test_caption_lines_korean() -> None:
    lines = caption_lines(make_finding(), language="ko", model_identity="pedfrac-ensemble 0.1.0")

    assert lines[2] == "모델 pedfrac-ensemble 0.1.0"
    assert lines[3] == "AI 보조 판독 — 진단용 단독 사용 금지"


def test_caption_lines_reject_unknown_language() -> None:
    with pytest.raises(ValueError, match="unsupported caption language 'de'; expected one of ko, en"):
        caption_lines(make_finding(), language="de", model_identity="m 1")


@pytest.mark.parametrize(
    ("language", "label", "expected"),
    [("en", FRACTURE, "fracture 0.87"), ("ko", FRACTURE, "골절 0.87"), ("en", FAT_PAD, "fat pad 0.87")],
)
def test_box_label_per_language(language: str, label: str, expected: str) -> None:
    box = Box(label, 0.87, 0, 0, 1, 1)

    assert box_label(box, language=language) == expected


def test_box_label_rejects_unknown_label() -> None:
    box = dataclasses.replace(Box(FRACTURE, 0.5, 0, 0, 1, 1), label="metal")

    with pytest.raises(ValueError, match="unsupported box label 'metal'"):
        box_label(box, language="en")


@pytest.mark.parametrize(
    ("name", "patient_id", "language", "expected"),
    [
        ("김희중", "PF0001", "ko", "환자 김희중, ID PF0001"),
        ("Hong^Gildong=洪^吉洞=홍^길동", "PF0002", "en", "patient Hong Gildong / 洪 吉洞 / 홍 길동, ID PF0002"),
        ("Test^Wrist", None, "en", "patient Test Wrist"),
        (None, "PF0003", "en", "patient ID PF0003"),
        (None, None, "ko", "환자"),
    ],
)
def test_patient_line_formats_name_groups(name: str | None, patient_id: str | None, language: str, expected: str) -> None:
    assert patient_line(name, patient_id, language=language) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "boxes: solid = high specificity, dotted = high sensitivity"),
        ("ko", "상자: 실선 = 고특이도, 점선 = 고민감도"),
    ],
)
def test_legend_line_per_language(language: str, expected: str) -> None:
    assert legend_line(language=language) == expected


@pytest.mark.parametrize(
    ("tier", "language", "expected"),
    [(HIGH_SENSITIVITY, "en", "high sensitivity"), (HIGH_SPECIFICITY, "ko", "고특이도")],
)
def test_tier_name_per_language(tier: str, language: str, expected: str) -> None:
    assert tier_name(tier, language=language) == expected


def test_dicom_text_replaces_em_dash() -> None:
    assert for_dicom_text("AI 보조 판독 — 진단용 단독 사용 금지") == "AI 보조 판독 - 진단용 단독 사용 금지"
