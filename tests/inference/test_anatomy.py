"""Body part, view and laterality from the attributes hospitals fill, in Korean and English."""
from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset

from inference.anatomy import find_words, BODY_PART_WORDS, is_radiograph, resolve_anatomy
from tests.factories import shared_file

# (attributes, body part, view, laterality). The strings are written as PACS and modalities in
# Korean and international hospitals send them.
CASES = [
    ({"BodyPartExamined": "WRIST", "ViewPosition": "AP", "ImageLaterality": "R"}, "wrist", "AP", "R"),
    ({"BodyPartExamined": "ELBOW", "ViewPosition": "LL"}, "elbow", "LAT", None),
    ({"BodyPartExamined": "ELBOW", "ViewPosition": "PA", "Laterality": "L"}, "elbow", "AP", "L"),
    ({"SeriesDescription": "WRIST AP"}, "wrist", "AP", None),
    ({"SeriesDescription": "ELBOW LAT"}, "elbow", "LAT", None),
    ({"SeriesDescription": "WRIST LAT", "Laterality": "L"}, "wrist", "LAT", "L"),
    ({"SeriesDescription": "ELBOW LAT Rt."}, "elbow", "LAT", "R"),
    ({"SeriesDescription": "Wrist Lateral LT"}, "wrist", "LAT", "L"),
    ({"SeriesDescription": "Elbow Lateral"}, "elbow", "LAT", None),
    ({"SeriesDescription": "Rt. Wrist PA"}, "wrist", "AP", "R"),
    ({"SeriesDescription": "L-WRIST AP"}, "wrist", "AP", "L"),
    ({"ProtocolName": "ELBOW_AP_RT"}, "elbow", "AP", "R"),
    ({"ProtocolName": "Wrist 2 view", "SeriesDescription": "LAT"}, "wrist", "LAT", None),
    ({"AcquisitionDeviceProcessingDescription": "ELBOW,LAT"}, "elbow", "LAT", None),
    ({"StudyDescription": "손목 정면 좌측"}, "wrist", "AP", "L"),
    ({"StudyDescription": "손목"}, "wrist", None, None),
    ({"SeriesDescription": "손목정면"}, "wrist", "AP", None),
    ({"SeriesDescription": "손목 측면 Rt"}, "wrist", "LAT", "R"),
    ({"ProtocolName": "주관절 측면"}, "elbow", "LAT", None),
    ({"SeriesDescription": "주관절 AP 우측"}, "elbow", "AP", "R"),
    ({"SeriesDescription": "팔꿈치측면 우"}, "elbow", "LAT", "R"),
    ({"SeriesDescription": "팔꿈치 정면 좌"}, "elbow", "AP", "L"),
    ({"StudyDescription": "완관절 2방향"}, "wrist", None, None),
    ({"SeriesDescription": "ELBOW OBLIQUE"}, "elbow", "OTHER", None),
    ({"SeriesDescription": "주관절 사위"}, "elbow", "OTHER", None),
    ({"BodyPartExamined": "WRIST", "ViewPosition": "RLO"}, "wrist", "OTHER", None),
    ({"BodyPartExamined": "CHEST", "ViewPosition": "PA"}, "other", "AP", None),
    ({"SeriesDescription": "Cervical LAT", "BodyPartExamined": "CSPINE"}, "other", "LAT", None),
    ({"SeriesDescription": "흉부 정면"}, "other", "AP", None),
    ({"SeriesDescription": "HAND PA"}, "other", "AP", None),
    ({"StudyDescription": "XR WRIST AP AND LATERAL"}, "wrist", None, None),
    ({"BodyPartExamined": "EXTREMITY", "SeriesDescription": "UPPER EXT"}, None, None, None),
    ({"PatientOrientation": ["A", "F"], "BodyPartExamined": "ELBOW"}, "elbow", "LAT", None),
    ({"PatientOrientation": ["L", "F"], "BodyPartExamined": "ELBOW"}, "elbow", "AP", None),
    ({"PatientOrientation": ["AL", "F"], "BodyPartExamined": "ELBOW"}, "elbow", None, None),
    ({"BodyPartExamined": "WRIST", "ImageLaterality": "B"}, "wrist", None, "B"),
]


def dataset_with(attributes: dict) -> Dataset:
    dataset = Dataset()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


@pytest.mark.parametrize(("attributes", "body_part", "view", "laterality"), CASES)
def test_anatomy_from_tags(attributes: dict, body_part: str | None, view: str | None, laterality: str | None) -> None:
    anatomy = resolve_anatomy(dataset_with(attributes))

    assert anatomy.body_part == body_part
    assert anatomy.view == view
    assert anatomy.laterality == laterality


def test_source_names_deciding_attribute() -> None:
    anatomy = resolve_anatomy(dataset_with({"SeriesDescription": "ELBOW LAT Rt.", "StudyDescription": "팔꿈치"}))

    assert anatomy.body_part_source == "SeriesDescription"
    assert anatomy.view_source == "SeriesDescription"
    assert anatomy.laterality_source == "SeriesDescription"


def test_view_word_kept() -> None:
    anatomy = resolve_anatomy(dataset_with({"BodyPartExamined": "WRIST", "ViewPosition": "PA"}))

    assert (anatomy.view, anatomy.view_word) == ("AP", "PA")


def test_contradicting_view_recorded() -> None:
    anatomy = resolve_anatomy(dataset_with({"BodyPartExamined": "ELBOW", "ViewPosition": "AP",
                                            "SeriesDescription": "ELBOW LATERAL"}))

    assert anatomy.view == "AP"
    assert anatomy.view_conflicts == (
        "SeriesDescription (0008,103E) says LAT ('LATERAL'), but ViewPosition (0018,5101) says AP ('AP')",
    )


def test_contradicting_body_part_recorded() -> None:
    anatomy = resolve_anatomy(dataset_with({"BodyPartExamined": "WRIST", "SeriesDescription": "주관절 측면"}))

    assert anatomy.body_part == "wrist"
    assert len(anatomy.body_part_conflicts) == 1
    assert "주관절" in anatomy.body_part_conflicts[0]


def test_contradicting_laterality_recorded() -> None:
    anatomy = resolve_anatomy(dataset_with({"ImageLaterality": "R", "SeriesDescription": "WRIST AP LT"}))

    assert anatomy.laterality == "R"
    assert anatomy.laterality_conflicts[0].startswith("SeriesDescription (0008,103E) says L")


def test_orientation_ignored_when_view_named() -> None:
    anatomy = resolve_anatomy(dataset_with({"ViewPosition": "LL", "PatientOrientation": ["L", "F"]}))

    assert anatomy.view == "LAT"
    assert anatomy.view_conflicts == ()


def test_korean_longest_word_wins() -> None:
    assert find_words("손목정면", BODY_PART_WORDS) == {"wrist": "손목"}


def test_korean_single_syllable_needs_own_word() -> None:
    assert find_words("손 PA", BODY_PART_WORDS) == {"other": "손"}


def test_cspine_oblique_contradiction_from_real_file() -> None:
    # pydicom's CR2: View Position AP, but Series Description "Cervical OBLI 1".
    dataset = pydicom.dcmread(shared_file("dicom/CR_cspine_MONO1_12bit_16x16_pydicom_CR2.dcm"))

    anatomy = resolve_anatomy(dataset)

    assert anatomy.body_part == "other"
    assert anatomy.view == "AP"
    assert "OBLI" in anatomy.view_conflicts[0]


def test_lower_leg_cr_is_other() -> None:
    # NEMA RG3: Body Part Examined EXTREMITY names no region, and the processing description names LOWER LEG.
    dataset = pydicom.dcmread(shared_file("dicom/CR_extremity_AP_MONO1_10bit_J2K_lossy_RG3_J2KI.dcm"))

    anatomy = resolve_anatomy(dataset)

    assert (anatomy.body_part, anatomy.body_part_source) == ("other", "AcquisitionDeviceProcessingDescription")
    assert (anatomy.view, anatomy.laterality) == ("AP", "R")


def test_ct_is_not_radiograph() -> None:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    dataset.Modality = "CT"

    assert is_radiograph(dataset) is False
