"""Ensemble members loaded from a model package: timm classifiers and ultralytics detectors."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from inference.findings import HIGH_SENSITIVITY, HIGH_SPECIFICITY, Box
from inference.package import Member
from inference.preprocess import Letterbox, model_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierOutput:
    probability: float
    heatmap: np.ndarray | None


class Classifier:
    """A timm classifier with one fracture logit, in ``eval()`` mode on the chosen device."""

    def __init__(self, member: Member, weights: Path, device: torch.device) -> None:
        self.member = member
        self.device = device
        self.model = create_timm_model(member.architecture, num_classes=1, in_chans=member.in_chans,
                                       input_size=member.input_size)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.model.load_state_dict({name: tensor.float() for name, tensor in state.items()})
        self.model.eval().to(device)
        logger.info("loaded classifier %s (%s, %d px) on %s", member.name, member.architecture, member.input_size, device)

    def tensor(self, image: np.ndarray, *, flip: bool = False) -> tuple[torch.Tensor, Letterbox]:
        """Model input for a display image in [0, 1]: mirror if ``flip``, CLAHE, letterbox, scale and normalise."""
        pixels, geometry = model_input(image, self.member.input_size, flip=flip)
        normalization = self.member.normalization
        array = (pixels.astype(np.float32) / 255.0 - normalization.mean) / normalization.std
        tensor = torch.from_numpy(array)[None, None].repeat(1, self.member.in_chans, 1, 1)
        return tensor.to(self.device), geometry

    def predict(self, image: np.ndarray, *, gradcam: bool, flip: bool = False) -> ClassifierOutput:
        return self.predict_batch([image], gradcam=gradcam, flips=[flip])[0]

    def predict_batch(self, images: Sequence[np.ndarray], *, gradcam: bool,
                      flips: Sequence[bool] | None = None) -> list[ClassifierOutput]:
        """Read ``images`` in one forward pass; with ``gradcam``, that pass also yields their heat maps.

        ``flips`` marks the images to mirror left to right first; their heat maps are mirrored back,
        so every map lies on its source image's pixels.
        """
        flips = [False] * len(images) if flips is None else list(flips)
        prepared = [self.tensor(image, flip=flip) for image, flip in zip(images, flips)]
        batch = torch.cat([tensor for tensor, _geometry in prepared])
        if not gradcam:
            with torch.inference_mode():
                logits = self.model(batch)
            return [ClassifierOutput(probability, None) for probability in _probabilities(logits)]

        logits, grids = self._gradcam(batch)
        return [
            ClassifierOutput(probability, _unletterbox(grid, geometry, image.shape))
            for probability, grid, (_tensor, geometry), image in zip(_probabilities(logits), grids, prepared, images)
        ]

    def _gradcam(self, batch: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """Return the fracture logits and their Grad-CAM maps on the last stage, at input size, from one pass.

        Grad-CAM needs the gradient of the logit at the last stage's output and nothing below it,
        so the stages run once without autograd and only the head is differentiated. This costs
        about one forward pass, where GradCAM on the whole model backpropagates through every
        stage. The maps match that whole-model GradCAM (grad-cam 1.5.7) to within 1e-6, because
        they are resized to the input and rescaled to [0, 1] in the same order.
        """
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.image import scale_cam_image
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        head = _LastStageHead(self.model)
        with torch.no_grad():
            activations = head.stages_output(batch)

        targets = [BinaryClassifierOutputTarget(1)] * len(batch)
        with GradCAM(model=head, target_layers=[head.entry]) as cam:
            grids = cam(input_tensor=activations.requires_grad_(True), targets=targets)
            logits = cam.outputs.detach()

        size = self.member.input_size
        return logits, scale_cam_image(scale_cam_image(grids, (size, size)))


def _probabilities(logits: torch.Tensor) -> list[float]:
    return torch.sigmoid(logits.float()).flatten().tolist()


class _LastStageHead(torch.nn.Module):
    """The part of a timm model after its feature extractor, entered through an Identity for GradCAM's hooks.

    ``forward_features`` and ``forward_head`` are timm's common split of every classifier, so
    ConvNeXt, ConvNeXt V2, Swin and ResNet models all work. Swin returns channels last; its features
    are handed to GradCAM channels first and turned back before the head.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        missing = [name for name in ("forward_features", "forward_head") if not hasattr(model, name)]
        if missing:
            raise ValueError(f"{type(model).__name__} has no {', '.join(missing)}; Grad-CAM needs a timm classifier")
        self.model = model
        self.channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"
        self.entry = torch.nn.Identity()

    def stages_output(self, batch: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(batch)
        return features.permute(0, 3, 1, 2) if self.channels_last else features

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        features = self.entry(activations)
        if self.channels_last:
            features = features.permute(0, 2, 3, 1)
        return self.model.forward_head(features)


def create_timm_model(architecture: str, *, num_classes: int, in_chans: int, input_size: int) -> torch.nn.Module:
    """Build an untrained timm model for square inputs of ``input_size`` pixels.

    Models with a fixed input grid (Swin, ViT) take the size at construction; the others refuse
    an ``img_size`` argument and are built without it.
    """
    import timm

    try:
        return timm.create_model(architecture, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                 img_size=input_size)
    except TypeError:
        return timm.create_model(architecture, pretrained=False, num_classes=num_classes, in_chans=in_chans)


def _unletterbox(grid: np.ndarray, geometry: Letterbox, shape: tuple[int, ...]) -> np.ndarray:
    """Crop the padding off a square map, resize it to the source image's rows and columns, undo a mirror."""
    return np.clip(geometry.map_to_source(grid, shape), 0.0, 1.0)


class Detector:
    """An ultralytics YOLO detector; its fracture probability is its highest fracture-box confidence.

    Boxes below the member's ``box_threshold`` (the high-sensitivity operating point) are dropped.
    Each kept box is marked HIGH_SPECIFICITY when its confidence reaches
    ``box_threshold_high_specificity``, else HIGH_SENSITIVITY. A member without that second
    threshold marks every box HIGH_SPECIFICITY.
    """

    def __init__(self, member: Member, weights: Path, device: torch.device) -> None:
        from ultralytics import YOLO

        self.member = member
        self.device = device
        self.model = YOLO(str(weights), task="detect")
        names = self.model.names
        self.names = [names[index] for index in sorted(names)] if isinstance(names, dict) else list(names)
        if list(self.names) != list(member.classes):
            raise ValueError(f"detector {member.name}: weights have classes {self.names}, the manifest says {list(member.classes)}")
        logger.info("loaded detector %s (%s, %d px) on %s", member.name, member.architecture, member.input_size, device)

    def predict(self, image: np.ndarray, *, flip: bool = False) -> tuple[float, tuple[Box, ...]]:
        return self.predict_batch([image], flips=[flip])[0]

    def predict_batch(self, images: Sequence[np.ndarray],
                      flips: Sequence[bool] | None = None) -> list[tuple[float, tuple[Box, ...]]]:
        """Detect on ``images`` in one ultralytics call, which runs them as one batch.

        ``flips`` marks the images to mirror left to right first; their boxes are mapped back to
        the source image's pixels.
        """
        flips = [False] * len(images) if flips is None else list(flips)
        prepared = [model_input(image, self.member.input_size, flip=flip) for image, flip in zip(images, flips)]
        sources = [cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) for pixels, _geometry in prepared]
        results = self.model.predict(sources, imgsz=self.member.input_size, conf=self.member.box_threshold,
                                     device=str(self.device), verbose=False)
        return [self._read(result, geometry, image.shape)
                for result, (_pixels, geometry), image in zip(results, prepared, images)]

    def _read(self, result: object, geometry: Letterbox, shape: tuple[int, ...]) -> tuple[float, tuple[Box, ...]]:
        """Map one ultralytics result's boxes back to source pixels; return the fracture probability and the boxes."""
        boxes = []
        for xyxy, confidence, label in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                           result.boxes.cls.tolist()):
            x0, y0, x1, y1 = geometry.box_to_source(*xyxy[:4])
            boxes.append(_clipped_box(self.names[int(label)], confidence, (x0, y0, x1, y1), shape,
                                      tier=self.tier(confidence)))

        probability = max((box.confidence for box in boxes if box.label == "fracture"), default=0.0)
        return probability, tuple(boxes)

    def tier(self, confidence: float) -> str:
        """Return the operating point a box of this ``confidence`` reaches."""
        high = self.member.box_threshold_high_specificity
        if high is None or confidence >= high:
            return HIGH_SPECIFICITY
        return HIGH_SENSITIVITY


def _clipped_box(label: str, confidence: float, corners: tuple[float, float, float, float],
                 shape: tuple[int, ...], *, tier: str) -> Box:
    rows, columns = shape[:2]
    x0, y0, x1, y1 = corners
    return Box(label=label, confidence=float(confidence),
               x0=float(np.clip(x0, 0, columns - 1)), y0=float(np.clip(y0, 0, rows - 1)),
               x1=float(np.clip(x1, 0, columns - 1)), y1=float(np.clip(y1, 0, rows - 1)), tier=tier)
