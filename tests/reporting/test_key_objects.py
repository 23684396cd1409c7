from __future__ import annotations

import dataclasses
import logging
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import KeyObjectSelectionDocumentStorage

from reporting.identifiers import KO_SERIES_DESCRIPTION, KO_SERIES_NUMBER, MANUFACTURER, new_uid
from reporting.key_objects import DOCUMENT_TITLE, build_key_object_selection
from reporting.presentation_state import build_presentation_state
from tests.reporting.conftest import KOREAN_NAME, MODEL_IDENTITY, WristStudy, dciodvfy, require_tool, write_and_read


def build_and_write(study: WristStudy, path: Path, *, language: str = "en", with_states: bool = True) -> pydicom.Dataset:
    states = {}
    if with_states:
        state = build_presentation_state(study.fracture, study.finding.images[0], series_instance_uid=new_uid(),
                                         instance_number=1, language=language, model_identity=MODEL_IDENTITY)
        states[str(study.fracture.SOPInstanceUID)] = state
    document = build_key_object_selection(
        [study.fracture, study.normal],
        study.finding,
        series_instance_uid=new_uid(),
        language=language,
        model_identity=MODEL_IDENTITY,
        presentation_states=states,
    )
    return write_and_read(document, path)


def image_items(document: pydicom.Dataset) -> list[pydicom.Dataset]:
    return [item for item in document.ContentSequence if item.ValueType == "IMAGE"]


def description(document: pydicom.Dataset) -> str:
    return next(item.TextValue for item in document.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "113012")


def test_key_objects_pass_dciodvfy(wrist_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(wrist_study, tmp_path / "ko.dcm")

    errors, warnings_found = dciodvfy(tmp_path / "ko.dcm")

    assert errors == []
    assert warnings_found == set()


def test_key_objects_with_korean_name_pass_dciodvfy(korean_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(korean_study, tmp_path / "ko.dcm", language="ko")

    errors, _ = dciodvfy(tmp_path / "ko.dcm")

    assert errors == []


def test_key_objects_read_in_dsrdump(wrist_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(wrist_study, tmp_path / "ko.dcm")

    result = subprocess.run([require_tool("dsrdump"), "+Pu", str(tmp_path / "ko.dcm")], capture_output=True, text=True,
                            errors="replace", check=False)

    assert result.returncode == 0, result.stderr
    assert '"Of Interest"' in result.stdout
    assert wrist_study.fracture.SOPInstanceUID in result.stdout


def test_key_objects_document_attributes(wrist_study: WristStudy, tmp_path: Path) -> None:
    document = build_and_write(wrist_study, tmp_path / "ko.dcm")

    assert document.SOPClassUID == KeyObjectSelectionDocumentStorage
    assert document.StudyInstanceUID == wrist_study.fracture.StudyInstanceUID
    assert document.SeriesNumber == KO_SERIES_NUMBER
    assert document.SeriesDescription == KO_SERIES_DESCRIPTION
    assert document.Manufacturer == MANUFACTURER
    assert document.ConceptNameCodeSequence[0].CodeValue == DOCUMENT_TITLE.value


def test_key_objects_flag_only_positive_images(wrist_study: WristStudy, tmp_path: Path) -> None:
    document = build_and_write(wrist_study, tmp_path / "ko.dcm")

    flagged = [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in image_items(document)]

    assert flagged == [wrist_study.fracture.SOPInstanceUID]


def test_key_objects_reference_presentation_state(wrist_study: WristStudy, tmp_path: Path) -> None:
    document = build_and_write(wrist_study, tmp_path / "ko.dcm")

    nested = image_items(document)[0].ReferencedSOPSequence[0].ReferencedSOPSequence[0]
    evidence = {
        instance.ReferencedSOPInstanceUID
        for series in document.CurrentRequestedProcedureEvidenceSequence
        for series_item in series.ReferencedSeriesSequence
        for instance in series_item.ReferencedSOPSequence
    }

    assert nested.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1"
    assert nested.ReferencedSOPInstanceUID in evidence
    assert wrist_study.fracture.SOPInstanceUID in evidence


def test_key_objects_without_states_reference_images_only(wrist_study: WristStudy, tmp_path: Path) -> None:
    document = build_and_write(wrist_study, tmp_path / "ko.dcm", with_states=False)

    assert "ReferencedSOPSequence" not in image_items(document)[0].ReferencedSOPSequence[0]


def test_key_objects_describe_result(wrist_study: WristStudy, tmp_path: Path) -> None:
    document = build_and_write(wrist_study, tmp_path / "ko.dcm")

    assert description(document) == (
        f"AI: fracture suspected on 1 of 2 images read, maximum p=0.91, model {MODEL_IDENTITY}. "
        "AI assistance, not for diagnosis alone"
    )


def test_key_objects_describe_result_in_korean(korean_study: WristStudy, tmp_path: Path) -> None:
    document = build_and_write(korean_study, tmp_path / "ko.dcm", language="ko")

    assert document.SpecificCharacterSet == korean_study.fracture.SpecificCharacterSet
    assert str(document.PatientName) == KOREAN_NAME
    assert description(document).startswith("AI: 판독한 영상 2장 중 1장에서 골절 의심, 최대 p=0.91")
    assert description(document).endswith("AI 보조 판독 - 진단용 단독 사용 금지")


def test_key_objects_log_no_patient_name(korean_study: WristStudy, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    build_and_write(korean_study, tmp_path / "ko.dcm")

    assert KOREAN_NAME not in caplog.text


def test_key_objects_reject_study_without_positive_image(wrist_study: WristStudy) -> None:
    negative = tuple(dataclasses.replace(image, positive=False) for image in wrist_study.finding.images)
    finding = dataclasses.replace(wrist_study.finding, images=negative)

    with pytest.raises(ValueError, match="has no positive image, so there is no key object to flag"):
        build_key_object_selection([wrist_study.fracture, wrist_study.normal], finding, series_instance_uid=new_uid(),
                                   language="en", model_identity=MODEL_IDENTITY)


def test_key_objects_reject_missing_source(wrist_study: WristStudy) -> None:
    with pytest.raises(ValueError, match=f"positive images with SOP Instance UIDs {wrist_study.fracture.SOPInstanceUID}"):
        build_key_object_selection([wrist_study.normal], wrist_study.finding, series_instance_uid=new_uid(),
                                   language="en", model_identity=MODEL_IDENTITY)
