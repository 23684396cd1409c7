from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from inference.anatomy import is_radiograph, resolve_anatomy

CASES = [
    # (attributes, body part, view, laterality)
    ({"BodyPartExamined": "WRIST", "ViewPosition": "AP", "ImageLaterality": "R"}, "wrist", "AP", "R"),
    ({"BodyPartExamined": "ELBOW", "ViewPosition": "LL"}, "elbow", "LAT", None),
    ({"SeriesDescription": "WRIST LAT", "Laterality": "L"}, "wrist", "LAT", "L"),
    ({"SeriesDescription": "ELBOW LAT Rt."}, "elbow", "LAT", "R"),
    ({"StudyDescription": "손목 정면 좌측"}, "wrist", "AP", "L"),
    ({"ProtocolName": "주관절 측면"}, "elbow", "LAT", None),
    ({"SeriesDescription": "팔꿈치측면 우"}, "elbow", "LAT", "R"),
    ({"BodyPartExamined": "CHEST", "ViewPosition": "PA"}, None, "AP", None),
    ({"SeriesDescription": "Wrist Lateral LT"}, "wrist", "LAT", "L"),
    ({"BodyPartExamined": "ELBOW", "SeriesDescription": "ELBOW OBLIQUE"}, "elbow", "OTHER", None),
]


@pytest.mark.parametrize(("attributes", "body_part", "view", "laterality"), CASES)
def test_anatomy_from_tags(attributes: dict, body_part: str | None, view: str | None, laterality: str | None) -> None:
    dataset = Dataset()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)

    anatomy = resolve_anatomy(dataset)

    assert anatomy.body_part == body_part
    assert anatomy.view == view
    assert anatomy.laterality == laterality


def test_ct_is_not_radiograph() -> None:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    dataset.Modality = "CT"

    assert is_radiograph(dataset) is False
