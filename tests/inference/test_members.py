"""Members read batches as they read single images, and Grad-CAM matches grad-cam's whole-model maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.ensemble import Ensemble
from inference.members import _unletterbox
from tests.factories import new_study, phantom_dx
from tests.packages import untrained_package


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Ensemble:
    return Ensemble(untrained_package(tmp_path_factory.mktemp("package")), device="cpu")


def noise_images() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.random((300, 220), dtype=np.float32), rng.random((180, 260), dtype=np.float32)]


def whole_model_gradcam(classifier, image: np.ndarray) -> np.ndarray:  # noqa: ANN001 - inference.members.Classifier
    """The heat map as grad-cam's GradCAM computes it on the whole model, mapped to source pixels."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    tensor, geometry = classifier.tensor(image)
    with GradCAM(model=classifier.model, target_layers=[classifier.model.stages[-1]]) as cam:
        grid = cam(input_tensor=tensor, targets=[BinaryClassifierOutputTarget(1)])[0]
    return _unletterbox(grid.astype(np.float32), geometry, image.shape)


def test_gradcam_matches_whole_model(ensemble: Ensemble) -> None:
    classifier = next(iter(ensemble.classifiers.values()))
    image = noise_images()[0]

    heatmap = classifier.predict(image, gradcam=True).heatmap

    assert heatmap.shape == image.shape
    assert np.abs(heatmap - whole_model_gradcam(classifier, image)).max() < 1e-5


def test_gradcam_probability_matches_plain_forward(ensemble: Ensemble) -> None:
    classifier = next(iter(ensemble.classifiers.values()))
    image = noise_images()[0]

    with_map = classifier.predict(image, gradcam=True)
    without_map = classifier.predict(image, gradcam=False)

    assert with_map.probability == pytest.approx(without_map.probability, abs=1e-6)
    assert without_map.heatmap is None


def test_classifier_batch_matches_single(ensemble: Ensemble) -> None:
    classifier = next(iter(ensemble.classifiers.values()))
    images = noise_images()

    batch = classifier.predict_batch(images, gradcam=True)
    single = [classifier.predict(image, gradcam=True) for image in images]

    for batched, alone in zip(batch, single):
        assert batched.probability == pytest.approx(alone.probability, abs=1e-5)
        assert np.abs(batched.heatmap - alone.heatmap).max() < 1e-4


def test_detector_batch_matches_single(ensemble: Ensemble) -> None:
    detector = next(iter(ensemble.detectors.values()))
    images = noise_images()

    batch = detector.predict_batch(images)
    single = [detector.predict(image) for image in images]

    for (batch_probability, batch_boxes), (probability, boxes) in zip(batch, single):
        assert batch_probability == pytest.approx(probability, abs=1e-4)
        assert len(batch_boxes) == len(boxes)


def test_read_studies_matches_read_study(ensemble: Ensemble) -> None:
    studies = []
    for seed in (1, 2):
        study = new_study()
        datasets = [phantom_dx(study, body_part="wrist", view=view, laterality="R", fracture=False, seed=seed * 10 + n)
                    for n, view in enumerate(("AP", "LAT"))]
        studies.append((str(study.StudyInstanceUID), datasets))

    together = ensemble.read_studies(studies)
    alone = [ensemble.read_study(uid, datasets) for uid, datasets in studies]

    for batched, single in zip(together, alone):
        assert batched.study_instance_uid == single.study_instance_uid
        assert [image.sop_instance_uid for image in batched.images] == [image.sop_instance_uid for image in single.images]
        for batched_image, single_image in zip(batched.images, single.images):
            assert batched_image.probability == pytest.approx(single_image.probability, abs=1e-4)


def test_warm_up_runs_every_member(ensemble: Ensemble) -> None:
    ensemble.warm_up()

    detector = next(iter(ensemble.detectors.values()))
    assert detector.model.predictor is not None


def test_decode_workers_match_serial(tmp_path: Path) -> None:
    package = untrained_package(tmp_path / "package")
    serial = Ensemble(package, device="cpu", gradcam=False)
    pooled = Ensemble(package, device="cpu", gradcam=False, decode_workers=2)
    study = new_study()
    datasets = [phantom_dx(study, body_part="elbow", view=view, laterality="L", fracture=True, seed=n)
                for n, view in enumerate(("AP", "LAT"))]

    expected = serial.read_study(str(study.StudyInstanceUID), datasets)
    found = pooled.read_study(str(study.StudyInstanceUID), datasets)

    assert [image.probability for image in found.images] == pytest.approx([image.probability for image in expected.images])
