from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage

from reporting.identifiers import MANUFACTURER, SC_SERIES_DESCRIPTION, SC_SERIES_NUMBER, new_uid, software_version
from reporting.overlay import DEFAULT_FONT_PATH, render_overlay
from reporting.secondary_capture import build_secondary_capture
from tests.reporting.conftest import KOREAN_NAME, MODEL_IDENTITY, WristStudy, dciodvfy, fracture_finding, write_and_read

pytestmark = pytest.mark.skipif(not DEFAULT_FONT_PATH.is_file(), reason=f"{DEFAULT_FONT_PATH} missing; install fonts-nanum")

# dciodvfy warning on a Person Name without "^" (a single-component name such as 김희중).
# PS3.5 Section 6.2.1 allows such a name, and the source DX gets the same warning.
SINGLE_COMPONENT_NAME_WARNING = (
    "Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <value> - Retired Person Name form"
)
# dciodvfy warning on an empty Laterality (0020,0060), which the SC gets when the source names no
# side. The value is Type 2C, so empty is allowed when the side is unknown.
UNKNOWN_LATERALITY_WARNING = (
    "Warning - is only permitted to be empty when actually unknown; should be absent (not empty) "
    "if an unpaired body part, and have a value if a paired body part - attribute <Laterality>"
)


def build_and_write(study: WristStudy, path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    finding = fracture_finding(study.fracture)
    overlay = render_overlay(finding, language="ko", model_identity=MODEL_IDENTITY)
    image = build_secondary_capture(
        study.fracture,
        overlay,
        finding,
        series_instance_uid=new_uid(),
        instance_number=1,
        model_identity=MODEL_IDENTITY,
    )
    return write_and_read(image, path), overlay


def test_secondary_capture_passes_dciodvfy(wrist_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(wrist_study, tmp_path / "sc.dcm")

    errors, warnings_found = dciodvfy(tmp_path / "sc.dcm")

    assert errors == []
    assert warnings_found == set()


def test_secondary_capture_with_korean_name_passes_dciodvfy(korean_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(korean_study, tmp_path / "sc.dcm")

    errors, warnings_found = dciodvfy(tmp_path / "sc.dcm")

    assert errors == []
    assert warnings_found == {SINGLE_COMPONENT_NAME_WARNING}


def test_secondary_capture_keeps_korean_patient_name(korean_study: WristStudy, tmp_path: Path) -> None:
    image, _ = build_and_write(korean_study, tmp_path / "sc.dcm")

    assert image.SpecificCharacterSet == korean_study.fracture.SpecificCharacterSet
    assert image.PatientName == korean_study.fracture.PatientName
    assert str(image.PatientName) == KOREAN_NAME


def test_secondary_capture_copies_patient_and_study(wrist_study: WristStudy, tmp_path: Path) -> None:
    image, _ = build_and_write(wrist_study, tmp_path / "sc.dcm")
    source = wrist_study.fracture

    for keyword in ("PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "AccessionNumber", "StudyID", "StudyDate"):
        assert image[keyword].value == source[keyword].value, keyword


def test_secondary_capture_is_new_series(wrist_study: WristStudy, tmp_path: Path) -> None:
    image, _ = build_and_write(wrist_study, tmp_path / "sc.dcm")

    assert image.SOPClassUID == SecondaryCaptureImageStorage
    assert image.SeriesInstanceUID != wrist_study.fracture.SeriesInstanceUID
    assert image.SeriesNumber == SC_SERIES_NUMBER
    assert image.SeriesDescription == SC_SERIES_DESCRIPTION


def test_secondary_capture_marks_derived_annotated_image(wrist_study: WristStudy, tmp_path: Path) -> None:
    image, _ = build_and_write(wrist_study, tmp_path / "sc.dcm")

    assert list(image.ImageType) == ["DERIVED", "SECONDARY"]
    assert image.ConversionType == "WSD"
    assert image.BurnedInAnnotation == "YES"
    assert image.Laterality == "R"
    assert image.Manufacturer == MANUFACTURER
    assert image.SoftwareVersions == software_version()


def test_secondary_capture_references_source(wrist_study: WristStudy, tmp_path: Path) -> None:
    image, _ = build_and_write(wrist_study, tmp_path / "sc.dcm")
    reference = image.SourceImageSequence[0]

    assert reference.ReferencedSOPInstanceUID == wrist_study.fracture.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == wrist_study.fracture.SOPClassUID
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert wrist_study.fracture.SOPInstanceUID in image.DerivationDescription


def test_secondary_capture_stores_overlay_pixels(wrist_study: WristStudy, tmp_path: Path) -> None:
    image, overlay = build_and_write(wrist_study, tmp_path / "sc.dcm")

    assert image.PhotometricInterpretation == "RGB"
    assert np.array_equal(image.pixel_array, overlay)


def test_secondary_capture_logs_no_patient_name(korean_study: WristStudy, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_and_write(korean_study, tmp_path / "sc.dcm")

    assert KOREAN_NAME not in caplog.text
    assert all(KOREAN_NAME not in str(warning.message) for warning in caught)


def test_secondary_capture_rejects_overlay_of_other_size(wrist_study: WristStudy) -> None:
    finding = fracture_finding(wrist_study.fracture)
    overlay = np.zeros((10, 10, 3), dtype=np.uint8)

    with pytest.raises(ValueError, match=r"overlay must be a uint8 RGB array of shape \(1130, 704, 3\)"):
        build_secondary_capture(wrist_study.fracture, overlay, finding, series_instance_uid=new_uid(), instance_number=1, model_identity=MODEL_IDENTITY)


def test_secondary_capture_rejects_finding_of_other_image(wrist_study: WristStudy) -> None:
    finding = dataclasses.replace(fracture_finding(wrist_study.fracture), sop_instance_uid="2.25.1")
    overlay = np.zeros(finding.display.shape + (3,), dtype=np.uint8)

    with pytest.raises(ValueError, match="finding is for SOP instance 2.25.1"):
        build_secondary_capture(wrist_study.fracture, overlay, finding, series_instance_uid=new_uid(), instance_number=1, model_identity=MODEL_IDENTITY)


@pytest.mark.parametrize("orientation", [None, ""], ids=["absent", "empty"])
def test_secondary_capture_empties_unknown_orientation(wrist_study: WristStudy, tmp_path: Path, orientation: str | None) -> None:
    source = wrist_study.fracture.copy()
    if orientation is None:
        del source.PatientOrientation
    else:
        source.PatientOrientation = orientation
    finding = fracture_finding(wrist_study.fracture)
    overlay = np.zeros(finding.display.shape + (3,), dtype=np.uint8)

    image = build_secondary_capture(source, overlay, finding, series_instance_uid=new_uid(), instance_number=1, model_identity=MODEL_IDENTITY)
    written = write_and_read(image, tmp_path / "sc.dcm")

    assert "PatientOrientation" in written
    assert written.PatientOrientation == ""
    assert dciodvfy(tmp_path / "sc.dcm")[0] == []


def test_secondary_capture_empties_unknown_laterality(wrist_study: WristStudy, tmp_path: Path) -> None:
    source = wrist_study.fracture.copy()
    del source.Laterality
    del source.ImageLaterality
    finding = fracture_finding(wrist_study.fracture)
    overlay = np.zeros(finding.display.shape + (3,), dtype=np.uint8)

    image = build_secondary_capture(source, overlay, finding, series_instance_uid=new_uid(), instance_number=1, model_identity=MODEL_IDENTITY)
    written = write_and_read(image, tmp_path / "sc.dcm")
    errors, warnings_found = dciodvfy(tmp_path / "sc.dcm")

    assert written.Laterality == ""
    assert errors == []
    assert warnings_found == {UNKNOWN_LATERALITY_WARNING}


def test_secondary_capture_codes_derivation(wrist_study: WristStudy, tmp_path: Path) -> None:
    image, _ = build_and_write(wrist_study, tmp_path / "sc.dcm")

    derivation = image.DerivationCodeSequence[0]

    assert (derivation.CodeValue, derivation.CodingSchemeDesignator) == ("110004", "DCM")
    assert derivation.CodeMeaning == "Computer Aided Detection"


def test_secondary_capture_names_model_package_as_equipment(wrist_study: WristStudy, tmp_path: Path) -> None:
    image, _ = build_and_write(wrist_study, tmp_path / "sc.dcm")

    ours = [item for item in image.ContributingEquipmentSequence if item.Manufacturer == MANUFACTURER]

    assert len(ours) == 1
    assert ours[0].ManufacturerModelName == MODEL_IDENTITY
    assert ours[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
