"""The view classifier member: manifest rules, adding it to a package copy, a tiny training run, decisions."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from inference.package import VIEW_CLASSES, Manifest, PackageError, read_manifest, sha256_of, verify_package
from inference.phantoms import generate_dataset
from inference.training.view import (
    ViewTrainingConfig,
    add_view_member,
    create_view_model,
    save_view_classifier,
    synthetic_other_images,
    train_view_classifier,
)
from inference.view import decide_view
from tests.packages import untrained_package

ARCHITECTURE = "mobilenetv3_small_050"


@pytest.fixture(scope="module")
def base_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_package(tmp_path_factory.mktemp("base") / "package")


@pytest.fixture(scope="module")
def view_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_view_classifier(create_view_model(ARCHITECTURE, len(VIEW_CLASSES)),
                                tmp_path_factory.mktemp("view") / "view.pt")


@pytest.fixture
def package_copy(base_package: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_package, tmp_path / "package"))


def add(package: Path, weights: Path, **overrides: object) -> Manifest:
    options = {"classes": VIEW_CLASSES, "architecture": ARCHITECTURE, "input_size": 96, "min_confidence": 0.8}
    return add_view_member(package, weights, **{**options, **overrides})


def test_view_member_added(package_copy: Path, view_weights: Path) -> None:
    before = read_manifest(package_copy)

    manifest = add(package_copy, view_weights, metrics={"view_classifier_validation_accuracy": 0.5})

    member = manifest.view_classifier
    assert member.weights_file == "view-classifier.pt"
    assert member.sha256 == sha256_of(package_copy / "view-classifier.pt")
    assert manifest.members[:-1] == before.members
    assert manifest.operating_points == before.operating_points
    assert manifest.metrics["view_classifier_validation_accuracy"] == 0.5
    assert verify_package(package_copy) == manifest


def test_view_member_replaced(package_copy: Path, view_weights: Path) -> None:
    add(package_copy, view_weights)

    manifest = add(package_copy, view_weights, name="views-2")

    assert [member.name for member in manifest.members if member.kind == "view_classifier"] == ["views-2"]
    assert not (package_copy / "view-classifier.pt").exists()


def test_unknown_view_class_rejected(package_copy: Path, view_weights: Path) -> None:
    manifest_text = (package_copy / "manifest.json").read_text()

    with pytest.raises(ValidationError, match="expected two or more distinct classes"):
        add(package_copy, view_weights, classes=("wrist AP", "wrist AP"))
    assert (package_copy / "manifest.json").read_text() == manifest_text


def test_broken_package_rejected(package_copy: Path, view_weights: Path) -> None:
    (package_copy / "classifier.pt").write_bytes(b"damaged")

    with pytest.raises(PackageError, match=r"SHA-256 of classifier\.pt"):
        add(package_copy, view_weights)


def test_view_weights_small(view_weights: Path) -> None:
    assert view_weights.stat().st_size < 2_000_000


def test_old_manifest_still_valid(base_package: Path) -> None:
    data = json.loads((base_package / "manifest.json").read_text())
    data.pop("canonical_side", None)
    for member in data["members"]:
        member.pop("min_confidence", None)

    manifest = Manifest.model_validate(data)

    assert manifest.canonical_side == {"elbow": "R"}
    assert manifest.view_classifier is None


def test_view_member_needs_min_confidence(package_copy: Path, view_weights: Path) -> None:
    with pytest.raises(ValidationError, match="needs min_confidence"):
        add(package_copy, view_weights, min_confidence=None)


def test_min_confidence_only_for_view_member(base_package: Path) -> None:
    data = json.loads((base_package / "manifest.json").read_text())
    data["members"][0]["min_confidence"] = 0.5

    with pytest.raises(ValidationError, match="only a view_classifier takes min_confidence"):
        Manifest.model_validate(data)


def test_view_member_not_in_vote(package_copy: Path, view_weights: Path) -> None:
    manifest = add(package_copy, view_weights)

    assert [member.kind for member in manifest.members_for("elbow", "LAT")] == ["classifier", "detector"]


def test_left_elbow_flips_right_does_not(base_package: Path) -> None:
    manifest = read_manifest(base_package)

    assert manifest.flips("elbow", "L")
    assert not manifest.flips("elbow", "R")
    assert not manifest.flips("elbow", None)
    assert not manifest.flips("wrist", "L")


def test_tiny_training_run() -> None:
    # Four patients give all four classes; the run checks the loop and the result, not accuracy.
    train = generate_dataset(4, seed=3)
    validation = generate_dataset(2, seed=3, first_patient=4)
    config = ViewTrainingConfig(input_size=64, epochs=1, batch_size=4, train_patients=4, validation_patients=2)

    result = train_view_classifier(train, validation, config)

    assert result.classes == VIEW_CLASSES
    assert len(result.history) == 1
    assert 0.0 <= result.validation_accuracy <= 1.0


def view_member(base_package: Path, view_weights: Path, tmp_path: Path, minimum: float):  # noqa: ANN201 - Member
    package = Path(shutil.copytree(base_package, tmp_path / "decide"))
    return add(package, view_weights, min_confidence=minimum).view_classifier


def test_decision_keeps_known_body_part(base_package: Path, view_weights: Path, tmp_path: Path) -> None:
    member = view_member(base_package, view_weights, tmp_path, 0.7)
    probabilities = np.array([0.4, 0.1, 0.1, 0.3, 0.1])  # wrist AP, wrist LAT, elbow AP, elbow LAT, other

    decision = decide_view(probabilities, member, body_part="elbow")

    assert (decision.body_part, decision.view) == ("elbow", "LAT")
    assert decision.confidence == pytest.approx(0.75)


def test_decision_below_minimum_undecided(base_package: Path, view_weights: Path, tmp_path: Path) -> None:
    member = view_member(base_package, view_weights, tmp_path, 0.8)

    decision = decide_view(np.array([0.4, 0.3, 0.1, 0.1, 0.1]), member)

    assert not decision.decided
    assert decision.confidence == pytest.approx(0.4)


def test_decision_other_class(base_package: Path, view_weights: Path, tmp_path: Path) -> None:
    member = view_member(base_package, view_weights, tmp_path, 0.8)

    decision = decide_view(np.array([0.05, 0.0, 0.05, 0.0, 0.9]), member)

    assert (decision.body_part, decision.view, decision.decided) == ("other", None, True)


def test_other_excluded_when_body_part_known(base_package: Path, view_weights: Path, tmp_path: Path) -> None:
    member = view_member(base_package, view_weights, tmp_path, 0.5)

    decision = decide_view(np.array([0.05, 0.0, 0.05, 0.1, 0.8]), member, body_part="elbow")

    assert (decision.body_part, decision.view) == ("elbow", "LAT")


def test_synthetic_other_images_in_range() -> None:
    images = synthetic_other_images(8, np.random.default_rng(0))

    assert len(images) == 8
    assert all(image.ndim == 2 and 0.0 <= image.min() <= image.max() <= 1.0 for image in images)
