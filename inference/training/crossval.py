"""Cross-validation of a classifier by patient: k folds, each held out once, metrics as mean and spread.

The pool is the ``train`` and ``val`` splits of one body part; the ``test`` split is never touched,
so it stays an untouched final check. For each fold:

1. the held-out patients are the fold's test set;
2. the other patients are split 8:2 by patient into training and early-stopping validation;
3. a classifier trains from scratch with the same configuration and seed;
4. its threshold is the Youden index on the early-stopping validation patients, and the held-out
   patients give AUROC (DeLong CI), accuracy, F1, sensitivity and specificity at that threshold.

Every image is preprocessed once, so the k runs cost k trainings and not k loads of the data.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.package import VIEWS
from inference.training.classifier import ClassifierConfig, PreparedSet, predict_prepared, train_prepared
from inference.training.metrics import BinaryMetrics, binary_metrics, youden_threshold
from inference.training.records import ImageRecord
from inference.training.report import markdown_table, roc_figure
from inference.training.runs import prepare_records, select
from inference.training.splits import patient_folds

logger = logging.getLogger(__name__)

SUMMARISED = ("auroc", "accuracy", "f1", "sensitivity", "specificity")


@dataclass(frozen=True)
class FoldResult:
    """One fold: its sizes, the chosen threshold, the held-out metrics and its training history."""

    fold: int
    train_images: int
    validation_images: int
    held_out_images: int
    held_out_patients: int
    best_epoch: int
    metrics: BinaryMetrics
    labels: np.ndarray
    probabilities: np.ndarray


def cross_validate(
    manifests: Path,
    out_dir: Path,
    *,
    body_part: str,
    views: Sequence[str] = VIEWS,
    config: ClassifierConfig = ClassifierConfig(),
    folds: int = 5,
    use_boxes: bool = True,
) -> Path:
    """Run k-fold cross-validation by patient and write ``crossval.json``, ``crossval.md`` and ``roc_folds.png``.

    Returns
    -------
    The path of ``crossval.md``.
    """
    started = time.monotonic()
    pool = select(manifests, "train", body_part, views) + select(manifests, "val", body_part, views)
    logger.info("cross-validation of %s on %s %s: %d images, %d folds", config.architecture, body_part,
                "/".join(views), len(pool), folds)
    prepared = prepare_records(pool, config.input_size, with_masks=use_boxes, description="cross-validation inputs")
    position = {record.image_path: index for index, record in enumerate(pool)}
    if len(position) != len(pool):
        raise ValueError("the train and val manifests list some image twice")

    results = []
    for number, (train_val, held_out) in enumerate(patient_folds(pool, folds=folds, seed=config.seed), start=1):
        results.append(_run_fold(number, train_val, held_out, prepared, position, config))

    summary = summarise(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "crossval.json", results, summary, config, body_part, views, folds,
                time.monotonic() - started)
    roc_figure({f"fold {r.fold}": (r.labels, r.probabilities) for r in results if len(set(r.labels.tolist())) == 2},
               out_dir / "roc_folds.png", f"{config.architecture}, {body_part}: {folds}-fold cross-validation")
    report = out_dir / "crossval.md"
    report.write_text(_markdown(results, summary, config, body_part, views), encoding="utf-8")
    logger.info("cross-validation done in %.0f s: AUROC %.3f +/- %.3f", time.monotonic() - started,
                summary["auroc"]["mean"], summary["auroc"]["sd"])
    return report


def _run_fold(number: int, train_val: Sequence[ImageRecord], held_out: Sequence[ImageRecord], prepared: PreparedSet,
              position: dict[str, int], config: ClassifierConfig) -> FoldResult:
    inner_train, inner_validation = patient_folds(list(train_val), folds=5, seed=config.seed + number)[0]
    train = _take(prepared, [position[r.image_path] for r in inner_train])
    validation = _take(prepared, [position[r.image_path] for r in inner_validation], masks=False)
    test = _take(prepared, [position[r.image_path] for r in held_out], masks=False)

    result = train_prepared(train, validation, config)
    threshold = youden_threshold(validation.labels, predict_prepared(result.model, validation, config))
    probabilities = predict_prepared(result.model, test, config)
    metrics = binary_metrics(test.labels, probabilities, threshold)
    logger.info("fold %d: %d training, %d validation, %d held-out images; held-out AUROC %s", number, len(train),
                len(validation), len(test), f"{metrics.auroc.auroc:.3f}" if metrics.auroc else "undefined")
    return FoldResult(fold=number, train_images=len(train), validation_images=len(validation),
                      held_out_images=len(test), held_out_patients=len({r.patient_id for r in held_out}),
                      best_epoch=result.best_epoch, metrics=metrics, labels=test.labels, probabilities=probabilities)


def _take(prepared: PreparedSet, indices: list[int], *, masks: bool = True) -> PreparedSet:
    chosen = np.asarray(indices, dtype=int)
    kept_masks = prepared.masks[chosen] if masks and prepared.masks is not None else None
    return PreparedSet(inputs=prepared.inputs[chosen], labels=prepared.labels[chosen], masks=kept_masks)


def summarise(results: Sequence[FoldResult]) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation, minimum and maximum of each metric over the folds.

    A fold where a metric is undefined (a held-out set without one class) is left out of that
    metric's summary; ``folds`` is the number of folds each summary covers.
    """
    summary = {}
    for name in SUMMARISED:
        values = np.array([v for v in (_value(r.metrics, name) for r in results) if v is not None and math.isfinite(v)])
        summary[name] = {
            "mean": float(values.mean()) if len(values) else math.nan,
            "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "min": float(values.min()) if len(values) else math.nan,
            "max": float(values.max()) if len(values) else math.nan,
            "folds": int(len(values)),
        }
    return summary


def _value(metrics: BinaryMetrics, name: str) -> float | None:
    if name == "auroc":
        return metrics.auroc.auroc if metrics.auroc else None
    return float(getattr(metrics, name))


def _write_json(path: Path, results: Sequence[FoldResult], summary: dict[str, dict[str, float]],
                config: ClassifierConfig, body_part: str, views: Sequence[str], folds: int, seconds: float) -> None:
    document: dict[str, Any] = {
        "body_part": body_part, "views": list(views), "folds": folds, "config": asdict(config),
        "seconds": round(seconds, 1),
        "summary": {name: {key: _json(value) for key, value in values.items()} for name, values in summary.items()},
        "per_fold": [{"fold": r.fold, "train_images": r.train_images, "validation_images": r.validation_images,
                      "held_out_images": r.held_out_images, "held_out_patients": r.held_out_patients,
                      "best_epoch": r.best_epoch, **r.metrics.as_dict()} for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _json(value: float) -> float | int | None:
    if isinstance(value, int):
        return value
    return None if not math.isfinite(value) else round(value, 4)


def _markdown(results: Sequence[FoldResult], summary: dict[str, dict[str, float]], config: ClassifierConfig,
              body_part: str, views: Sequence[str]) -> str:
    def spread(name: str) -> str:
        values = summary[name]
        if not values["folds"]:
            return "–"
        sd = "–" if math.isnan(values["sd"]) else f"{values['sd']:.3f}"
        return f"{values['mean']:.3f} ± {sd} ({values['min']:.3f}–{values['max']:.3f})"

    lines = [
        f"# {len(results)}-fold cross-validation by patient: {config.architecture}, {body_part} "
        f"{'/'.join(views)}, {config.input_size} px",
        "",
        "Each fold's threshold is the Youden index on its own early-stopping validation patients.",
        "",
        markdown_table([(f"fold {r.fold}", r.metrics) for r in results]),
        "| Metric | mean ± SD (min–max) | folds |",
        "|---|---:|---:|",
        *(f"| {name} | {spread(name)} | {summary[name]['folds']} |" for name in SUMMARISED),
        "",
        "![ROC per fold](roc_folds.png)",
        "",
    ]
    return "\n".join(lines)
