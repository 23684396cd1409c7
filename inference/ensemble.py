"""The ensemble: every member that reads an image's body part and view, combined by soft voting."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydicom.dataset import Dataset

from inference.anatomy import is_radiograph, not_radiograph_reason, resolve_anatomy
from inference.findings import ImageFinding, MemberOutput, SkippedImage, StudyFinding
from inference.members import Classifier, Detector
from inference.package import BODY_PARTS, VIEWS, Manifest, verify_package
from inference.pixels import PixelError, display_image
from inference.preprocess import to_uint8

logger = logging.getLogger(__name__)


def choose_device(name: str) -> torch.device:
    """Resolve ``auto`` to CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch finds no CUDA device; use 'cpu' or 'auto'")
    return torch.device(name)


def soft_vote(outputs: Sequence[MemberOutput]) -> float:
    """Weighted mean of member probabilities, with the weights from the manifest."""
    total = sum(output.weight for output in outputs)
    return sum(output.weight * output.probability for output in outputs) / total


class Ensemble:
    """All members of a verified model package, loaded once on one device.

    Parameters
    ----------
    folder
        The model package folder; its checksums are verified before anything loads.
    device
        ``auto``, ``cpu`` or ``cuda``.
    gradcam
        Compute Grad-CAM heat maps from the classifiers.
    """

    def __init__(self, folder: Path, *, device: str = "auto", gradcam: bool = True) -> None:
        self.manifest: Manifest = verify_package(folder)
        self.device = choose_device(device)
        self.gradcam = gradcam
        self.classifiers: dict[str, Classifier] = {}
        self.detectors: dict[str, Detector] = {}

        for member in self.manifest.members:
            weights = folder / member.weights_file
            if member.kind == "classifier":
                self.classifiers[member.name] = Classifier(member, weights, self.device)
            else:
                self.detectors[member.name] = Detector(member, weights, self.device)

        logger.info("ensemble %s ready on %s: %d classifiers, %d detectors", self.manifest.identity,
                    self.device, len(self.classifiers), len(self.detectors))

    def read_study(self, study_instance_uid: str, datasets: Sequence[Dataset]) -> StudyFinding:
        """Read every radiograph of a study; everything else is listed as skipped with its reason."""
        images: list[ImageFinding] = []
        skipped: list[SkippedImage] = []
        for dataset in datasets:
            outcome = self.read_image(dataset)
            (images if isinstance(outcome, ImageFinding) else skipped).append(outcome)

        return StudyFinding(study_instance_uid=study_instance_uid, images=tuple(images), skipped=tuple(skipped),
                            model_name=self.manifest.name, model_version=self.manifest.version)

    def read_image(self, dataset: Dataset) -> ImageFinding | SkippedImage:
        sop_uid = str(dataset.SOPInstanceUID)
        reason = _reason_not_to_read(dataset)
        if reason:
            return SkippedImage(sop_uid, reason)

        anatomy = resolve_anatomy(dataset)
        if anatomy.body_part not in BODY_PARTS:
            found = str(dataset.get("BodyPartExamined", "") or "").strip() or "not stated"
            return SkippedImage(sop_uid, f"not an elbow or wrist radiograph (Body Part Examined: {found})")
        if anatomy.view not in VIEWS:
            return SkippedImage(sop_uid, f"{anatomy.body_part} view is not AP or lateral "
                                         f"(View Position: {str(dataset.get('ViewPosition', '') or 'not stated')})")

        threshold = self.manifest.threshold_for(anatomy.body_part, anatomy.view)
        if threshold is None:
            return SkippedImage(sop_uid, f"model package has no operating point for {anatomy.body_part} {anatomy.view}")

        try:
            image = display_image(dataset)
        except PixelError as error:
            return SkippedImage(sop_uid, str(error))

        outputs, boxes, heatmap = self._run_members(image, anatomy.body_part, anatomy.view)
        probability = soft_vote(outputs)
        logger.info("read %s: %s %s p=%.3f threshold=%.3f", sop_uid, anatomy.body_part, anatomy.view,
                    probability, threshold)
        return ImageFinding(
            sop_instance_uid=sop_uid, body_part=anatomy.body_part, view=anatomy.view,
            laterality=anatomy.laterality, view_source=anatomy.view_source or "unknown",
            probability=probability, threshold=threshold, positive=probability >= threshold,
            members=tuple(outputs), boxes=boxes, display=to_uint8(image), heatmap=heatmap,
        )

    def _run_members(self, image: np.ndarray, body_part: str, view: str):  # noqa: ANN202 - internal tuple
        outputs: list[MemberOutput] = []
        boxes: tuple = ()
        heatmap = None
        for member in self.manifest.members_for(body_part, view):
            if member.kind == "classifier":
                result = self.classifiers[member.name].predict(image, gradcam=self.gradcam and heatmap is None)
                heatmap = heatmap if result.heatmap is None else result.heatmap
                outputs.append(MemberOutput(member.name, member.kind, result.probability, member.weight))
            else:
                probability, found = self.detectors[member.name].predict(image)
                boxes = boxes + found
                outputs.append(MemberOutput(member.name, member.kind, probability, member.weight))
        return outputs, boxes, heatmap


def _reason_not_to_read(dataset: Dataset) -> str | None:
    if not is_radiograph(dataset):
        return not_radiograph_reason(dataset)
    if "PixelData" not in dataset:
        return "Pixel Data (7FE0,0010) is missing"
    return None
