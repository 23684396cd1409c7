from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inference.findings import FAT_PAD, FRACTURE, Box, ImageFinding
from reporting.captions import anatomy_line, box_label, caption_lines, verdict_line


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
