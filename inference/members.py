"""Ensemble members loaded from a model package: timm classifiers and ultralytics detectors."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from inference.findings import Box
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
        import timm

        self.member = member
        self.device = device
        self.model = timm.create_model(member.architecture, pretrained=False, num_classes=1, in_chans=member.in_chans)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.model.load_state_dict({name: tensor.float() for name, tensor in state.items()})
        self.model.eval().to(device)
        logger.info("loaded classifier %s (%s, %d px) on %s", member.name, member.architecture, member.input_size, device)

    def tensor(self, image: np.ndarray) -> tuple[torch.Tensor, Letterbox]:
        """Model input for a display image in [0, 1]: CLAHE, letterbox, scale and normalise."""
        pixels, geometry = model_input(image, self.member.input_size)
        normalization = self.member.normalization
        array = (pixels.astype(np.float32) / 255.0 - normalization.mean) / normalization.std
        tensor = torch.from_numpy(array)[None, None].repeat(1, self.member.in_chans, 1, 1)
        return tensor.to(self.device), geometry

    def predict(self, image: np.ndarray, *, gradcam: bool) -> ClassifierOutput:
        tensor, geometry = self.tensor(image)
        with torch.inference_mode():
            probability = float(torch.sigmoid(self.model(tensor)).item())

        heatmap = self._gradcam(tensor, geometry, image.shape) if gradcam else None
        return ClassifierOutput(probability=probability, heatmap=heatmap)

    def _gradcam(self, tensor: torch.Tensor, geometry: Letterbox, shape: tuple[int, ...]) -> np.ndarray:
        """Grad-CAM of the fracture logit on the last stage, mapped back to source pixels."""
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        target_layer = _last_stage(self.model)
        with GradCAM(model=self.model, target_layers=[target_layer]) as cam:
            grid = cam(input_tensor=tensor, targets=[BinaryClassifierOutputTarget(1)])[0]

        return _unletterbox(grid.astype(np.float32), geometry, shape)


def _last_stage(model: torch.nn.Module) -> torch.nn.Module:
    stages = getattr(model, "stages", None)
    if stages is None:
        raise ValueError(f"{type(model).__name__} has no 'stages'; Grad-CAM needs a ConvNeXt-style model")
    return stages[-1]


def _unletterbox(grid: np.ndarray, geometry: Letterbox, shape: tuple[int, ...]) -> np.ndarray:
    """Crop the padding off a square map and resize it to the source image's rows and columns."""
    size = geometry.size
    if grid.shape != (size, size):
        grid = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)

    rows, columns = shape[:2]
    height = max(1, round(rows * geometry.scale))
    width = max(1, round(columns * geometry.scale))
    crop = grid[geometry.pad_y : geometry.pad_y + height, geometry.pad_x : geometry.pad_x + width]
    return np.clip(cv2.resize(crop, (columns, rows), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


class Detector:
    """An ultralytics YOLO detector; its fracture probability is its highest fracture-box confidence."""

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

    def predict(self, image: np.ndarray) -> tuple[float, tuple[Box, ...]]:
        pixels, geometry = model_input(image, self.member.input_size)
        bgr = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        result = self.model.predict(bgr, imgsz=self.member.input_size, conf=self.member.box_threshold,
                                    device=str(self.device), verbose=False)[0]

        boxes = []
        for xyxy, confidence, label in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                           result.boxes.cls.tolist()):
            x0, y0 = geometry.to_source(xyxy[0], xyxy[1])
            x1, y1 = geometry.to_source(xyxy[2], xyxy[3])
            boxes.append(_clipped_box(self.names[int(label)], confidence, (x0, y0, x1, y1), image.shape))

        probability = max((box.confidence for box in boxes if box.label == "fracture"), default=0.0)
        return probability, tuple(boxes)


def _clipped_box(label: str, confidence: float, corners: tuple[float, float, float, float],
                 shape: tuple[int, ...]) -> Box:
    rows, columns = shape[:2]
    x0, y0, x1, y1 = corners
    return Box(label=label, confidence=float(confidence),
               x0=float(np.clip(x0, 0, columns - 1)), y0=float(np.clip(y0, 0, rows - 1)),
               x1=float(np.clip(x1, 0, columns - 1)), y1=float(np.clip(y1, 0, rows - 1)))
