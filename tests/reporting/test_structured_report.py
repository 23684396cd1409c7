from __future__ import annotations

import dataclasses
import logging
import subprocess
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage

from inference.findings import FAT_PAD, HIGH_SENSITIVITY, HIGH_SPECIFICITY, Box
from reporting.identifiers import MANUFACTURER, SR_SERIES_DESCRIPTION, SR_SERIES_NUMBER, new_uid
from reporting.structured_report import (
    ABSENT,
    BONE_SITES,
    EFFUSION_CONCEPT,
    FINDING_SITES,
    FRACTURE_CONCEPT,
    FRACTURE_PROBABILITY,
    IMAGE_NOT_ANALYSED,
    PRESENT,
    PRIVATE_SCHEME,
    PROCEDURES,
    QUALITATIVE_EVALUATIONS,
    ReportReference,
    build_structured_report,
)
from tests.reporting.conftest import (
    KOREAN_NAME,
    MODEL_IDENTITY,
    MODEL_NAME,
    MODEL_VERSION,
    WristStudy,
    dciodvfy,
    require_tool,
    write_and_read,
)

# dciodvfy (dicom3tools) accepts only the coding schemes that DICOM lists, so it warns once for
# every code of the private scheme 99PEDFRAC. The SR declares that scheme in its Coding Scheme
# Identification Sequence (0008,0110), and the warning is expected.
PRIVATE_SCHEME_WARNING = (
    f"Warning - Unrecognized defined term <{PRIVATE_SCHEME}> for value 1 of attribute <Coding Scheme Designator>"
)
# dciodvfy warning on a Person Name without "^" (a single-component name such as 김희중).
SINGLE_COMPONENT_NAME_WARNING = (
    "Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <value> - Retired Person Name form"
)


STUDY_TRACKING_IDENTIFIER = "study fracture conclusion"


def build(study: WristStudy, *, predecessor: ReportReference | None = None) -> hd.sr.Comprehensive3DSR:
    return build_structured_report(
        [study.fracture, study.normal],
        study.finding,
        series_instance_uid=new_uid(),
        model_identity=MODEL_IDENTITY,
        algorithm_name=MODEL_NAME,
        algorithm_version=MODEL_VERSION,
        predecessor=predecessor,
    )


def build_and_write(study: WristStudy, path: Path) -> pydicom.Dataset:
    return write_and_read(build(study), path)


def read_report(dataset: pydicom.Dataset) -> hd.sr.MeasurementReport:
    document = hd.sr.Comprehensive3DSR.from_dataset(dataset)
    return hd.sr.MeasurementReport.from_sequence(document.content)


def image_group(report: hd.sr.MeasurementReport, sop_instance_uid: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The per-image TID 1501 group of one source image (the study group references every image)."""
    groups = report.get_image_measurement_groups(referenced_sop_instance_uid=sop_instance_uid)
    per_image = [group for group in groups if group.tracking_identifier != STUDY_TRACKING_IDENTIFIER]
    assert len(per_image) == 1, sop_instance_uid
    return per_image[0]


def test_report_passes_dciodvfy(wrist_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(wrist_study, tmp_path / "sr.dcm")

    errors, warnings_found = dciodvfy(tmp_path / "sr.dcm")

    assert errors == []
    assert warnings_found == {PRIVATE_SCHEME_WARNING}


def test_report_with_korean_name_passes_dciodvfy(korean_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(korean_study, tmp_path / "sr.dcm")

    errors, warnings_found = dciodvfy(tmp_path / "sr.dcm")

    assert errors == []
    assert warnings_found == {PRIVATE_SCHEME_WARNING, SINGLE_COMPONENT_NAME_WARNING}


def test_report_reads_in_dsrdump(wrist_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(wrist_study, tmp_path / "sr.dcm")

    result = subprocess.run(
        [require_tool("dsrdump"), "+Pl", "+Pu", str(tmp_path / "sr.dcm")],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert '(72704001,SCT,"Fracture")' in result.stdout
    assert '"Fracture probability")="0.91"' in result.stdout
    assert wrist_study.fracture.SOPInstanceUID in result.stdout


def test_report_keeps_korean_patient_name(korean_study: WristStudy, tmp_path: Path) -> None:
    dataset = build_and_write(korean_study, tmp_path / "sr.dcm")

    assert dataset.SpecificCharacterSet == korean_study.fracture.SpecificCharacterSet
    assert dataset.PatientName == korean_study.fracture.PatientName
    assert str(dataset.PatientName) == KOREAN_NAME


def test_report_copies_patient_and_study(wrist_study: WristStudy, tmp_path: Path) -> None:
    dataset = build_and_write(wrist_study, tmp_path / "sr.dcm")
    source = wrist_study.fracture

    for keyword in ("PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "AccessionNumber", "StudyID", "StudyDate"):
        assert dataset[keyword].value == source[keyword].value, keyword


def test_report_document_flags(wrist_study: WristStudy, tmp_path: Path) -> None:
    dataset = build_and_write(wrist_study, tmp_path / "sr.dcm")

    assert dataset.SOPClassUID == Comprehensive3DSRStorage
    assert dataset.CompletionFlag == "COMPLETE"
    assert dataset.VerificationFlag == "UNVERIFIED"
    assert dataset.Manufacturer == MANUFACTURER
    assert dataset.SeriesNumber == SR_SERIES_NUMBER
    assert dataset.SeriesDescription == SR_SERIES_DESCRIPTION
    assert dataset.SeriesInstanceUID not in {wrist_study.fracture.SeriesInstanceUID, wrist_study.normal.SeriesInstanceUID}


def test_report_declares_private_scheme(wrist_study: WristStudy, tmp_path: Path) -> None:
    dataset = build_and_write(wrist_study, tmp_path / "sr.dcm")

    designators = [item.CodingSchemeDesignator for item in dataset.CodingSchemeIdentificationSequence]
    assert designators == [PRIVATE_SCHEME]


def test_report_lists_read_images_as_evidence(wrist_study: WristStudy, tmp_path: Path) -> None:
    dataset = build_and_write(wrist_study, tmp_path / "sr.dcm")

    evidence = {
        instance.ReferencedSOPInstanceUID
        for series in dataset.CurrentRequestedProcedureEvidenceSequence
        for series_item in series.ReferencedSeriesSequence
        for instance in series_item.ReferencedSOPSequence
    }
    assert evidence == {wrist_study.fracture.SOPInstanceUID, wrist_study.normal.SOPInstanceUID}


def test_report_codes_wrist_procedure(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    procedures = [item.value for item in report[0].ContentSequence if item.name == codes.DCM.ProcedureReported]
    assert procedures == [PROCEDURES["wrist"]]


def test_report_codes_elbow_procedure_and_site(wrist_study: WristStudy, tmp_path: Path) -> None:
    elbow_images = tuple(dataclasses.replace(image, body_part="elbow") for image in wrist_study.finding.images)
    study = dataclasses.replace(wrist_study, finding=dataclasses.replace(wrist_study.finding, images=elbow_images))

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    procedures = [item.value for item in report[0].ContentSequence if item.name == codes.DCM.ProcedureReported]
    assert procedures == [PROCEDURES["elbow"]]
    assert image_group(report, wrist_study.fracture.SOPInstanceUID).finding_sites[0].value == codes.SCT.ElbowJoint


def test_report_image_library_lists_read_images(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    library = [item for item in report[0].ContentSequence if item.name == codes.DCM.ImageLibrary]
    entries = library[0].ContentSequence[0].ContentSequence
    assert [entry.referenced_sop_instance_uid for entry in entries] == [wrist_study.fracture.SOPInstanceUID, wrist_study.normal.SOPInstanceUID]


def test_report_image_library_uses_pixel_spacing(wrist_study: WristStudy, tmp_path: Path) -> None:
    study = dataclasses.replace(wrist_study, fracture=wrist_study.fracture.copy())
    study.fracture.ImagerPixelSpacing = [0.1, 0.1]

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    library = [item for item in report[0].ContentSequence if item.name == codes.DCM.ImageLibrary]
    descriptors = library[0].ContentSequence[0].ContentSequence[0].ContentSequence
    assert codes.DCM.HorizontalPixelSpacing in [item.name for item in descriptors]


def test_report_image_groups_code_fracture(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    expected = {wrist_study.fracture.SOPInstanceUID: (PRESENT, 0.91), wrist_study.normal.SOPInstanceUID: (ABSENT, 0.12)}
    for uid, (presence, probability) in expected.items():
        group = image_group(report, uid)
        evaluation = group.get_qualitative_evaluations(name=FRACTURE_CONCEPT)[0]
        measurement = group.get_measurements(name=FRACTURE_PROBABILITY)[0]
        assert evaluation.value == presence
        assert measurement.value == pytest.approx(probability)
        assert measurement.unit == codes.UCUM.NoUnits


def test_report_image_group_finding_site(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    group = image_group(report, wrist_study.fracture.SOPInstanceUID)
    site = group.finding_sites[0]
    assert site.value == codes.SCT.WristJoint
    assert site.laterality == codes.cid244.Right


def test_report_image_group_names_algorithm(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    group = image_group(report, wrist_study.fracture.SOPInstanceUID)
    texts = {item.name.value: item.value for item in group[0].ContentSequence if item.ValueType == "TEXT"}
    assert texts["111001"] == MODEL_NAME
    assert texts["111003"] == MODEL_VERSION


def test_report_box_regions_are_closed_polylines(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))
    boxes = wrist_study.finding.images[0].boxes

    groups = report.get_planar_roi_measurement_groups(referenced_sop_instance_uid=wrist_study.fracture.SOPInstanceUID)

    assert len(groups) == len(boxes)
    for group, box in zip(groups, boxes):
        region = group.roi
        assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        assert region.value.shape == (5, 2)
        assert np.array_equal(region.value[0], region.value[-1])
        assert np.allclose(region.value[2], [box.x1, box.y1])
        assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == wrist_study.fracture.SOPInstanceUID


def test_report_box_groups_name_finding(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    groups = report.get_planar_roi_measurement_groups(finding_type=FRACTURE_CONCEPT)

    certainties = [group.get_measurements(name=codes.DCM.CertaintyOfFinding)[0].value for group in groups]
    assert certainties == pytest.approx([87.0, 64.0])


def test_report_study_group_takes_maximum(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    groups = [group for group in report.get_image_measurement_groups() if group.tracking_identifier == STUDY_TRACKING_IDENTIFIER]

    assert len(groups) == 1
    measurement = groups[0].get_measurements(name=FRACTURE_PROBABILITY)[0]
    assert measurement.value == pytest.approx(0.91)
    assert measurement.derivation == codes.cid7464.Maximum
    assert groups[0].get_qualitative_evaluations(name=FRACTURE_CONCEPT)[0].value == PRESENT
    assert len(groups[0].source_images) == 2


def evaluations(report: hd.sr.MeasurementReport) -> list:
    """Items of the report's Qualitative Evaluations container."""
    containers = [item for item in report[0].ContentSequence if item.name == QUALITATIVE_EVALUATIONS]
    assert len(containers) == 1
    return list(containers[0].ContentSequence)


def test_report_names_skipped_images(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))
    skipped = wrist_study.finding.skipped[0]

    items = [item for item in evaluations(report) if item.name == IMAGE_NOT_ANALYSED]

    assert len(items) == 1
    assert skipped.sop_instance_uid in items[0].value
    assert skipped.reason in items[0].value


def test_report_without_skipped_images_has_only_conclusion(wrist_study: WristStudy, tmp_path: Path) -> None:
    study = dataclasses.replace(wrist_study, finding=dataclasses.replace(wrist_study.finding, skipped=()))

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    assert [item.name for item in evaluations(report)] == [codes.DCM.Conclusion]


def test_report_conclusion_states_result(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    conclusion = evaluations(report)[0]

    assert conclusion.name == codes.DCM.Conclusion
    assert conclusion.value.startswith("AI: fracture suspected, p=0.91 on the right wrist AP image (1 of 2 images read are positive).")
    assert "1 image not analysed." in conclusion.value
    assert conclusion.value.endswith("AI assistance, not for diagnosis alone.")


def test_report_logs_no_patient_name(korean_study: WristStudy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(korean_study)

    assert KOREAN_NAME not in caplog.text
    assert all(KOREAN_NAME not in str(warning.message) for warning in caught)


def test_report_rejects_study_without_read_images(wrist_study: WristStudy) -> None:
    study = dataclasses.replace(wrist_study, finding=dataclasses.replace(wrist_study.finding, images=()))

    with pytest.raises(ValueError, match="has no image that was read"):
        build(study)


def test_report_rejects_missing_source(wrist_study: WristStudy) -> None:
    with pytest.raises(ValueError, match=f"no source dataset was given for the images read with SOP Instance UIDs {wrist_study.normal.SOPInstanceUID}"):
        build_structured_report(
            [wrist_study.fracture],
            wrist_study.finding,
            series_instance_uid=new_uid(),
            model_identity=MODEL_IDENTITY,
            algorithm_name=MODEL_NAME,
            algorithm_version=MODEL_VERSION,
        )


def test_report_rejects_source_of_other_study(wrist_study: WristStudy) -> None:
    study = dataclasses.replace(wrist_study, normal=wrist_study.normal.copy())
    study.normal.StudyInstanceUID = new_uid()

    with pytest.raises(ValueError, match=r"has Study Instance UID \(0020,000D\)"):
        build(study)


def test_report_rejects_unknown_box_label(wrist_study: WristStudy) -> None:
    image = wrist_study.finding.images[0]
    odd = dataclasses.replace(image, boxes=(Box("metal", 0.5, 1, 1, 5, 5),))
    study = dataclasses.replace(wrist_study, finding=dataclasses.replace(wrist_study.finding, images=(odd, wrist_study.finding.images[1])))

    with pytest.raises(ValueError, match="no finding code for box label 'metal'"):
        build(study)


def elbow_lateral(study: WristStudy, boxes: tuple[Box, ...]) -> WristStudy:
    """The study with its fracture image turned into an elbow lateral view with ``boxes``."""
    image = dataclasses.replace(study.finding.images[0], body_part="elbow", view="LAT", boxes=boxes)
    images = (image, *study.finding.images[1:])
    return dataclasses.replace(study, finding=dataclasses.replace(study.finding, images=images))


def test_report_uses_standard_codes() -> None:
    assert (FRACTURE_CONCEPT.value, FRACTURE_CONCEPT.scheme_designator) == ("72704001", "SCT")
    assert (EFFUSION_CONCEPT.value, EFFUSION_CONCEPT.scheme_designator) == ("41699000", "SCT")
    assert [(site.value, site.scheme_designator) for site in FINDING_SITES.values()] == [("74670003", "SCT"), ("16953009", "SCT")]
    assert {bone: site.value for bone, site in BONE_SITES.items()} == {"radius": "62413002", "ulna": "23416004", "humerus": "85050009"}
    assert (PRESENT.value, ABSENT.value) == ("52101004", "272519000")


def test_report_names_model_package_as_equipment(wrist_study: WristStudy, tmp_path: Path) -> None:
    dataset = build_and_write(wrist_study, tmp_path / "sr.dcm")

    ours = [item for item in dataset.ContributingEquipmentSequence if item.Manufacturer == MANUFACTURER]

    assert len(ours) == 1
    equipment = ours[0]
    assert equipment.ManufacturerModelName == MODEL_IDENTITY
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert MODEL_IDENTITY in equipment.ContributionDescription


def test_report_lists_predecessor(wrist_study: WristStudy, tmp_path: Path) -> None:
    earlier = ReportReference(wrist_study.finding.study_instance_uid, new_uid(), new_uid(), Comprehensive3DSRStorage)

    dataset = write_and_read(build(wrist_study, predecessor=earlier), tmp_path / "sr.dcm")

    series = dataset.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert dataset.PredecessorDocumentsSequence[0].StudyInstanceUID == earlier.study_instance_uid
    assert series.SeriesInstanceUID == earlier.series_instance_uid
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == earlier.sop_instance_uid
    assert dciodvfy(tmp_path / "sr.dcm")[0] == []


def test_report_first_reading_has_no_predecessor(wrist_study: WristStudy, tmp_path: Path) -> None:
    dataset = build_and_write(wrist_study, tmp_path / "sr.dcm")

    assert "PredecessorDocumentsSequence" not in dataset


def test_report_rejects_predecessor_of_other_study(wrist_study: WristStudy) -> None:
    other = ReportReference(new_uid(), new_uid(), new_uid(), Comprehensive3DSRStorage)

    with pytest.raises(ValueError, match=f"predecessor report {other.sop_instance_uid} belongs to study {other.study_instance_uid}"):
        build(wrist_study, predecessor=other)


def test_report_codes_elbow_effusion_present(wrist_study: WristStudy, tmp_path: Path) -> None:
    study = elbow_lateral(wrist_study, (Box(FAT_PAD, 0.8, 30, 40, 90, 120, tier=HIGH_SPECIFICITY),))

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    group = image_group(report, wrist_study.fracture.SOPInstanceUID)
    assert group.get_qualitative_evaluations(name=EFFUSION_CONCEPT)[0].value == PRESENT
    assert group.finding_sites[0].value == codes.SCT.ElbowJoint
    assert "Elbow joint effusion (fat-pad sign) suspected." in evaluations(report)[0].value


def test_report_codes_elbow_effusion_absent_below_specific_tier(wrist_study: WristStudy, tmp_path: Path) -> None:
    study = elbow_lateral(wrist_study, (Box(FAT_PAD, 0.2, 30, 40, 90, 120, tier=HIGH_SENSITIVITY),))

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    group = image_group(report, wrist_study.fracture.SOPInstanceUID)
    assert group.get_qualitative_evaluations(name=EFFUSION_CONCEPT)[0].value == ABSENT


def test_report_omits_effusion_without_detector(wrist_study: WristStudy, tmp_path: Path) -> None:
    study = elbow_lateral(wrist_study, ())
    classifier_only = tuple(member for member in study.finding.images[0].members if member.kind == "classifier")
    image = dataclasses.replace(study.finding.images[0], members=classifier_only)
    study = dataclasses.replace(study, finding=dataclasses.replace(study.finding, images=(image, *study.finding.images[1:])))

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    assert image_group(report, wrist_study.fracture.SOPInstanceUID).get_qualitative_evaluations(name=EFFUSION_CONCEPT) == []


def test_report_omits_effusion_for_wrist(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    assert image_group(report, wrist_study.fracture.SOPInstanceUID).get_qualitative_evaluations(name=EFFUSION_CONCEPT) == []


def test_report_box_names_bone_site(wrist_study: WristStudy, tmp_path: Path) -> None:
    image = wrist_study.finding.images[0]
    radius_box = dataclasses.replace(image.boxes[0], bone="radius")
    images = (dataclasses.replace(image, boxes=(radius_box,)), *wrist_study.finding.images[1:])
    study = dataclasses.replace(wrist_study, finding=dataclasses.replace(wrist_study.finding, images=images))

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    group = report.get_planar_roi_measurement_groups(referenced_sop_instance_uid=wrist_study.fracture.SOPInstanceUID)[0]
    assert [site.value for site in group.finding_sites] == [codes.SCT.WristJoint, codes.SCT.RadiusBone]
    assert group.finding_sites[1].laterality == codes.cid244.Right


def test_report_box_names_operating_point(wrist_study: WristStudy, tmp_path: Path) -> None:
    image = wrist_study.finding.images[0]
    boxes = (image.boxes[0], dataclasses.replace(image.boxes[1], tier=HIGH_SENSITIVITY))
    images = (dataclasses.replace(image, boxes=boxes), *wrist_study.finding.images[1:])
    study = dataclasses.replace(wrist_study, finding=dataclasses.replace(wrist_study.finding, images=images))

    report = read_report(build_and_write(study, tmp_path / "sr.dcm"))

    groups = report.get_planar_roi_measurement_groups(referenced_sop_instance_uid=wrist_study.fracture.SOPInstanceUID)
    parameters = [algorithm_parameters(group) for group in groups]
    assert "operating point high specificity (drawn solid)" in parameters[0]
    assert "operating point high sensitivity (drawn dotted)" in parameters[1]
    assert groups[1].tracking_identifier == "image 1 box 2 fracture high sensitivity"


def test_report_study_group_states_rule(wrist_study: WristStudy, tmp_path: Path) -> None:
    report = read_report(build_and_write(wrist_study, tmp_path / "sr.dcm"))

    group = next(group for group in report.get_image_measurement_groups() if group.tracking_identifier == STUDY_TRACKING_IDENTIFIER)

    assert "patient positive if any image is positive" in algorithm_parameters(group)


def test_report_renders_in_dsr2html(korean_study: WristStudy, tmp_path: Path) -> None:
    build_and_write(korean_study, tmp_path / "sr.dcm")

    # +U8 converts ISO 2022 IR 149 text to UTF-8; dcmtk 3.6.7 renders that character set only so.
    result = subprocess.run([require_tool("dsr2html"), "+U8", str(tmp_path / "sr.dcm")], capture_output=True, check=False)
    page = result.stdout.decode("utf-8")

    assert result.returncode == 0, result.stderr
    assert KOREAN_NAME in page
    assert "Imaging Measurement Report" in page
    assert "XR Wrist Views" in page
    assert "AI: fracture suspected, p=0.91 on the right wrist AP image" in page
    assert "Present" in page
    assert "Absent" in page


def algorithm_parameters(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> list[str]:
    """Values of the Algorithm Parameters (111002, DCM) items of a measurement group."""
    return [item.value for item in group[0].ContentSequence if item.ValueType == "TEXT" and item.name.value == "111002"]
