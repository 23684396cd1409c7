"""Evaluation report pieces: a ROC plot as PNG and a Markdown table of the metrics.

The table has the columns that fracture detection papers report: AUROC, accuracy, F1,
sensitivity and specificity, with 95% intervals where :mod:`inference.training.metrics` gives one.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from inference.training.metrics import BinaryMetrics, delong_auroc

logger = logging.getLogger(__name__)

MISSING = "–"
TABLE_HEADER = "| Model | AUROC (95% CI) | ACC (95% CI) | F1 | Sens (95% CI) | Spec (95% CI) | Threshold | n (pos/neg) |"
TABLE_ALIGNMENT = "|---|---:|---:|---:|---:|---:|---:|---:|"


def roc_figure(
    curves: Mapping[str, tuple[Sequence[bool] | np.ndarray, Sequence[float] | np.ndarray]],
    path: Path,
    title: str,
    *,
    size_inches: float = 6.0,
    dpi: int = 100,
) -> Path:
    """Draw one ROC curve per entry of ``curves``, with its AUROC in the legend, and save it as PNG.

    The figure is drawn on its own Agg canvas, so no pyplot state or display is involved.

    Parameters
    ----------
    curves
        Curve name, such as a voting rule, mapped to the labels and scores of the same cases.
    path
        PNG file to write; missing parent folders are created.
    title
        Figure title.
    size_inches, dpi
        The square figure is ``round(size_inches * dpi)`` pixels wide and high.

    Returns
    -------
    ``path``.

    Raises
    ------
    ValueError
        When ``curves`` is empty, or a curve's labels lack a class.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("roc_figure needs at least one curve")

    figure = Figure(figsize=(size_inches, size_inches), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, (labels, scores) in curves.items():
        try:
            estimate = delong_auroc(labels, scores)
        except ValueError as error:
            raise ValueError(f"ROC curve {name!r}: {error}") from error
        false_positive_rate, true_positive_rate, _ = roc_curve(np.asarray(labels, dtype=bool), np.asarray(scores))
        axes.plot(false_positive_rate, true_positive_rate, linewidth=1.5, label=f"{name} (AUROC {estimate.auroc:.3f})")

    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity", title=title)
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    logger.info("ROC plot of %d curves written to %s", len(curves), path)
    return path


def markdown_table(rows: Sequence[tuple[str, BinaryMetrics]]) -> str:
    """Format metrics as a Markdown table, one row per model or voting rule, values to 3 decimals.

    The columns are ``| Model | AUROC (95% CI) | ACC (95% CI) | F1 | Sens (95% CI) | Spec (95% CI) |
    Threshold | n (pos/neg) |``. A missing or undefined value is shown as an en dash; so is F1 when
    there is neither a true case nor a positive decision.
    """
    lines = [TABLE_HEADER, TABLE_ALIGNMENT]
    for name, metrics in rows:
        auroc = metrics.auroc
        cells = [
            name.replace("|", "\\|"),
            _with_interval(auroc.auroc, (auroc.lower, auroc.upper)) if auroc else MISSING,
            _with_interval(metrics.accuracy, metrics.accuracy_ci),
            _decimal(metrics.f1) if metrics.positives or metrics.tp + metrics.fp else MISSING,
            _with_interval(metrics.sensitivity, metrics.sensitivity_ci),
            _with_interval(metrics.specificity, metrics.specificity_ci),
            _decimal(metrics.threshold),
            f"{metrics.n} ({metrics.positives}/{metrics.negatives})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _decimal(value: float | None) -> str:
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:.3f}"


def _with_interval(value: float, interval: tuple[float, float]) -> str:
    if math.isnan(value):
        return MISSING
    lower, upper = interval
    if math.isnan(lower) or math.isnan(upper):
        return f"{value:.3f} ({MISSING})"
    return f"{value:.3f} ({lower:.3f}–{upper:.3f})"
