"""Training of an ultralytics YOLO detector of fracture and fat pad boxes, fully offline.

The training images are the same letterboxed model inputs the service gives the detector
(:func:`inference.preprocess.model_input` at the detector's input size), written as PNG files into a
temporary YOLO dataset folder, with the boxes converted to letterbox coordinates.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from inference.offline import configure_ultralytics_offline, default_config_dir
from inference.preprocess import Letterbox, model_input

logger = logging.getLogger(__name__)

DETECTOR_CLASSES = ("fracture", "fat_pad")


class AnnotatedImage(Protocol):
    """A display image in [0, 1] with boxes (label, x0, y0, x1, y1) in its pixels."""

    image: np.ndarray
    boxes: list[tuple[str, float, float, float, float]]


@dataclass(frozen=True)
class DetectorConfig:
    """Hyper-parameters of one YOLO training run.

    ``model_yaml`` names an ultralytics model definition, built with random weights, so nothing
    is downloaded. ``device`` is ``"cpu"``, ``"cuda"`` or None for CUDA when available.
    """

    model_yaml: str = "yolov8n.yaml"
    input_size: int = 512
    classes: tuple[str, ...] = DETECTOR_CLASSES
    epochs: int = 10
    batch_size: int = 8
    patience: int = 100
    mosaic: float = 1.0
    close_mosaic: int = 3
    seed: int = 0
    device: str | None = None
    config_dir: Path | None = None


@dataclass(frozen=True)
class DetectorResult:
    """Path of the kept weights file and the last validation metrics of ultralytics."""

    weights: Path
    metrics: dict[str, float] = field(default_factory=dict)


def letterbox_label(box: tuple[str, float, float, float, float], geometry: Letterbox,
                    classes: Sequence[str]) -> str | None:
    """Convert a source-pixel box into a YOLO label line in letterbox coordinates.

    Returns None for a box that shrinks to nothing after clipping to the input.

    Raises
    ------
    ValueError
        When the box label is not one of ``classes``.
    """
    label, x0, y0, x1, y1 = box
    if label not in classes:
        raise ValueError(f"box label {label!r} is not one of the detector classes {list(classes)}")

    size = geometry.size
    corners = np.array([x0, y0, x1, y1], dtype=np.float64) * geometry.scale
    corners += [geometry.pad_x, geometry.pad_y, geometry.pad_x, geometry.pad_y]
    left, top, right, bottom = np.clip(corners, 0.0, size) / size
    if right - left <= 0 or bottom - top <= 0:
        return None
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    return f"{classes.index(label)} {centre_x:.6f} {centre_y:.6f} {right - left:.6f} {bottom - top:.6f}"


def write_yolo_dataset(
    folder: Path,
    train: Sequence[AnnotatedImage],
    validation: Sequence[AnnotatedImage],
    *,
    input_size: int,
    classes: Sequence[str] = DETECTOR_CLASSES,
) -> Path:
    """Write letterboxed PNG images, YOLO label files and ``data.yaml``; return the YAML path."""
    for split, items in (("train", train), ("val", validation)):
        images = folder / "images" / split
        labels = folder / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)

        for index, item in enumerate(items):
            pixels, geometry = model_input(item.image, input_size)
            stem = f"{split}_{index:05d}"
            if not cv2.imwrite(str(images / f"{stem}.png"), pixels):
                raise OSError(f"failed to write training image {images / f'{stem}.png'}")
            lines = [line for box in item.boxes if (line := letterbox_label(box, geometry, classes)) is not None]
            (labels / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    names = "\n".join(f"  {index}: {name}" for index, name in enumerate(classes))
    data = folder / "data.yaml"
    data.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n{names}\n", encoding="utf-8")
    logger.info("YOLO dataset in %s: %d training and %d validation images", folder, len(train), len(validation))
    return data


def train_detector(
    train: Sequence[AnnotatedImage],
    validation: Sequence[AnnotatedImage],
    weights_out: Path,
    config: DetectorConfig = DetectorConfig(),
    *,
    work_dir: Path | None = None,
) -> DetectorResult:
    """Train a YOLO detector from its model YAML and copy the best weights to ``weights_out``.

    Training runs with ``amp=False`` (the AMP check downloads a model), ``plots=False`` and
    ``workers=0``, after :func:`inference.offline.configure_ultralytics_offline`.

    Parameters
    ----------
    train, validation
        Images with their boxes; images without boxes are negatives.
    weights_out
        Path of the weights file to keep.
    config
        Hyper-parameters.
    work_dir
        Folder for the dataset and the ultralytics run; a temporary folder, removed afterwards,
        when None.

    Returns
    -------
    The kept weights path and the final validation metrics.
    """
    configure_ultralytics_offline(config.config_dir or default_config_dir())
    if work_dir is not None:
        return _train_in(Path(work_dir), train, validation, Path(weights_out), config)
    with tempfile.TemporaryDirectory(prefix="pedfrac-yolo-") as folder:
        return _train_in(Path(folder), train, validation, Path(weights_out), config)


def _train_in(folder: Path, train: Sequence[AnnotatedImage], validation: Sequence[AnnotatedImage],
              weights_out: Path, config: DetectorConfig) -> DetectorResult:
    from ultralytics import YOLO

    data = write_yolo_dataset(folder / "dataset", train, validation, input_size=config.input_size,
                              classes=config.classes)
    model = YOLO(config.model_yaml, task="detect")
    model.train(
        data=str(data), epochs=config.epochs, imgsz=config.input_size, batch=config.batch_size,
        device=_device(config.device), workers=0, amp=False, plots=False, seed=config.seed,
        deterministic=True, pretrained=False, patience=config.patience, mosaic=config.mosaic,
        close_mosaic=config.close_mosaic, project=str(folder / "runs"), name="detector", exist_ok=True,
        verbose=False, hsv_h=0.0, hsv_s=0.0, hsv_v=0.3, fliplr=0.5, scale=0.25, translate=0.1,
    )

    trainer = model.trainer
    source = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    weights_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, weights_out)
    metrics = {key: float(value) for key, value in (trainer.metrics or {}).items()}
    logger.info("detector weights %s kept as %s (%.1f MB), metrics %s", source.name, weights_out,
                weights_out.stat().st_size / 1e6, metrics)
    return DetectorResult(weights=weights_out, metrics=metrics)


def fracture_probabilities(
    weights: Path,
    images: Sequence[np.ndarray],
    *,
    input_size: int,
    box_threshold: float,
    classes: Sequence[str] = DETECTOR_CLASSES,
    device: str | None = None,
    config_dir: Path | None = None,
) -> np.ndarray:
    """Return each image's highest fracture-box confidence, 0 when no box reaches ``box_threshold``.

    The input is the grey letterboxed model input copied into three channels and the prediction
    runs with ``conf=box_threshold``, as the service's detector member reads an image.
    """
    configure_ultralytics_offline(config_dir or default_config_dir())
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    fracture = list(classes).index("fracture")
    probabilities = np.zeros(len(images), dtype=np.float64)
    for index, image in enumerate(images):
        pixels, _ = model_input(image, input_size)
        result = model.predict(cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR), imgsz=input_size, conf=box_threshold,
                               device=_device(device), verbose=False)[0]
        confidences = [conf for conf, label in zip(result.boxes.conf.tolist(), result.boxes.cls.tolist())
                       if int(label) == fracture]
        probabilities[index] = max(confidences, default=0.0)
    return probabilities


def _device(requested: str | None) -> str:
    import torch

    if requested is None:
        return "0" if torch.cuda.is_available() else "cpu"
    return "0" if requested == "cuda" else requested
