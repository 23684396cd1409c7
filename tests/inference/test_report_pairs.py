"""The Structured Report of a reading states the view pairs, a single-view reading and how each image was read."""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from inference.ensemble import Ensemble
from inference.findings import StudyFinding
from reporting.structured_report import QUALITATIVE_EVALUATIONS, VIEW_PAIR, build_structured_report
from tests.factories import new_study, phantom_dx
from tests.packages import untrained_package
from tests.peers import dciodvfy_errors

ALGORITHM_PARAMETERS = "111002"


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Ensemble:
    return Ensemble(untrained_package(tmp_path_factory.mktemp("package")), device="cpu", gradcam=False)


@pytest.fixture(scope="module")
def reading(ensemble: Ensemble) -> tuple[list[Dataset], StudyFinding]:
    """A left elbow AP and lateral and a right elbow AP alone: one complete pair, one single view."""
    study = new_study()
    datasets = [phantom_dx(study, body_part="elbow", view=view, laterality=side, fracture=False, seed=seed)
                for seed, (view, side) in enumerate([("AP", "L"), ("LAT", "L"), ("AP", "R")], start=50)]
    return datasets, ensemble.read_study(str(study.StudyInstanceUID), datasets)


def report_items(report: Dataset) -> list[Dataset]:
    container = next(item for item in report.ContentSequence
                     if item.ConceptNameCodeSequence[0].CodeValue == QUALITATIVE_EVALUATIONS.value)
    return list(container.ContentSequence)


def content_items(dataset: Dataset) -> list[Dataset]:
    """Every content item of an SR content tree, depth first."""
    items = []
    for item in dataset.get("ContentSequence", []):
        items.append(item)
        items.extend(content_items(item))
    return items


def texts(items: list[Dataset], code: str) -> list[str]:
    return [item.TextValue for item in items if item.ConceptNameCodeSequence[0].CodeValue == code]


def build(reading: tuple[list[Dataset], StudyFinding], path: Path) -> Dataset:
    datasets, finding = reading
    report = build_structured_report(datasets, finding, series_instance_uid=pydicom.uid.generate_uid(prefix=None),
                                     model_identity="pedfrac-untrained-test 0.0.0",
                                     algorithm_name="pedfrac-untrained-test", algorithm_version="0.0.0")
    report.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_report_lists_pairs(reading: tuple[list[Dataset], StudyFinding], tmp_path: Path) -> None:
    report = build(reading, tmp_path / "sr.dcm")

    assert texts(report_items(report), VIEW_PAIR.value) == [
        "right elbow: only one view read (AP); single-view reading",
        "left elbow: AP and lateral read",
    ]


def test_conclusion_says_single_view(reading: tuple[list[Dataset], StudyFinding], tmp_path: Path) -> None:
    report = build(reading, tmp_path / "sr.dcm")

    conclusion = report_items(report)[0].TextValue
    assert "Only one view was read for: right elbow." in conclusion


def test_parameters_name_sources_and_steps(reading: tuple[list[Dataset], StudyFinding], tmp_path: Path) -> None:
    report = build(reading, tmp_path / "sr.dcm")

    parameters = [item.TextValue for item in content_items(report) if item.ValueType == "TEXT"
                  and item.ConceptNameCodeSequence[0].CodeValue == ALGORITHM_PARAMETERS]
    assert "view AP from ViewPosition" in parameters
    assert "view LAT from SeriesDescription" in parameters
    assert "body part elbow from BodyPartExamined" in parameters
    assert any(value.startswith("step mirror to canonical side: laterality=L") for value in parameters)
    assert any(value.startswith("step VOI LUT: source=window") for value in parameters)


def test_report_valid(reading: tuple[list[Dataset], StudyFinding], tmp_path: Path) -> None:
    path = tmp_path / "sr.dcm"
    build(reading, path)

    errors, _warnings = dciodvfy_errors(path)

    assert errors == []
