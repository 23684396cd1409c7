"""Training of the members on phantoms, and the model packages that carry them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.package import OperatingPoint, PackageError, verify_package
from inference.phantoms import generate_dataset
from inference.preprocess import Letterbox
from inference.training.classifier import (
    ClassifierConfig,
    box_masks,
    create_classifier,
    load_classifier,
    predict_probabilities,
    save_classifier,
    train_classifier,
)
from inference.training.demo import DemoConfig, build_demo_package, demo_commands
from inference.training.detector import DetectorConfig, fracture_probabilities, letterbox_label, train_detector
from inference.training.metrics import youden_threshold
from inference.training.packaging import PackageMember, write_package

# timm's test_resnet learns these phantoms in seconds at 128 px; convnext_atto stays near chance at this size.
TINY = ClassifierConfig(architecture="test_resnet", input_size=128, epochs=8, batch_size=8,
                        learning_rate=3e-3, patience=8, seed=0, device="cpu")


@pytest.fixture(scope="module")
def wrists() -> tuple[list, list]:
    train = generate_dataset(100, seed=21, body_parts=("wrist",))
    validation = generate_dataset(25, seed=21, body_parts=("wrist",), first_patient=100)
    return train, validation


@pytest.fixture(scope="module")
def tiny_result(wrists: tuple[list, list]):
    train, validation = wrists
    return train_classifier([p.image for p in train], [p.fracture for p in train],
                            [p.image for p in validation], [p.fracture for p in validation], TINY,
                            train_boxes=[p.boxes for p in train])


@pytest.mark.slow
def test_classifier_loss_falls(tiny_result) -> None:
    losses = [epoch.train_loss for epoch in tiny_result.history]

    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.slow
def test_classifier_beats_chance(tiny_result) -> None:
    assert tiny_result.best_auroc > 0.7, [round(epoch.validation_auroc, 3) for epoch in tiny_result.history]


@pytest.mark.slow
def test_classifier_half_weights_reload(tiny_result, wrists: tuple[list, list], tmp_path: Path) -> None:
    images = [p.image for p in wrists[1][:6]]
    path = save_classifier(tiny_result.model, tmp_path / "tiny.pt")

    state = torch.load(path, weights_only=True)
    reloaded = load_classifier(path, "test_resnet", 128)

    assert {tensor.dtype for tensor in state.values() if tensor.is_floating_point()} == {torch.float16}
    before = predict_probabilities(tiny_result.model, images, input_size=128, device="cpu")
    after = predict_probabilities(reloaded, images, input_size=128, device="cpu")
    assert np.allclose(before, after, atol=0.02)


def test_classifier_needs_both_classes() -> None:
    images = [np.zeros((64, 64), np.float32)] * 2

    with pytest.raises(ValueError, match=r"training labels need fractures and normals, found only \[False\]"):
        train_classifier(images, [False, False], images, [False, True], TINY)


def test_classifier_seed_reproducible() -> None:
    phantoms = generate_dataset(6, seed=23, body_parts=("wrist",), fracture_rate=0.5)
    config = ClassifierConfig(architecture="test_resnet", input_size=64, epochs=1, batch_size=4, seed=3, device="cpu")
    images, labels = [p.image for p in phantoms], [p.fracture for p in phantoms]

    runs = [train_classifier(images, labels, images, labels, config) for _ in range(2)]

    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_box_masks_in_letterbox() -> None:
    image = np.zeros((100, 50), np.float32)
    boxes = [("fracture", 10.0, 20.0, 20.0, 40.0), ("text", 0.0, 0.0, 50.0, 10.0)]

    mask = box_masks([image], [boxes], 50)[0]

    # Scale 0.5 and 12 columns of padding on each side move the box to columns 17-22, rows 10-19.
    assert mask.sum() == 5 * 10
    assert mask[10:20, 17:22].all()


def test_letterbox_label_in_yolo_format() -> None:
    geometry = Letterbox(scale=0.5, pad_x=10, pad_y=0, size=100)

    line = letterbox_label(("fat_pad", 20.0, 40.0, 60.0, 120.0), geometry, ("fracture", "fat_pad"))

    assert line == "1 0.300000 0.400000 0.200000 0.400000"


def test_letterbox_label_unknown_class() -> None:
    geometry = Letterbox(scale=1.0, pad_x=0, pad_y=0, size=100)

    with pytest.raises(ValueError, match=r"box label 'text' is not one of the detector classes"):
        letterbox_label(("text", 0.0, 0.0, 10.0, 10.0), geometry, ("fracture", "fat_pad"))


@pytest.mark.slow
def test_detector_trains_one_epoch(tmp_path: Path) -> None:
    phantoms = generate_dataset(3, seed=22, fracture_rate=1.0)
    config = DetectorConfig(input_size=64, epochs=1, batch_size=2, device="cpu")

    result = train_detector(phantoms[:4], phantoms[4:], tmp_path / "out" / "detector.pt", config,
                            work_dir=tmp_path / "run")

    assert result.weights == tmp_path / "out" / "detector.pt"
    assert result.weights.stat().st_size > 100_000
    scores = fracture_probabilities(result.weights, [p.image for p in phantoms[4:]], input_size=64, box_threshold=0.001)
    assert scores.shape == (2,)
    assert np.all((scores >= 0) & (scores <= 1))


def test_youden_threshold_separates() -> None:
    threshold = youden_threshold([False, False, True, True], np.array([0.1, 0.3, 0.6, 0.9]))

    assert threshold == pytest.approx(0.6)


def _tiny_package(folder: Path, tmp_path: Path) -> Path:
    weights = save_classifier(create_classifier("test_resnet", 128), tmp_path / "weights.pt")
    member = PackageMember(weights, {
        "name": "wrist-tiny", "kind": "classifier", "framework": "timm", "architecture": "test_resnet",
        "body_parts": ["wrist"], "views": ["AP", "LAT"], "input_size": 64, "classes": ["fracture"], "weight": 1.0,
    })
    points = [OperatingPoint(body_part="wrist", view=view, threshold=0.5) for view in ("AP", "LAT")]
    write_package(folder, [member], points, name="tiny", version="0.0.1", intended_use="tests only",
                  training_data="none", metrics={"test_auroc": 0.5})
    return folder


def test_package_verifies(tmp_path: Path) -> None:
    package = _tiny_package(tmp_path / "package", tmp_path)

    manifest = verify_package(package)

    assert manifest.identity == "tiny 0.0.1"
    assert [member.weights_file for member in manifest.members] == ["wrist-tiny.pt"]
    assert json.loads((package / "manifest.json").read_text())["format_version"] == 1
    assert package.stat().st_mode & 0o777 == 0o755


def test_package_tamper_detected(tmp_path: Path) -> None:
    package = _tiny_package(tmp_path / "package", tmp_path)
    weights = package / "wrist-tiny.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))

    with pytest.raises(PackageError, match=r"SHA-256 of wrist-tiny\.pt is [0-9a-f]{64}, the manifest expects"):
        verify_package(package)


def test_package_replaces_old(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "stale.bin").write_bytes(b"old")

    _tiny_package(package, tmp_path)

    assert not (package / "stale.bin").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["package", "weights.pt"]


@pytest.mark.slow
def test_demo_build_tiny(tmp_path: Path) -> None:
    config = DemoConfig(wrist_patients=16, elbow_patients=16, wrist_input=64, elbow_input=64, detector_input=64,
                        classifier_epochs=1, detector_epochs=1, device="cpu")

    manifest = build_demo_package(tmp_path / "demo", seed=5, config=config, work_dir=tmp_path / "work",
                                  report_dir=tmp_path / "report")

    assert [member.name for member in manifest.members] == ["wrist-resnet10t", "elbow-resnet10t", "detector-yolov8n"]
    assert {(point.body_part, point.view) for point in manifest.operating_points} == {
        (part, view) for part in ("wrist", "elbow") for view in ("AP", "LAT")}
    assert "not for clinical use" in manifest.intended_use.lower()
    assert "seed 5" in manifest.training_data
    assert "test 14 images" in manifest.training_data
    assert 0.0 <= manifest.metrics["test_auroc_all_images"] <= 1.0
    assert (tmp_path / "report" / "evaluation.md").is_file()
    assert verify_package(tmp_path / "demo") == manifest


def test_demo_commands_are_the_documented_sequence(tmp_path: Path) -> None:
    commands = demo_commands(tmp_path, tmp_path / "out", seed=0, config=DemoConfig())

    assert [command[0] for command in commands] == ["make-phantoms", "make-phantoms", "index", "train-classifier",
                                                    "train-classifier", "train-detector", "package"]
    assert commands[0][commands[0].index("--first-patient-number") + 1] == "7000"
    assert commands[1][commands[1].index("--first-patient-number") + 1] == "7300"


@pytest.mark.parametrize("architecture", ["swin_tiny_patch4_window7_224", "convnextv2_atto", "resnet10t"])
def test_other_architectures_train_and_give_heat_maps(architecture: str, tmp_path: Path) -> None:
    """Swin-T (channels-last features), ConvNeXt V2 and ResNet train with the box head and give Grad-CAM maps."""
    from inference.members import Classifier
    from inference.package import Member

    phantoms = generate_dataset(4, seed=3, body_parts=("wrist",), fracture_rate=0.5)
    phantoms += generate_dataset(2, seed=3, body_parts=("wrist",), fracture_rate=1.0, first_patient=10)
    phantoms += generate_dataset(2, seed=3, body_parts=("wrist",), fracture_rate=0.0, first_patient=20)
    config = ClassifierConfig(architecture=architecture, input_size=64, epochs=1, batch_size=4, device="cpu")
    result = train_classifier([p.image for p in phantoms], [p.fracture for p in phantoms],
                              [p.image for p in phantoms], [p.fracture for p in phantoms], config,
                              train_boxes=[p.boxes for p in phantoms])
    weights = save_classifier(result.model, tmp_path / "weights.pt")

    member = Member(name="c", kind="classifier", framework="timm", architecture=architecture, body_parts=("wrist",),
                    views=("AP",), input_size=64, classes=("fracture",), weight=1.0, weights_file="weights.pt",
                    sha256="0" * 64)
    output = Classifier(member, weights, torch.device("cpu")).predict(phantoms[0].image, gradcam=True)

    assert output.heatmap.shape == phantoms[0].image.shape
    assert np.isfinite(output.heatmap).all()
    assert 0.0 <= output.probability <= 1.0
