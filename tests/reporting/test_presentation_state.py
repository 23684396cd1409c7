from __future__ import annotations

import dataclasses
import logging
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import GrayscaleSoftcopyPresentationStateStorage

from inference.findings import HIGH_SENSITIVITY, ImageFinding
from reporting.identifiers import MANUFACTURER, PR_SERIES_DESCRIPTION, PR_SERIES_NUMBER, UTF8_CHARACTER_SET, new_uid
from reporting.presentation_state import CAPTION_LAYER, CONTENT_LABEL, LAYER_NAMES, build_presentation_state
from tests.reporting.conftest import (
    KOREAN_NAME,
    MODEL_IDENTITY,
    WristStudy,
    build_wrist_study,
    dciodvfy,
    fracture_finding,
    require_tool,
    write_and_read,
)


def two_tier_finding(study: WristStudy) -> ImageFinding:
    """The fracture finding with its second fracture box at the high-sensitivity operating point."""
    finding = fracture_finding(study.fracture, with_fat_pad=True)
    boxes = (finding.boxes[0], dataclasses.replace(finding.boxes[1], tier=HIGH_SENSITIVITY), finding.boxes[2])
    return dataclasses.replace(finding, boxes=boxes)


def build_and_write(study: WristStudy, path: Path, *, language: str = "en") -> pydicom.Dataset:
    state = build_presentation_state(
        study.fracture,
        two_tier_finding(study),
        series_instance_uid=new_uid(),
        instance_number=1,
        language=language,
        model_identity=MODEL_IDENTITY,
    )
    return write_and_read(state, path)


def annotations_by_layer(state: pydicom.Dataset) -> dict[str, pydicom.Dataset]:
    return {item.GraphicLayer: item for item in state.GraphicAnnotationSequence}


def test_presentation_state_passes_dciodvfy(wrist_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(wrist_study, tmp_path / "pr.dcm")

    errors, warnings_found = dciodvfy(tmp_path / "pr.dcm")

    assert errors == []
    assert warnings_found == set()


def test_presentation_state_is_new_series_of_study(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    assert state.SOPClassUID == GrayscaleSoftcopyPresentationStateStorage
    assert state.StudyInstanceUID == wrist_study.fracture.StudyInstanceUID
    assert state.SeriesInstanceUID != wrist_study.fracture.SeriesInstanceUID
    assert state.SeriesNumber == PR_SERIES_NUMBER
    assert state.SeriesDescription == PR_SERIES_DESCRIPTION
    assert state.Manufacturer == MANUFACTURER
    assert state.ContentLabel == CONTENT_LABEL
    assert state.Laterality == "R"


def test_presentation_state_references_source(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    series = state.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == wrist_study.fracture.SeriesInstanceUID
    assert series.ReferencedImageSequence[0].ReferencedSOPInstanceUID == wrist_study.fracture.SOPInstanceUID
    for annotation in state.GraphicAnnotationSequence:
        assert annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == wrist_study.fracture.SOPInstanceUID


def test_presentation_state_keeps_source_window(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    voi = state.SoftcopyVOILUTSequence[0]
    assert float(voi.WindowCenter) == pytest.approx(float(wrist_study.fracture.WindowCenter))
    assert float(voi.WindowWidth) == pytest.approx(float(wrist_study.fracture.WindowWidth))


def test_presentation_state_puts_tiers_in_layers(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    layers = annotations_by_layer(state)
    assert [layer.GraphicLayer for layer in state.GraphicLayerSequence] == [*LAYER_NAMES.values(), CAPTION_LAYER]
    assert len(layers[LAYER_NAMES["high_specificity"]].GraphicObjectSequence) == 2
    assert len(layers[LAYER_NAMES["high_sensitivity"]].GraphicObjectSequence) == 1


def test_presentation_state_dashes_high_sensitivity_boxes(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    layers = annotations_by_layer(state)
    specific = layers[LAYER_NAMES["high_specificity"]].GraphicObjectSequence[0]
    sensitive = layers[LAYER_NAMES["high_sensitivity"]].GraphicObjectSequence[0]
    assert specific.LineStyleSequence[0].LineDashingStyle == "SOLID"
    assert sensitive.LineStyleSequence[0].LineDashingStyle == "DASHED"
    assert sensitive.LineStyleSequence[0].LinePattern == 0xFF00


def test_presentation_state_draws_boxes_as_closed_polylines(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")
    box = two_tier_finding(wrist_study).boxes[0]

    outline = annotations_by_layer(state)[LAYER_NAMES["high_specificity"]].GraphicObjectSequence[0]

    assert outline.GraphicType == "POLYLINE"
    assert outline.GraphicAnnotationUnits == "PIXEL"
    assert outline.NumberOfGraphicPoints == 5
    assert list(outline.GraphicData[:2]) == list(outline.GraphicData[-2:])
    assert list(outline.GraphicData[4:6]) == pytest.approx([box.x1, box.y1])


def test_presentation_state_labels_boxes(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    layers = annotations_by_layer(state)
    specific = [text.UnformattedTextValue for text in layers[LAYER_NAMES["high_specificity"]].TextObjectSequence]
    sensitive = [text.UnformattedTextValue for text in layers[LAYER_NAMES["high_sensitivity"]].TextObjectSequence]
    assert specific == ["fracture 0.87", "fat pad 0.41"]
    assert sensitive == ["fracture 0.64"]


def test_presentation_state_groups_box_with_label(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    annotation = annotations_by_layer(state)[LAYER_NAMES["high_sensitivity"]]

    group_id = annotation.GraphicObjectSequence[0].GraphicGroupID
    assert annotation.TextObjectSequence[0].GraphicGroupID == group_id
    assert group_id in {group.GraphicGroupID for group in state.GraphicGroupSequence}


def test_presentation_state_caption_has_disclaimer(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(wrist_study, tmp_path / "pr.dcm")

    caption = [text.UnformattedTextValue for text in annotations_by_layer(state)[CAPTION_LAYER].TextObjectSequence]

    assert caption == ["AI: fracture suspected, p=0.91", f"model {MODEL_IDENTITY}", "AI assistance, not for diagnosis alone"]


def test_presentation_state_keeps_korean_charset(korean_study: WristStudy, tmp_path: Path) -> None:
    state = build_and_write(korean_study, tmp_path / "pr.dcm", language="ko")

    caption = [text.UnformattedTextValue for text in annotations_by_layer(state)[CAPTION_LAYER].TextObjectSequence]
    assert state.SpecificCharacterSet == korean_study.fracture.SpecificCharacterSet
    assert str(state.PatientName) == KOREAN_NAME
    assert caption[-1] == "AI 보조 판독 - 진단용 단독 사용 금지"


def test_presentation_state_switches_latin1_source_to_utf8(tmp_path: Path) -> None:
    study = build_wrist_study(tmp_path, patient_name="Müller^Jörg", charset="ISO_IR 100")

    state = build_and_write(study, tmp_path / "pr.dcm", language="ko")

    assert state.SpecificCharacterSet == UTF8_CHARACTER_SET
    assert str(state.PatientName) == "Müller^Jörg"
    assert dciodvfy(tmp_path / "pr.dcm")[0] == []


def test_presentation_state_with_korean_name_passes_dciodvfy(korean_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(korean_study, tmp_path / "pr.dcm", language="ko")

    errors, _ = dciodvfy(tmp_path / "pr.dcm")

    assert errors == []


def test_presentation_state_logs_no_patient_name(korean_study: WristStudy, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_and_write(korean_study, tmp_path / "pr.dcm")

    assert KOREAN_NAME not in caplog.text
    assert all(KOREAN_NAME not in str(warning.message) for warning in caught)


def test_presentation_state_rejects_finding_of_other_image(wrist_study: WristStudy) -> None:
    finding = dataclasses.replace(fracture_finding(wrist_study.fracture), sop_instance_uid="2.25.1")

    with pytest.raises(ValueError, match="finding is for SOP instance 2.25.1"):
        build_presentation_state(wrist_study.fracture, finding, series_instance_uid=new_uid(), instance_number=1,
                                 language="en", model_identity=MODEL_IDENTITY)


def test_presentation_state_rejects_unknown_language(wrist_study: WristStudy) -> None:
    with pytest.raises(ValueError, match="unsupported caption language 'fr'"):
        build_presentation_state(wrist_study.fracture, fracture_finding(wrist_study.fracture), series_instance_uid=new_uid(),
                                 instance_number=1, language="fr", model_identity=MODEL_IDENTITY)


def test_presentation_state_without_boxes_has_caption_only(wrist_study: WristStudy, tmp_path: Path) -> None:
    state = build_presentation_state(wrist_study.normal, wrist_study.finding.images[1], series_instance_uid=new_uid(),
                                     instance_number=2, language="en", model_identity=MODEL_IDENTITY)
    written = write_and_read(state, tmp_path / "pr.dcm")

    assert [layer.GraphicLayer for layer in written.GraphicLayerSequence] == [CAPTION_LAYER]
    assert "GraphicGroupSequence" not in written
    assert dciodvfy(tmp_path / "pr.dcm")[0] == []


def test_presentation_state_parses_in_dcmtk(wrist_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(wrist_study, tmp_path / "pr.dcm")

    # dcmp2pgm applies the presentation state to the image, as a viewer would, and -v lists what it read.
    result = subprocess.run([require_tool("dcmp2pgm"), "-v", "-p", str(tmp_path / "pr.dcm"), str(tmp_path / "fracture.dcm"),
                             str(tmp_path / "rendered.pgm")], capture_output=True, text=True, errors="replace", check=False)

    assert result.returncode == 0, result.stderr
    assert "Graphic Layer #1 [AI HIGH SPEC]" in result.stderr + result.stdout
    assert "Graphic Layer #2 [AI HIGH SENS]" in result.stderr + result.stdout
    assert '"fracture 0.64"' in result.stderr + result.stdout
    assert (tmp_path / "rendered.pgm").is_file()
