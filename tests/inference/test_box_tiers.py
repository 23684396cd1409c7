"""Two box operating points: the manifest's optional high-specificity threshold and the tier of each box."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inference.findings import FRACTURE, HIGH_SENSITIVITY, HIGH_SPECIFICITY, Box
from inference.members import Detector
from inference.package import Member, PackageError, read_manifest
from tests.packages import untrained_package


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_package(tmp_path_factory.mktemp("package"))


def detector_member(package: Path) -> Member:
    return next(member for member in read_manifest(package).members if member.kind == "detector")


def manifest_with(package: Path, folder: Path, **detector_fields: object) -> Path:
    """Copy the package manifest into ``folder`` with ``detector_fields`` set on the detector member."""
    manifest = json.loads((package / "manifest.json").read_text())
    for member in manifest["members"]:
        if member["kind"] == "detector":
            member.update(detector_fields)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_manifest_without_second_threshold_keeps_one_tier(package: Path) -> None:
    assert detector_member(package).box_threshold_high_specificity is None


def test_manifest_reads_high_specificity_threshold(package: Path, tmp_path: Path) -> None:
    folder = manifest_with(package, tmp_path / "two-tiers", box_threshold=0.1, box_threshold_high_specificity=0.4)

    member = detector_member(folder)

    assert (member.box_threshold, member.box_threshold_high_specificity) == (0.1, 0.4)


def test_manifest_rejects_second_threshold_below_first(package: Path, tmp_path: Path) -> None:
    folder = manifest_with(package, tmp_path / "inverted", box_threshold=0.3, box_threshold_high_specificity=0.2)

    with pytest.raises(PackageError, match="box_threshold_high_specificity 0.2 is below box_threshold 0.3"):
        read_manifest(folder)


def test_manifest_rejects_second_threshold_on_classifier(package: Path, tmp_path: Path) -> None:
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["members"][0]["box_threshold_high_specificity"] = 0.5
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(PackageError, match="only a detector takes box_threshold_high_specificity"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("high_specificity", "confidence", "expected"),
    [
        (None, 0.02, HIGH_SPECIFICITY),
        (0.5, 0.49, HIGH_SENSITIVITY),
        (0.5, 0.5, HIGH_SPECIFICITY),
        (0.5, 0.9, HIGH_SPECIFICITY),
    ],
)
def test_detector_tiers_box_by_confidence(package: Path, high_specificity: float | None, confidence: float,
                                          expected: str) -> None:
    member = detector_member(package).model_copy(update={"box_threshold_high_specificity": high_specificity})
    detector = Detector(member, package / member.weights_file, torch.device("cpu"))

    assert detector.tier(confidence) == expected


def test_box_defaults_to_high_specificity_without_bone() -> None:
    box = Box(FRACTURE, 0.8, 1, 2, 3, 4)

    assert (box.tier, box.bone) == (HIGH_SPECIFICITY, None)


def test_box_rejects_unknown_tier() -> None:
    with pytest.raises(ValueError, match="box tier 'medium' is invalid"):
        Box(FRACTURE, 0.8, 1, 2, 3, 4, tier="medium")


def test_box_rejects_unknown_bone() -> None:
    with pytest.raises(ValueError, match="box bone 'femur' is invalid"):
        Box(FRACTURE, 0.8, 1, 2, 3, 4, bone="femur")
