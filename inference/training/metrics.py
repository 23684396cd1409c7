"""Evaluation metrics of a fracture model: AUROC with DeLong intervals, Wilson intervals, box mAP.

A score at or above the threshold is positive everywhere in this module, as in
:func:`sklearn.metrics.roc_curve`. Labels are booleans or 0/1, with 1 for a fracture.

References
----------
- DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated
  receiver operating characteristic curves: a nonparametric approach. Biometrics 1988;44:837-845.
- Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the areas under correlated
  receiver operating characteristic curves. IEEE Signal Processing Letters, 2014.
- Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of seven
  methods. Statistics in Medicine 1998;17:857-872.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_curve

logger = logging.getLogger(__name__)

# (label, confidence, x0, y0, x1, y1) of a predicted box and (label, x0, y0, x1, y1) of a true box.
PredictedBox = tuple[str, float, float, float, float, float]
TrueBox = tuple[str, float, float, float, float]

# The ten IoU thresholds 0.50, 0.55, ..., 0.95 of COCO's mAP@50-95.
COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * step, 2) for step in range(10))
PLACEMENT_METHODS = ("midrank", "pairwise")


@dataclass(frozen=True)
class AurocEstimate:
    """An AUROC with its DeLong variance and confidence interval, clipped to [0, 1].

    ``variance``, ``lower`` and ``upper`` are NaN when a class has a single case, because the
    variance of its placement values needs at least two.
    """

    auroc: float
    variance: float
    lower: float
    upper: float
    positives: int
    negatives: int
    confidence: float = 0.95


@dataclass(frozen=True)
class BinaryMetrics:
    """Counts and rates of a binary decision ``score >= threshold`` on labelled cases.

    Each ``*_ci`` is a Wilson score interval. A rate whose denominator is zero is NaN, and so is
    its interval. ``auroc`` and ``youden_threshold`` are None unless both classes are present.
    """

    n: int
    positives: int
    negatives: int
    tp: int
    fp: int
    tn: int
    fn: int
    threshold: float
    accuracy: float
    accuracy_ci: tuple[float, float]
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    specificity: float
    specificity_ci: tuple[float, float]
    f1: float
    auroc: AurocEstimate | None
    youden_threshold: float | None

    def as_dict(self) -> dict[str, int | float | None]:
        """Flatten into JSON-friendly values: floats rounded to 4 decimals, NaN and missing as None."""
        values: dict[str, Any] = {
            key: getattr(self, key) for key in ("n", "positives", "negatives", "tp", "fp", "tn", "fn", "threshold")
        }
        for rate in ("accuracy", "sensitivity", "specificity"):
            lower, upper = getattr(self, f"{rate}_ci")
            values[rate] = getattr(self, rate)
            values[f"{rate}_lower"] = lower
            values[f"{rate}_upper"] = upper
        values["f1"] = self.f1

        auroc = self.auroc
        values["auroc"] = auroc.auroc if auroc else None
        values["auroc_lower"] = auroc.lower if auroc else None
        values["auroc_upper"] = auroc.upper if auroc else None
        values["youden_threshold"] = self.youden_threshold
        return {key: _json_number(value) for key, value in values.items()}


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Compute the Wilson score interval of a proportion, without continuity correction.

    This is method 3 of Newcombe (1998). The bounds stay inside [0, 1], and a proportion of 0 or 1
    gets a lower bound of exactly 0 or an upper bound of exactly 1.

    Parameters
    ----------
    successes
        Number of successes, from 0 to ``total``.
    total
        Number of trials. With 0 trials the proportion is undefined and ``(nan, nan)`` is returned,
        so that a rate with no cases (sensitivity without positives) keeps a NaN interval.
    confidence
        Two-sided coverage, strictly between 0 and 1.

    Returns
    -------
    The lower and upper bounds.

    Raises
    ------
    ValueError
        When ``total`` is negative or ``successes`` is outside [0, total].
    """
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"wilson_interval needs 0 <= successes <= total, found successes={successes}, total={total}")
    z = _normal_quantile(confidence)
    if total == 0:
        return math.nan, math.nan

    proportion = successes / total
    z_squared_over_n = z * z / total
    centre = (proportion + z_squared_over_n / 2) / (1 + z_squared_over_n)
    half_width = z / (1 + z_squared_over_n) * math.sqrt(proportion * (1 - proportion) / total + z_squared_over_n / (4 * total))

    lower = 0.0 if successes == 0 else max(0.0, centre - half_width)
    upper = 1.0 if successes == total else min(1.0, centre + half_width)
    return lower, upper


def placement_values(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray, *,
                     method: str = "midrank") -> tuple[np.ndarray, np.ndarray]:
    """Compute DeLong's placement values (structural components) of every positive and negative.

    ``V10[i]`` is the fraction of negatives that positive ``i`` outscores, and ``V01[j]`` the
    fraction of positives that outscore negative ``j``. A tie counts 1/2. Both have the AUROC as
    their mean.

    Parameters
    ----------
    labels, scores
        One label and one score per case.
    method
        ``"midrank"`` for the O(n log n) algorithm of Sun and Xu (2014), ``"pairwise"`` for the
        O(m n) comparison of every positive with every negative. Both give the same values.

    Returns
    -------
    ``(V10, V01)``: one value per positive, in case order, and one per negative.

    Raises
    ------
    ValueError
        When the inputs are invalid, a class is missing or ``method`` is unknown.
    """
    truth, values = _binary_inputs(labels, scores)
    _require_both_classes(truth)
    positives, negatives = values[truth], values[~truth]

    if method == "midrank":
        # Sun and Xu (2014): the midrank of a positive among all cases minus its midrank among the
        # positives counts the negatives below it, with ties counted 1/2.
        all_ranks = rankdata(values, method="average")
        v10 = (all_ranks[truth] - rankdata(positives, method="average")) / negatives.size
        v01 = 1.0 - (all_ranks[~truth] - rankdata(negatives, method="average")) / positives.size
        return v10, v01

    if method == "pairwise":
        kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
        return kernel.mean(axis=1), kernel.mean(axis=0)

    raise ValueError(f"unknown placement method {method!r}. Use one of {PLACEMENT_METHODS}")


def delong_auroc(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray,
                 confidence: float = 0.95) -> AurocEstimate:
    """Compute the AUROC with DeLong's variance and a Wald confidence interval.

    ``S10`` and ``S01`` are the sample variances (denominators m - 1 and n - 1) of the placement
    values V10 of the m positives and V01 of the n negatives. The variance of the AUROC is
    ``S10 / m + S01 / n``, and the interval is ``auroc ± z * sqrt(variance)``, clipped to [0, 1].

    Parameters
    ----------
    labels, scores
        One label and one score per case.
    confidence
        Two-sided coverage of the interval, strictly between 0 and 1.

    Returns
    -------
    The estimate. Its variance and interval are NaN when a class has a single case.

    Raises
    ------
    ValueError
        When the inputs are invalid or a class is missing.
    """
    z = _normal_quantile(confidence)
    v10, v01 = placement_values(labels, scores)
    auroc = float(v10.mean())

    if v10.size < 2 or v01.size < 2:
        # NOTE: DeLong's variance is undefined with a single case in a class, so only the AUROC is returned.
        variance = math.nan
    else:
        variance = float(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size)

    half_width = z * math.sqrt(variance) if variance >= 0 else math.nan
    return AurocEstimate(
        auroc=auroc,
        variance=variance,
        lower=max(0.0, auroc - half_width) if not math.isnan(half_width) else math.nan,
        upper=min(1.0, auroc + half_width) if not math.isnan(half_width) else math.nan,
        positives=int(v10.size),
        negatives=int(v01.size),
        confidence=confidence,
    )


def delong_test(labels: Sequence[bool] | np.ndarray, scores_a: Sequence[float] | np.ndarray,
                scores_b: Sequence[float] | np.ndarray) -> float:
    """Compute the two-sided p-value of DeLong's test that two paired AUROCs are equal.

    Both score sets belong to the same cases, so the variance of the difference subtracts the
    covariance of their placement values:
    ``var(A - B) = (S10_aa + S10_bb - 2 S10_ab) / m + (S01_aa + S01_bb - 2 S01_ab) / n``.

    Parameters
    ----------
    labels
        One label per case.
    scores_a, scores_b
        Two scores per case, such as two voting rules on the same images.

    Returns
    -------
    The p-value of ``z = (AUROC_a - AUROC_b) / sqrt(var(A - B))`` under the standard normal. When
    that variance is zero, it is 1.0 for equal AUROCs and 0.0 otherwise.

    Raises
    ------
    ValueError
        When the inputs are invalid, the score sets differ in length, a class is missing, or a
        class has fewer than two cases.
    """
    if len(scores_a) != len(scores_b):
        raise ValueError(f"delong_test needs two score sets of equal length, found {len(scores_a)} and {len(scores_b)}")
    v10_a, v01_a = placement_values(labels, scores_a)
    v10_b, v01_b = placement_values(labels, scores_b)
    if v10_a.size < 2 or v01_a.size < 2:
        raise ValueError(
            f"delong_test needs at least 2 positives and 2 negatives, found {v10_a.size} and {v01_a.size}"
        )

    s10 = np.cov(np.vstack([v10_a, v10_b]), ddof=1)
    s01 = np.cov(np.vstack([v01_a, v01_b]), ddof=1)
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / v10_a.size + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / v01_a.size
    difference = float(v10_a.mean() - v10_b.mean())

    # Rounding can leave a tiny negative variance when the two score sets rank the cases alike.
    if variance <= 1e-15:
        return 1.0 if abs(difference) <= 1e-12 else 0.0
    z = difference / math.sqrt(variance)
    return float(2 * norm.sf(abs(z)))


def youden_threshold(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Find the threshold that maximises sensitivity + specificity - 1 (Youden's J), clipped to [0, 1].

    Among equal maxima the highest threshold wins. When no threshold beats chance, the result is
    the threshold above every score, which clips to 1.0.

    Raises
    ------
    ValueError
        When the inputs are invalid or a class is missing.
    """
    truth, values = _binary_inputs(labels, scores)
    _require_both_classes(truth)
    fpr, tpr, thresholds = roc_curve(truth, values, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def binary_metrics(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float,
                   confidence: float = 0.95) -> BinaryMetrics:
    """Count the decisions ``score >= threshold`` and compute their rates with Wilson intervals.

    Parameters
    ----------
    labels, scores
        One label and one score per case.
    threshold
        Operating threshold; a score at or above it is positive.
    confidence
        Two-sided coverage of the Wilson and DeLong intervals.

    Returns
    -------
    The metrics. F1 is ``2 TP / (2 TP + FP + FN)``, NaN when that denominator is zero. AUROC and
    the Youden threshold are None when a class is missing.

    Raises
    ------
    ValueError
        When the inputs are invalid or ``threshold`` is not a finite number.
    """
    truth, values = _binary_inputs(labels, scores)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, found {threshold}")
    predicted = values >= threshold

    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    tn = int(np.sum(~predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    positives, negatives, n = tp + fn, tn + fp, truth.size

    both_classes = positives > 0 and negatives > 0
    return BinaryMetrics(
        n=n, positives=positives, negatives=negatives, tp=tp, fp=fp, tn=tn, fn=fn, threshold=float(threshold),
        accuracy=_ratio(tp + tn, n),
        accuracy_ci=wilson_interval(tp + tn, n, confidence),
        sensitivity=_ratio(tp, positives),
        sensitivity_ci=wilson_interval(tp, positives, confidence),
        specificity=_ratio(tn, negatives),
        specificity_ci=wilson_interval(tn, negatives, confidence),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        auroc=delong_auroc(truth, values, confidence) if both_classes else None,
        youden_threshold=youden_threshold(truth, values) if both_classes else None,
    )


def average_precision_for_boxes(
    predictions: Sequence[Sequence[PredictedBox]],
    truths: Sequence[Sequence[TrueBox]],
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    *,
    config_dir: Path | None = None,
) -> dict[str, Any]:
    """Compute the average precision of predicted boxes per class, and mAP@50 and mAP@50-95.

    Predictions are matched to true boxes of the same class and image greedily, in descending
    confidence, each taking the unclaimed true box of highest IoU when that IoU reaches the
    threshold. This is the rule of ultralytics 8.4.190's validator. The AP is ultralytics'
    ``ap_per_class``, which integrates the precision envelope at 101 recall points with the
    trapezoid rule, so one perfect detection scores 0.995, not 1.0.

    Parameters
    ----------
    predictions
        Per image, the predicted boxes as ``(label, confidence, x0, y0, x1, y1)``.
    truths
        Per image, in the same order, the true boxes as ``(label, x0, y0, x1, y1)``.
    iou_thresholds
        IoU thresholds. They must include 0.5, for mAP@50. ``map50_95`` is the mean AP over all
        of them, which is mAP@50-95 with the default thresholds 0.50, 0.55, ..., 0.95.
    config_dir
        Settings folder for ultralytics; :func:`inference.offline.default_config_dir` when None.

    Returns
    -------
    ``{"map50", "map50_95", "per_class": {label: {"ap50", "ap50_95"}}, "images", "boxes"}``.
    Classes without a true box are left out of the per-class results and the means. With no true
    box at all, both means are None.

    Raises
    ------
    ValueError
        When the image counts differ, a box is malformed, or the thresholds are invalid.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"predictions cover {len(predictions)} images but truths cover {len(truths)}")
    thresholds = _iou_thresholds(iou_thresholds)
    column_50 = int(np.flatnonzero(np.isclose(thresholds, 0.5))[0])
    for image_predictions, image_truths in zip(predictions, truths, strict=True):
        _check_boxes(image_predictions, image_truths)

    labels = sorted({box[0] for image in truths for box in image} | {box[0] for image in predictions for box in image})
    class_index = {label: index for index, label in enumerate(labels)}
    correct, confidences, predicted_classes, true_classes = _match_all(predictions, truths, class_index, thresholds,
                                                                       config_dir)
    result: dict[str, Any] = {"map50": None, "map50_95": None, "per_class": {}, "images": len(truths),
                              "boxes": int(true_classes.size)}
    if true_classes.size == 0:
        return result

    from ultralytics.utils.metrics import ap_per_class

    ap, classes = ap_per_class(correct, confidences, predicted_classes, true_classes)[5:7]
    for row, index in enumerate(classes):
        result["per_class"][labels[int(index)]] = {"ap50": float(ap[row, column_50]), "ap50_95": float(ap[row].mean())}
    result["map50"] = float(ap[:, column_50].mean())
    result["map50_95"] = float(ap.mean())
    logger.debug("box AP on %d images, %d true boxes: mAP@50 %.4f", len(truths), true_classes.size, result["map50"])
    return result


def _match_all(predictions: Sequence[Sequence[PredictedBox]], truths: Sequence[Sequence[TrueBox]],
               class_index: dict[str, int], thresholds: np.ndarray,
               config_dir: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from inference.offline import configure_ultralytics_offline, default_config_dir

    configure_ultralytics_offline(config_dir or default_config_dir())
    import torch
    from ultralytics.utils.metrics import box_iou

    correct, confidences, predicted_classes, true_classes = [], [], [], []
    for image_predictions, image_truths in zip(predictions, truths, strict=True):
        order = sorted(range(len(image_predictions)), key=lambda index: -image_predictions[index][1])
        ranked = [image_predictions[index] for index in order]
        pred_classes = np.array([class_index[box[0]] for box in ranked], dtype=np.int64)
        truth_classes = np.array([class_index[box[0]] for box in image_truths], dtype=np.int64)

        iou = box_iou(torch.tensor([box[1:] for box in image_truths], dtype=torch.float64).reshape(-1, 4),
                      torch.tensor([box[2:] for box in ranked], dtype=torch.float64).reshape(-1, 4)).numpy()
        correct.append(_match_image(truth_classes, pred_classes, iou, thresholds))
        confidences.append(np.array([box[1] for box in ranked], dtype=np.float64))
        predicted_classes.append(pred_classes)
        true_classes.append(truth_classes)

    return (np.concatenate(correct).astype(np.float64) if correct else np.zeros((0, thresholds.size)),
            np.concatenate(confidences) if confidences else np.zeros(0),
            np.concatenate(predicted_classes) if predicted_classes else np.zeros(0, dtype=np.int64),
            np.concatenate(true_classes) if true_classes else np.zeros(0, dtype=np.int64))


def _match_image(truth_classes: np.ndarray, pred_classes: np.ndarray, iou: np.ndarray,
                 thresholds: np.ndarray) -> np.ndarray:
    """Mark each prediction, ranked by descending confidence, as a true positive at each IoU threshold."""
    correct = np.zeros((pred_classes.size, thresholds.size), dtype=bool)
    if truth_classes.size == 0 or pred_classes.size == 0:
        return correct
    same_class_iou = np.where(truth_classes[:, None] == pred_classes[None, :], iou, 0.0)

    for column, threshold in enumerate(thresholds):
        claimed = np.zeros(truth_classes.size, dtype=bool)
        for prediction in range(pred_classes.size):
            available = np.where(claimed, -1.0, same_class_iou[:, prediction])
            best = int(np.argmax(available))
            if available[best] >= threshold:
                correct[prediction, column] = True
                claimed[best] = True
    return correct


def _check_boxes(image_predictions: Sequence[PredictedBox], image_truths: Sequence[TrueBox]) -> None:
    for box in image_predictions:
        if len(box) != 6:
            raise ValueError(f"a predicted box must be (label, confidence, x0, y0, x1, y1), found {box!r}")
        if not 0.0 <= box[1] <= 1.0:
            raise ValueError(f"box confidence must be in [0, 1], found {box[1]} in {box!r}")
    for box in image_truths:
        if len(box) != 5:
            raise ValueError(f"a true box must be (label, x0, y0, x1, y1), found {box!r}")
    for box in [*(box[2:] for box in image_predictions), *(box[1:] for box in image_truths)]:
        x0, y0, x1, y1 = box
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"box corners must satisfy x0 < x1 and y0 < y1, found {tuple(box)}")


def _iou_thresholds(iou_thresholds: Sequence[float]) -> np.ndarray:
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0 or not np.all((thresholds > 0) & (thresholds <= 1)):
        raise ValueError(f"iou_thresholds must be a non-empty list of values in (0, 1], found {iou_thresholds!r}")
    if not np.any(np.isclose(thresholds, 0.5)):
        raise ValueError(f"iou_thresholds must include 0.5 for mAP@50, found {iou_thresholds!r}")
    return thresholds


def _binary_inputs(labels: Sequence[bool] | np.ndarray,
                   scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    raw_labels = np.asarray(labels)
    values = np.asarray(scores, dtype=np.float64)
    if raw_labels.ndim != 1 or values.ndim != 1 or raw_labels.size != values.size:
        raise ValueError(f"labels and scores must be 1-D of equal length, found shapes {raw_labels.shape} and {values.shape}")
    if raw_labels.size == 0:
        raise ValueError("labels and scores are empty, but at least one case is needed")
    if not np.all((raw_labels == 0) | (raw_labels == 1)):
        raise ValueError(f"labels must be booleans or 0/1, found values {np.unique(raw_labels)[:5].tolist()}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"scores must be finite, found {int(np.sum(~np.isfinite(values)))} NaN or infinite values")
    return raw_labels.astype(bool), values


def _require_both_classes(truth: np.ndarray) -> None:
    positives = int(truth.sum())
    if positives == 0 or positives == truth.size:
        raise ValueError(
            f"AUROC needs both classes, found {positives} positives and {truth.size - positives} negatives"
        )


def _normal_quantile(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, found {confidence}")
    return float(norm.ppf(0.5 + confidence / 2))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _json_number(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value

