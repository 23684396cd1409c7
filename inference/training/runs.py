"""Training runs from CSV manifests: a classifier or a detector per body part, kept in a run folder.

A run folder contains the weights file and ``run.json``. The JSON file records what the weights
are (kind, architecture, input size, body part, views, classes) and how they were trained
(configuration, per-epoch history, data counts). It also records how they did on the validation
split: AUROC, the Youden threshold and the accuracy there. ``pedfrac package`` builds a model package from run folders.

Both kinds see every image as the service shows it to them: mirrored to the canonical side of its
body part, then CLAHE and letterbox.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.package import VIEWS, mirrors_to_canonical
from inference.training.classifier import (
    Box,
    ClassifierConfig,
    PreparedSet,
    predict_prepared,
    prepare_set,
    save_classifier,
    train_prepared,
)
from inference.training.detector import DetectorConfig, train_detector
from inference.training.images import load_boxes, load_image
from inference.training.manifests import read_manifests
from inference.training.metrics import binary_metrics, youden_threshold
from inference.training.records import ImageRecord

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
CLASSIFIER_WEIGHTS = "classifier.pt"
DETECTOR_WEIGHTS = "detector.pt"


class LazyAnnotatedSet(Sequence[Any]):
    """Records as :class:`inference.training.detector.AnnotatedImage` items, each loaded once when indexed."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        image, boxes = load_canonical(self.records[index])
        return _Loaded(image=image, boxes=boxes)


@dataclass(frozen=True)
class _Loaded:
    image: np.ndarray
    boxes: list[Box]


def load_canonical(record: ImageRecord) -> tuple[np.ndarray, list[Box]]:
    """Load a record's display image and boxes, both mirrored when the body part has a canonical side."""
    image = load_image(record)
    boxes = load_boxes(record, image.shape[:2])
    if not mirrors_to_canonical(record.body_part, record.laterality):
        return image, boxes

    columns = image.shape[1]
    mirrored = [(label, columns - x1, y0, columns - x0, y1) for label, x0, y0, x1, y1 in boxes]
    return np.ascontiguousarray(image[:, ::-1]), mirrored


def select(manifests: Path, split: str, body_part: str, views: Sequence[str] = VIEWS) -> list[ImageRecord]:
    """Read the records of ``split`` for one body part and the given views."""
    records: list[ImageRecord] = []
    for view in views:
        records.extend(read_manifests(manifests, split, body_part=body_part, view=view))
    return records


def prepare_records(records: Sequence[ImageRecord], size: int, *, with_masks: bool = False,
                    description: str = "preparing") -> PreparedSet:
    """Load, mirror and preprocess records into model inputs, one image at a time."""
    def items() -> Iterator[tuple[np.ndarray, list[Box]]]:
        for record in records:
            yield load_canonical(record)

    return prepare_set(items(), [bool(record.label) for record in records], size, with_masks=with_masks,
                       description=description)


def train_classifier_run(
    manifests: Path,
    out_dir: Path,
    *,
    body_part: str,
    views: Sequence[str] = VIEWS,
    config: ClassifierConfig = ClassifierConfig(),
    use_boxes: bool = True,
) -> Path:
    """Train a classifier on the ``train`` split, stop early on ``val`` and write the run folder.

    Parameters
    ----------
    manifests
        Folder written by ``pedfrac index``.
    out_dir
        Run folder to write: ``classifier.pt`` and ``run.json``.
    body_part, views
        The images the classifier learns and will read in the package.
    config
        Hyper-parameters; ``config.input_size`` is the input contract of the package member.
    use_boxes
        Train the auxiliary box head on fracture and fat pad boxes where the records have them.

    Returns
    -------
    The path of ``run.json``.
    """
    started = time.monotonic()
    out_dir = Path(out_dir).resolve()
    train = select(manifests, "train", body_part, views)
    validation = select(manifests, "val", body_part, views)
    for split, records in (("train", train), ("val", validation)):
        _require_both_classes(records, f"the {split} split of {body_part} {'/'.join(views)} in {manifests}")
    logger.info("classifier run %s: %s %s, %d training and %d validation images", out_dir.name, body_part,
                "/".join(views), len(train), len(validation))

    train_set = prepare_records(train, config.input_size, with_masks=use_boxes, description="training inputs")
    validation_set = prepare_records(validation, config.input_size, description="validation inputs")
    result = train_prepared(train_set, validation_set, config)

    out_dir.mkdir(parents=True, exist_ok=True)
    save_classifier(result.model, out_dir / CLASSIFIER_WEIGHTS)
    probabilities = predict_prepared(result.model, validation_set, config)
    summary = _validation_summary(validation_set.labels, probabilities)

    run = {
        "kind": "classifier", "framework": "timm", "weights_file": CLASSIFIER_WEIGHTS,
        "architecture": config.architecture, "input_size": config.input_size, "in_chans": 1,
        "normalization": {"mean": config.mean, "std": config.std}, "classes": ["fracture"],
        "body_parts": [body_part], "views": list(views),
        "best_epoch": result.best_epoch, "validation": summary,
        "history": [asdict(log) for log in result.history],
        "config": asdict(config), "data": _data(manifests, train, validation),
        "seconds": round(time.monotonic() - started, 1),
    }
    return _write_run(out_dir, run)


def train_detector_run(
    manifests: Path,
    out_dir: Path,
    *,
    body_parts: Sequence[str],
    views: Sequence[str] = VIEWS,
    config: DetectorConfig = DetectorConfig(),
) -> Path:
    """Train a YOLO detector on the ``train`` split's boxes, validate on ``val`` and write the run folder.

    Images without boxes take part as negatives. The ultralytics run lives in ``out_dir/ultralytics``
    for inspection; only ``detector.pt`` and ``run.json`` are needed afterwards.
    """
    started = time.monotonic()
    # ultralytics resolves a relative project folder under its own settings folder, not the working one.
    out_dir = Path(out_dir).resolve()
    train = [r for part in body_parts for r in select(manifests, "train", part, views)]
    validation = [r for part in body_parts for r in select(manifests, "val", part, views)]
    boxed = sum(1 for record in train if record.boxes_file)
    logger.info("detector run %s: %s %s, %d training images (%d with a boxes file), %d validation images",
                out_dir.name, "/".join(body_parts), "/".join(views), len(train), boxed, len(validation))
    if not boxed:
        raise ValueError("no training image has a boxes file; a detector cannot learn without boxes")

    out_dir.mkdir(parents=True, exist_ok=True)
    result = train_detector(LazyAnnotatedSet(train), LazyAnnotatedSet(validation), out_dir / DETECTOR_WEIGHTS,
                            config, work_dir=out_dir / "ultralytics")

    run = {
        "kind": "detector", "framework": "ultralytics", "weights_file": DETECTOR_WEIGHTS,
        "architecture": Path(config.model_yaml).stem, "input_size": config.input_size, "in_chans": 3,
        "classes": list(config.classes), "body_parts": list(body_parts), "views": list(views),
        "validation": {"map50": _rounded(result.metrics.get("metrics/mAP50(B)")),
                       "map50_95": _rounded(result.metrics.get("metrics/mAP50-95(B)"))},
        "config": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()},
        "data": _data(manifests, train, validation),
        "seconds": round(time.monotonic() - started, 1),
    }
    return _write_run(out_dir, run)


def _require_both_classes(records: Sequence[ImageRecord], name: str) -> None:
    fractures = sum(int(record.label) for record in records)
    if fractures == 0 or fractures == len(records):
        missing = "fracture" if fractures == 0 else "normal"
        raise ValueError(f"{name} has {len(records)} images and no {missing} image; a classifier needs both. "
                         "Index more data, or change pedfrac index --test-fraction/--val-fraction")


def read_run(folder: Path) -> dict[str, Any]:
    """Read a run folder's ``run.json`` and check that its weights file is there."""
    path = Path(folder) / RUN_FILE
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable training run: {error}") from error

    weights = Path(folder) / run.get("weights_file", "")
    if not weights.is_file():
        raise ValueError(f"training run {folder} has no weights file {run.get('weights_file')!r}")
    return run


def _validation_summary(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    threshold = youden_threshold(labels, probabilities)
    metrics = binary_metrics(labels, probabilities, threshold)
    return {"auroc": _rounded(metrics.auroc.auroc if metrics.auroc else None), "youden_threshold": round(threshold, 6),
            "accuracy": _rounded(metrics.accuracy), "sensitivity": _rounded(metrics.sensitivity),
            "specificity": _rounded(metrics.specificity), "images": int(len(labels)),
            "fractures": int(np.sum(labels))}


def _data(manifests: Path, train: Sequence[ImageRecord], validation: Sequence[ImageRecord]) -> dict[str, Any]:
    def count(records: Sequence[ImageRecord]) -> dict[str, int]:
        return {"images": len(records), "patients": len({r.patient_id for r in records}),
                "fractures": sum(int(r.label) for r in records)}

    return {"manifests": str(Path(manifests).resolve()), "train": count(train), "val": count(validation),
            "sources": sorted({r.source for r in train} | {r.source for r in validation})}


def _rounded(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def _write_run(out_dir: Path, run: dict[str, Any]) -> Path:
    path = out_dir / RUN_FILE
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    staging.replace(path)
    logger.info("training run written to %s", out_dir)
    return path
