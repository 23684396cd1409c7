"""Every kind of object pedfrac sends passes dciodvfy with no errors; each warning left is listed here with its reason."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from inference.findings import HIGH_SENSITIVITY
from reporting.identifiers import new_uid
from reporting.key_objects import build_key_object_selection
from reporting.overlay import DEFAULT_FONT_PATH, render_overlay
from reporting.presentation_state import build_presentation_state
from reporting.secondary_capture import build_secondary_capture
from reporting.structured_report import PRIVATE_SCHEME, build_structured_report
from tests.reporting.conftest import (
    KOREAN_CHARSET,
    KOREAN_NAME,
    MODEL_IDENTITY,
    MODEL_NAME,
    MODEL_VERSION,
    UTF8_CHARSET,
    WristStudy,
    build_wrist_study,
    dciodvfy,
)

pytestmark = pytest.mark.skipif(not DEFAULT_FONT_PATH.is_file(), reason=f"{DEFAULT_FONT_PATH} missing; install fonts-nanum")

PRIVATE_SCHEME_WARNING = (
    f"Warning - Unrecognized defined term <{PRIVATE_SCHEME}> for value 1 of attribute <Coding Scheme Designator>"
)
SINGLE_COMPONENT_NAME_WARNING = (
    "Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <value> - Retired Person Name form"
)
UNKNOWN_LATERALITY_WARNING = (
    "Warning - is only permitted to be empty when actually unknown; should be absent (not empty) "
    "if an unpaired body part, and have a value if a paired body part - attribute <Laterality>"
)

# The only dciodvfy warnings allowed, each with the reason it is correct to leave it.
JUSTIFIED_WARNINGS = {
    PRIVATE_SCHEME_WARNING: (
        "dciodvfy knows only the coding schemes DICOM lists. The SR uses the private scheme 99PEDFRAC for "
        "the fracture probability, the elevated fat pad and 'image not analysed', for which no standard "
        "code exists, and declares it in the Coding Scheme Identification Sequence (0008,0110) as PS3.3 "
        "Section 8 asks."
    ),
    SINGLE_COMPONENT_NAME_WARNING: (
        "The patient name 김희중 has no '^'. PS3.5 6.2.1 allows a single-component name; it is copied "
        "unchanged from the source, which gets the same warning."
    ),
    UNKNOWN_LATERALITY_WARNING: (
        "Laterality (0020,0060) is Type 2C and must be present for a wrist or elbow; when the source "
        "states no side the derived series leaves it empty rather than guess."
    ),
}


def build_all(study: WristStudy) -> dict[str, Dataset]:
    """Build one object of each kind for ``study``, with both box tiers on the fracture image."""
    fracture_image = study.finding.images[0]
    boxes = (fracture_image.boxes[0], dataclasses.replace(fracture_image.boxes[1], tier=HIGH_SENSITIVITY),
             *fracture_image.boxes[2:])
    image = dataclasses.replace(fracture_image, boxes=boxes)
    finding = dataclasses.replace(study.finding, images=(image, *study.finding.images[1:]))
    sources = [study.fracture, study.normal]

    overlay = render_overlay(image, language="ko", model_identity=MODEL_IDENTITY, patient=f"환자 {KOREAN_NAME}")
    state = build_presentation_state(study.fracture, image, series_instance_uid=new_uid(), instance_number=1,
                                     language="ko", model_identity=MODEL_IDENTITY)
    return {
        "overlay": build_secondary_capture(study.fracture, overlay, image, series_instance_uid=new_uid(), instance_number=1,
                                           model_identity=MODEL_IDENTITY),
        "presentation": state,
        "report": build_structured_report(sources, finding, series_instance_uid=new_uid(), model_identity=MODEL_IDENTITY,
                                          algorithm_name=MODEL_NAME, algorithm_version=MODEL_VERSION),
        "key_objects": build_key_object_selection(sources, finding, series_instance_uid=new_uid(), language="ko",
                                                  model_identity=MODEL_IDENTITY,
                                                  presentation_states={str(study.fracture.SOPInstanceUID): state}),
    }


def latin_study(tmp_path: Path) -> WristStudy:
    return build_wrist_study(tmp_path, patient_name="Test^Wrist", charset=UTF8_CHARSET)


def korean_study(tmp_path: Path) -> WristStudy:
    return build_wrist_study(tmp_path, patient_name=KOREAN_NAME, charset=KOREAN_CHARSET)


def study_without_side(tmp_path: Path) -> WristStudy:
    study = latin_study(tmp_path)
    for source in (study.fracture, study.normal):
        del source.Laterality
        del source.ImageLaterality
    return study


EXPECTED_WARNINGS: dict[tuple[str, str], set[str]] = {
    ("latin", "overlay"): set(),
    ("latin", "presentation"): set(),
    ("latin", "report"): {PRIVATE_SCHEME_WARNING},
    ("latin", "key_objects"): set(),
    ("korean", "overlay"): {SINGLE_COMPONENT_NAME_WARNING},
    ("korean", "presentation"): {SINGLE_COMPONENT_NAME_WARNING},
    ("korean", "report"): {PRIVATE_SCHEME_WARNING, SINGLE_COMPONENT_NAME_WARNING},
    ("korean", "key_objects"): {SINGLE_COMPONENT_NAME_WARNING},
    ("no side", "overlay"): {UNKNOWN_LATERALITY_WARNING},
    ("no side", "presentation"): {UNKNOWN_LATERALITY_WARNING},
    ("no side", "report"): {PRIVATE_SCHEME_WARNING},
    ("no side", "key_objects"): set(),
}
STUDIES: dict[str, Callable[[Path], WristStudy]] = {"latin": latin_study, "korean": korean_study, "no side": study_without_side}


def test_expected_warnings_are_justified() -> None:
    for warnings_found in EXPECTED_WARNINGS.values():
        assert warnings_found <= JUSTIFIED_WARNINGS.keys()


@pytest.mark.parametrize("study_name", list(STUDIES))
def test_every_object_passes_dciodvfy(study_name: str, tmp_path: Path) -> None:
    objects = build_all(STUDIES[study_name](tmp_path))

    for kind, dataset in objects.items():
        path = tmp_path / f"{kind}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        errors, warnings_found = dciodvfy(path)

        assert errors == [], kind
        assert warnings_found == EXPECTED_WARNINGS[(study_name, kind)], kind
