from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from inference.findings import FRACTURE, HIGH_SENSITIVITY, HIGH_SPECIFICITY, Box, ImageFinding
from reporting.overlay import BOX_COLOURS, BUNDLED_FONT_PATH, DEFAULT_FONT_PATH, render_overlay
from tests.reporting.conftest import MODEL_IDENTITY, WristStudy, fracture_finding

needs_font = pytest.mark.skipif(not DEFAULT_FONT_PATH.is_file(), reason=f"{DEFAULT_FONT_PATH} missing; install fonts-nanum")


def grey_finding(shape: tuple[int, int], *, boxes: tuple[Box, ...] = (), heatmap: np.ndarray | None = None) -> ImageFinding:
    return ImageFinding(
        sop_instance_uid="2.25.1",
        body_part="wrist",
        view="AP",
        laterality="R",
        view_source="ViewPosition",
        probability=0.91,
        threshold=0.5,
        positive=True,
        members=(),
        boxes=boxes,
        display=np.full(shape, 128, dtype=np.uint8),
        heatmap=heatmap,
    )


def caption_block_height(overlay: np.ndarray) -> int:
    """Rows at the left edge that the dark caption block covers on a mid-grey image."""
    darkened = overlay[:, 0, 0] < 100
    return int(np.argmin(darkened)) if not darkened.all() else overlay.shape[0]


@needs_font
def test_overlay_has_source_shape_and_rgb(wrist_study: WristStudy) -> None:
    finding = fracture_finding(wrist_study.fracture)

    overlay = render_overlay(finding, language="ko", model_identity=MODEL_IDENTITY)

    assert overlay.shape == finding.display.shape + (3,)
    assert overlay.dtype == np.uint8


@needs_font
def test_overlay_draws_box_edge_in_fracture_red(wrist_study: WristStudy) -> None:
    finding = fracture_finding(wrist_study.fracture)
    box = finding.boxes[0]
    bottom_row, middle_column = int(box.y1), int((box.x0 + box.x1) / 2)

    overlay = render_overlay(finding, language="en", model_identity=MODEL_IDENTITY)

    assert tuple(overlay[bottom_row, middle_column]) == BOX_COLOURS[FRACTURE]
    assert not np.array_equal(overlay[bottom_row, middle_column], np.repeat(finding.display[bottom_row, middle_column], 3))


@needs_font
def test_overlay_tints_heat_inside_box(wrist_study: WristStudy) -> None:
    finding = fracture_finding(wrist_study.fracture)
    box = finding.boxes[0]
    centre_row, centre_column = int((box.y0 + box.y1) / 2), int((box.x0 + box.x1) / 2)

    overlay = render_overlay(finding, language="en", model_identity=MODEL_IDENTITY)

    red, green, blue = (int(channel) for channel in overlay[centre_row, centre_column])
    assert not red == green == blue


@needs_font
def test_overlay_keeps_grey_far_from_findings(wrist_study: WristStudy) -> None:
    finding = fracture_finding(wrist_study.fracture)
    rows, columns = finding.display.shape

    overlay = render_overlay(finding, language="en", model_identity=MODEL_IDENTITY)

    corner = overlay[rows - 20 : rows, columns - 20 : columns]
    assert np.array_equal(corner, np.repeat(finding.display[rows - 20 : rows, columns - 20 : columns, np.newaxis], 3, axis=2))


@needs_font
def test_overlay_without_heatmap() -> None:
    finding = grey_finding((300, 200), boxes=(Box(FRACTURE, 0.7, 50, 150, 120, 220),))

    overlay = render_overlay(finding, language="ko", model_identity=MODEL_IDENTITY)

    assert tuple(overlay[220, 80]) == BOX_COLOURS[FRACTURE]


@needs_font
def test_caption_scales_with_image_size() -> None:
    small = render_overlay(grey_finding((500, 500)), language="ko", model_identity=MODEL_IDENTITY)
    large = render_overlay(grey_finding((2000, 2000)), language="ko", model_identity=MODEL_IDENTITY)

    small_height, large_height = caption_block_height(small), caption_block_height(large)
    assert small_height >= 4 * 12
    assert 3.0 <= large_height / small_height <= 5.0


@needs_font
def test_caption_fits_narrow_image() -> None:
    overlay = render_overlay(grey_finding((900, 300)), language="en", model_identity=MODEL_IDENTITY)

    assert overlay[:, -1, 0].min() == 128


def test_overlay_rejects_missing_font(tmp_path: Path) -> None:
    missing = tmp_path / "NoSuchFont.ttf"

    with pytest.raises(FileNotFoundError, match=r"NoSuchFont\.ttf not found; install the Debian package fonts-nanum"):
        render_overlay(grey_finding((64, 64)), language="en", model_identity=MODEL_IDENTITY, font_path=missing)


def test_overlay_rejects_unknown_language() -> None:
    with pytest.raises(ValueError, match="unsupported caption language 'fr'"):
        render_overlay(grey_finding((64, 64)), language="fr", model_identity=MODEL_IDENTITY)


def test_overlay_rejects_heatmap_of_other_shape() -> None:
    finding = grey_finding((64, 64), heatmap=np.zeros((32, 32), dtype=np.float32))

    with pytest.raises(ValueError, match=r"heatmap has shape \(32, 32\), but the display image has shape \(64, 64\)"):
        render_overlay(finding, language="en", model_identity=MODEL_IDENTITY)


def test_overlay_rejects_heatmap_out_of_range() -> None:
    finding = grey_finding((64, 64), heatmap=np.full((64, 64), 2.0, dtype=np.float32))

    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        render_overlay(finding, language="en", model_identity=MODEL_IDENTITY)


def test_overlay_rejects_colour_display() -> None:
    finding = dataclasses.replace(grey_finding((64, 64)), display=np.zeros((64, 64, 3), dtype=np.uint8))

    with pytest.raises(ValueError, match="must be a 2-D uint8 grey image"):
        render_overlay(finding, language="en", model_identity=MODEL_IDENTITY)


def bottom_block_height(overlay: np.ndarray) -> int:
    """Rows at the left edge, counted from the bottom, that the dark caption block covers on a mid-grey image."""
    darkened = overlay[::-1, 0, 0] < 100
    return int(np.argmin(darkened)) if not darkened.all() else overlay.shape[0]


@needs_font
def test_overlay_draws_high_specificity_box_solid() -> None:
    box = Box(FRACTURE, 0.9, 100, 150, 180, 230, tier=HIGH_SPECIFICITY)

    overlay = render_overlay(grey_finding((300, 300), boxes=(box,)), language="en", model_identity=MODEL_IDENTITY)

    bottom_edge = overlay[230, 100:181]
    assert all(tuple(pixel) == BOX_COLOURS[FRACTURE] for pixel in bottom_edge)


@needs_font
def test_overlay_draws_high_sensitivity_box_dotted() -> None:
    box = Box(FRACTURE, 0.3, 100, 150, 180, 230, tier=HIGH_SENSITIVITY)

    overlay = render_overlay(grey_finding((300, 300), boxes=(box,)), language="en", model_identity=MODEL_IDENTITY)

    bottom_edge = [tuple(pixel) for pixel in overlay[230, 100:181]]
    assert bottom_edge.count(BOX_COLOURS[FRACTURE]) >= 20
    assert bottom_edge.count((128, 128, 128)) >= 20


@needs_font
def test_overlay_adds_patient_line() -> None:
    without = render_overlay(grey_finding((500, 500)), language="ko", model_identity=MODEL_IDENTITY)
    with_patient = render_overlay(grey_finding((500, 500)), language="ko", model_identity=MODEL_IDENTITY,
                                  patient="환자 Hong Gildong / 洪 吉洞 / 홍 길동, ID PF0002")

    assert caption_block_height(with_patient) > caption_block_height(without)


@needs_font
def test_overlay_draws_hanja_and_hangul(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    render_overlay(grey_finding((500, 500)), language="ko", model_identity=MODEL_IDENTITY, patient="환자 洪 吉洞 / 홍 길동")

    assert "has no glyph" not in caplog.text


@needs_font
def test_overlay_marks_characters_without_glyph(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    render_overlay(grey_finding((500, 500)), language="en", model_identity=MODEL_IDENTITY, patient="patient क")

    assert "has no glyph for 1 characters of a caption line" in caplog.text
    assert "क" not in caplog.text


@needs_font
def test_overlay_adds_legend_when_boxes_drawn() -> None:
    without = render_overlay(grey_finding((500, 500)), language="en", model_identity=MODEL_IDENTITY)
    with_box = render_overlay(grey_finding((500, 500), boxes=(Box(FRACTURE, 0.7, 200, 200, 260, 260),)), language="en",
                              model_identity=MODEL_IDENTITY)

    assert bottom_block_height(with_box) > bottom_block_height(without)


@needs_font
def test_caption_moves_away_from_top_left_box() -> None:
    box = Box(FRACTURE, 0.7, 5, 5, 60, 40)

    overlay = render_overlay(grey_finding((600, 600), boxes=(box,)), language="en", model_identity=MODEL_IDENTITY)

    assert overlay[2, -2, 0] < 100
    assert tuple(overlay[45, 2]) == (128, 128, 128)


def test_default_font_is_bundled_nanum_gothic() -> None:
    assert DEFAULT_FONT_PATH == BUNDLED_FONT_PATH
    assert BUNDLED_FONT_PATH.name == "NanumGothic.ttf"
    assert (BUNDLED_FONT_PATH.parent / "OFL.txt").is_file()
