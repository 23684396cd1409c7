"""The mirror to the canonical side: model inputs, and heat maps and boxes mapped back to source pixels."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inference.members import Classifier, Detector
from inference.package import read_manifest
from inference.preprocess import Letterbox, letterbox_geometry, model_input
from tests.packages import untrained_package


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_package(tmp_path_factory.mktemp("package"))


def asymmetric_image(rows: int = 90, columns: int = 60) -> np.ndarray:
    """A display image whose left part is bright and right part dark, so a mirror shows."""
    image = np.zeros((rows, columns), dtype=np.float32)
    image[10:80, 5:25] = 0.9
    image[40:50, 30:55] = 0.4
    return image


def test_model_input_mirrors_first() -> None:
    image = asymmetric_image()

    flipped, geometry = model_input(image, 64, flip=True)
    mirrored, _ = model_input(np.ascontiguousarray(image[:, ::-1]), 64)

    assert np.array_equal(flipped, mirrored)
    assert geometry.flipped
    assert geometry.source_columns == 60


def test_point_maps_through_mirror() -> None:
    geometry = letterbox_geometry((100, 50), 64, flip=True)

    # Column 16 of the input is the left edge of the mirrored image, which is the source's right edge.
    assert geometry.to_source(16, 0) == (50.0, 0.0)
    assert geometry.to_source(48, 64) == (0.0, 100.0)


def test_box_corners_reordered() -> None:
    geometry = Letterbox(scale=0.5, pad_x=10, pad_y=0, size=100, flipped=True, source_columns=160)

    assert geometry.box_to_source(20, 10, 40, 30) == (100.0, 20.0, 140.0, 60.0)


def test_geometry_matches_model_input() -> None:
    image = asymmetric_image(77, 123)

    _pixels, geometry = model_input(image, 96, flip=True)

    assert letterbox_geometry(image.shape, 96, flip=True) == geometry


def test_heatmap_mapped_back(package: Path) -> None:
    member = next(member for member in read_manifest(package).members if member.kind == "classifier")
    classifier = Classifier(member, package / member.weights_file, torch.device("cpu"))
    image = asymmetric_image()

    flipped = classifier.predict(image, gradcam=True, flip=True)
    mirrored = classifier.predict(np.ascontiguousarray(image[:, ::-1]), gradcam=True)

    assert flipped.heatmap.shape == image.shape
    assert flipped.probability == pytest.approx(mirrored.probability, abs=1e-6)
    assert np.allclose(flipped.heatmap, mirrored.heatmap[:, ::-1], atol=1e-6)


def fake_result(boxes: list[tuple[float, float, float, float]], confidence: float = 0.9) -> SimpleNamespace:
    """An object shaped like one ultralytics detection result, with fracture boxes in model input pixels."""
    return SimpleNamespace(boxes=SimpleNamespace(
        xyxy=torch.tensor(boxes), conf=torch.full((len(boxes),), confidence), cls=torch.zeros(len(boxes)),
    ))


def test_detector_box_mapped_back(package: Path) -> None:
    member = next(member for member in read_manifest(package).members if member.kind == "detector")
    detector = Detector(member, package / member.weights_file, torch.device("cpu"))
    shape = (200, 100)
    geometry = letterbox_geometry(shape, 256, flip=True)

    _probability, boxes = detector._read(fake_result([(96.0, 64.0, 128.0, 128.0)]), geometry, shape)

    # Scale 1.28 and 64 columns of padding: input columns 96-128 are columns 25-50 of the
    # mirrored image, which are source columns 100 - 50 = 50 to 100 - 25 = 75.
    box = boxes[0]
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((50.0, 50.0, 75.0, 100.0))
