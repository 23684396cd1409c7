"""Evaluation of a model package on scored records: per image, per view, per patient, per voting rule.

Three tables come out, in the literature's columns (AUROC with DeLong CI, accuracy, F1, sensitivity
and specificity with Wilson CIs):

- the package as the service runs it: soft vote with the manifest's weights, positive at the
  manifest's operating point for the image's body part and view;
- every voting rule and every member alone, per image: soft (equal weights), hard majority,
  unanimous, weighted by each member's accuracy, and the fixed weights 0.6 for classifiers and 0.4
  for detectors; each with Youden thresholds per body part and view chosen on a tuning set;
- the same per patient: a patient (per body part) is positive when any of their views is, and their
  score is the highest of their views' scores.

Boxes are scored by mAP@50 and mAP@50-95 on the images whose record has a boxes file.
"""
from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference.package import BODY_PARTS, VIEWS, Manifest
from inference.training.metrics import (
    BinaryMetrics,
    average_precision_for_boxes,
    binary_metrics,
    delong_auroc,
    youden_threshold,
)
from inference.training.report import markdown_table, roc_figure
from inference.training.scoring import ImageScore, ScoreTable, write_scores
from inference.training.voting import combine

logger = logging.getLogger(__name__)

RULES = ("soft", "hard", "unanimous", "weighted", "fixed")
RULE_TITLES = {
    "soft": "soft vote, equal weights",
    "hard": "hard vote, majority",
    "unanimous": "unanimous vote",
    "weighted": "soft vote weighted by member accuracy",
    "fixed": "fixed weights 0.6 classifier / 0.4 detector",
}
FIXED_WEIGHTS = {"classifier": 0.6, "detector": 0.4}
PACKAGE_ROW = "package (soft vote, manifest weights and thresholds)"

Key = tuple[str, str]


@dataclass
class Evaluation:
    """Every table of one evaluation, the ROC inputs and what a reader must know about them."""

    package: str
    tuned_on: str = "the evaluated images"
    sections: dict[str, list[tuple[str, BinaryMetrics]]] = field(default_factory=dict)
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    boxes: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Tuning:
    """Parameters chosen on the tuning set: thresholds per member and per rule and view, member accuracies."""

    member_thresholds: dict[str, float]
    member_accuracies: dict[str, float]
    rule_thresholds: dict[str, dict[Key, float]]


def evaluate(table: ScoreTable, *, tune: ScoreTable | None = None, tune_name: str = "the tuning split") -> Evaluation:
    """Measure the package and every voting rule on ``table``.

    Parameters
    ----------
    table
        Scores of the evaluated records (normally the ``test`` split).
    tune
        Scores of other records (normally ``val``) on which member thresholds, member accuracies
        and rule thresholds are chosen. When None they are chosen on ``table`` itself, which flatters
        every rule except the package row. The report notes this.
    tune_name
        How the report names the tuning set, such as ``"val"``.

    Returns
    -------
    The tables, ROC inputs, box metrics and notes.
    """
    evaluation = Evaluation(package=table.manifest.identity, tuned_on=tune_name)
    if tune is None:
        tune = table
        evaluation.tuned_on = "the evaluated images"
        evaluation.notes.append("Voting-rule thresholds, member thresholds and member accuracies were chosen on the "
                                "evaluated images themselves, so the voting-rule and member rows are optimistic. "
                                "The package rows use the manifest's thresholds.")
    tuning = _tune(tune)

    evaluation.sections["Package, per image and per view"] = _package_rows(table, evaluation)
    rule_scores = {row.title: _rule_scores(table, row, tuning) for row in _rows(table.manifest)}
    rule_decisions = {name: _decisions(table, scores, tuning.rule_thresholds[name])
                      for name, scores in rule_scores.items()}
    labels = table.labels()
    evaluation.sections["Voting rules and members, per image"] = [
        (name, _at_decisions(labels, rule_scores[name], rule_decisions[name])) for name in rule_scores
    ]
    evaluation.curves["image"] = {name: (labels, scores) for name, scores in rule_scores.items()}

    patient_rows, patient_curves = _patient_rows(table, rule_scores, rule_decisions)
    evaluation.sections["Voting rules and members, per patient (positive if any view is)"] = patient_rows
    evaluation.curves["patient"] = patient_curves
    evaluation.boxes = _box_metrics(table, evaluation)
    return evaluation


def _tune(tune: ScoreTable) -> _Tuning:
    """Choose each member's Youden threshold and accuracy, then each rule's thresholds per body part and view."""
    member_thresholds, member_accuracies = {}, {}
    for name in _fracture_members(tune.manifest):
        labels = np.array([bool(s.record.label) for s in tune.images if name in s.members])
        scores = np.array([s.members[name] for s in tune.images if name in s.members])
        threshold = _youden_or_half(labels, scores)
        member_thresholds[name] = threshold
        member_accuracies[name] = float(np.mean((scores >= threshold) == labels)) if len(labels) else 0.5

    partial = _Tuning(member_thresholds, member_accuracies, {})
    rule_thresholds = {}
    for row in _rows(tune.manifest):
        rule_thresholds[row.title] = _view_thresholds(tune, _rule_scores(tune, row, partial))
    return _Tuning(member_thresholds, member_accuracies, rule_thresholds)


@dataclass(frozen=True)
class _Row:
    """A row of the voting tables: a voting rule over the members that read each image, or one member alone."""

    title: str
    rule: str | None = None
    member: str | None = None


def _rows(manifest: Manifest) -> list[_Row]:
    return [*(_Row(RULE_TITLES[rule], rule=rule) for rule in RULES),
            *(_Row(f"member {name} alone", member=name) for name in _fracture_members(manifest))]


def _fracture_members(manifest: Manifest) -> list[str]:
    return [member.name for member in manifest.members if member.kind in ("classifier", "detector")]


def _rule_scores(table: ScoreTable, row: _Row, tuning: _Tuning) -> np.ndarray:
    """Score every image by one row; a member alone scores NaN on the images it does not read."""
    if row.member is not None:
        return np.array([score.members.get(row.member, np.nan) for score in table.images])

    scores = np.zeros(len(table.images))
    for names, indices in _groups_by_members(table.images).items():
        probabilities = np.array([[table.images[i].members[name] for name in names] for i in indices])
        kinds = [table.member(name).kind for name in names]
        scores[indices] = combine(
            row.rule, probabilities,
            weights=[FIXED_WEIGHTS[kind] / kinds.count(kind) for kind in kinds],
            thresholds=[tuning.member_thresholds.get(name, 0.5) for name in names],
            accuracies=[tuning.member_accuracies.get(name, 0.5) for name in names],
        )
    return scores


def _groups_by_members(images: Sequence[ImageScore]) -> dict[tuple[str, ...], list[int]]:
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, score in enumerate(images):
        groups[tuple(score.members)].append(index)
    return groups


def _view_thresholds(table: ScoreTable, scores: np.ndarray) -> dict[Key, float]:
    """Youden threshold per body part and view; the threshold over all images where a view lacks a class."""
    labels = table.labels()
    known = ~np.isnan(scores)
    overall = _youden_or_half(labels[known], scores[known])
    thresholds = {}
    for part in BODY_PARTS:
        for view in VIEWS:
            mask = known & np.array([s.record.body_part == part and s.record.view == view for s in table.images])
            thresholds[(part, view)] = _youden_or_half(labels[mask], scores[mask], fallback=overall)
    return thresholds


def _youden_or_half(labels: np.ndarray, scores: np.ndarray, fallback: float = 0.5) -> float:
    if len(set(labels.tolist())) < 2:
        return fallback
    return youden_threshold(labels, scores)


def _decisions(table: ScoreTable, scores: np.ndarray, thresholds: dict[Key, float]) -> np.ndarray:
    return np.array([not math.isnan(score) and score >= thresholds[(s.record.body_part, s.record.view)]
                     for s, score in zip(table.images, scores)])


def _at_decisions(labels: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> BinaryMetrics:
    """Metrics of decisions made with thresholds that differ between views: AUROC from the scores.

    The threshold column is left empty because no single threshold made the decisions.
    """
    known = ~np.isnan(scores)
    labels, scores, positive = labels[known], scores[known], positive[known]
    metrics = binary_metrics(labels, positive.astype(float), 0.5)
    both = len(set(labels.tolist())) == 2
    return replace(metrics, threshold=math.nan, auroc=delong_auroc(labels, scores) if both else None,
                   youden_threshold=youden_threshold(labels, scores) if both else None)


def _package_rows(table: ScoreTable, evaluation: Evaluation) -> list[tuple[str, BinaryMetrics]]:
    rows = [("all images", _at_decisions(table.labels(), table.ensemble(),
                                         np.array([s.positive for s in table.images])))]
    curves = {"all images": (table.labels(), table.ensemble())}
    for part in BODY_PARTS:
        for view in VIEWS:
            subset = table.subset(part, view)
            if not subset.images:
                continue
            threshold = subset.images[0].threshold
            rows.append((f"{part} {view}", binary_metrics(subset.labels(), subset.ensemble(), threshold)))
            curves[f"{part} {view}"] = (subset.labels(), subset.ensemble())

    patients = _by_patient(table.images)
    labels = np.array([any(table.images[i].record.label for i in indices) for indices in patients.values()])
    scores = np.array([max(table.images[i].ensemble for i in indices) for indices in patients.values()])
    positive = np.array([any(table.images[i].positive for i in indices) for indices in patients.values()])
    rows.append(("per patient", _at_decisions(labels, scores, positive)))
    curves["per patient"] = (labels, scores)
    evaluation.curves["package"] = curves
    return rows


def _by_patient(images: Sequence[ImageScore]) -> dict[Key, list[int]]:
    patients: dict[Key, list[int]] = defaultdict(list)
    for index, score in enumerate(images):
        patients[(score.record.patient_id, score.record.body_part)].append(index)
    return patients


def _patient_rows(table: ScoreTable, rule_scores: dict[str, np.ndarray], rule_decisions: dict[str, np.ndarray]
                  ) -> tuple[list[tuple[str, BinaryMetrics]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    patients = list(_by_patient(table.images).values())
    labels = np.array([any(table.images[i].record.label for i in indices) for indices in patients])
    rows, curves = [], {}
    for name, scores in rule_scores.items():
        patient_scores = np.array([_nanmax(scores[indices]) for indices in patients])
        positive = np.array([bool(np.any(rule_decisions[name][indices])) for indices in patients])
        rows.append((name, _at_decisions(labels, patient_scores, positive)))
        curves[name] = (labels, patient_scores)
    return rows, curves


def _nanmax(values: np.ndarray) -> float:
    known = values[~np.isnan(values)]
    return float(known.max()) if len(known) else math.nan


def _box_metrics(table: ScoreTable, evaluation: Evaluation) -> dict[str, Any] | None:
    boxed = [score for score in table.images if score.record.boxes_file]
    if not boxed or not any(member.kind == "detector" for member in table.manifest.members):
        evaluation.notes.append("Box metrics: no evaluated image has a boxes file, or the package has no detector.")
        return None

    predictions = [[(box.label, box.confidence, box.x0, box.y0, box.x1, box.y1) for box in score.boxes]
                   for score in boxed]
    truths = [list(score.truth) for score in boxed]
    evaluation.notes.append(f"Box metrics on the {len(boxed)} images whose record has a boxes file; detector boxes "
                            "below the member's box_threshold were never produced, which caps recall.")
    return average_precision_for_boxes(predictions, truths)


def write_report(evaluation: Evaluation, table: ScoreTable, out_dir: Path, *, title: str | None = None) -> Path:
    """Write ``evaluation.md``, ``evaluation.json``, ROC plots and ``scores.csv`` into ``out_dir``.

    Returns the path of ``evaluation.md``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "roc_package.png": ("package", f"{evaluation.package}: ensemble with the manifest's weights"),
        "roc_image.png": ("image", "voting rules and members, per image"),
        "roc_patient.png": ("patient", "voting rules and members, per patient"),
    }
    for name, (key, figure_title) in figures.items():
        known = {label: _known(curve) for label, curve in evaluation.curves.get(key, {}).items()}
        curves = {label: curve for label, curve in known.items() if len(set(curve[0].tolist())) == 2}
        if curves:
            roc_figure(curves, out_dir / name, figure_title)

    write_scores(table, out_dir / "scores.csv")
    (out_dir / "evaluation.json").write_text(json.dumps(_as_json(evaluation), indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    report = out_dir / "evaluation.md"
    report.write_text(_markdown(evaluation, title, [name for name in figures if (out_dir / name).is_file()]),
                      encoding="utf-8")
    logger.info("evaluation of %s written to %s", evaluation.package, out_dir)
    return report


def _known(curve: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the images that the curve's member or rule scored: a member alone reads only its body part."""
    labels, scores = curve
    known = ~np.isnan(scores)
    return labels[known], scores[known]


def _markdown(evaluation: Evaluation, title: str | None, figures: Sequence[str]) -> str:
    lines = [f"# {title or 'Evaluation of ' + evaluation.package}", ""]
    for section, rows in evaluation.sections.items():
        lines += [f"## {section}", "", _section_intro(section, evaluation.tuned_on), "", markdown_table(rows)]
    if evaluation.boxes is not None:
        lines += ["## Boxes", "", "| Class | AP@50 | AP@50-95 |", "|---|---:|---:|"]
        for label, values in evaluation.boxes.get("per_class", {}).items():
            lines.append(f"| {label} | {_number(values.get('ap50'))} | {_number(values.get('ap50_95'))} |")
        lines += [f"| **mean** | {_number(evaluation.boxes.get('map50'))} | "
                  f"{_number(evaluation.boxes.get('map50_95'))} |", ""]
    if figures:
        lines += ["## ROC curves", "", *(f"![{name}]({name})" for name in figures), ""]
    if evaluation.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in evaluation.notes), ""]
    return "\n".join(lines)


def _section_intro(section: str, tuned_on: str) -> str:
    if section.startswith("Package"):
        return ("Soft vote with the manifest's weights; each view's threshold is the manifest's operating point. "
                "A patient is positive when any view is; the patient's score is the highest view score.")
    return (f"Each rule's threshold is its Youden threshold per body part and view on {tuned_on}, so the Threshold "
            "column is empty; member thresholds and accuracies (for the hard, unanimous and weighted votes) come "
            "from the same images.")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _as_json(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "package": evaluation.package,
        "sections": {section: {name: metrics.as_dict() for name, metrics in rows}
                     for section, rows in evaluation.sections.items()},
        "boxes": evaluation.boxes,
        "notes": evaluation.notes,
    }


def summary_metrics(evaluation: Evaluation, prefix: str = "test") -> dict[str, float | int | str]:
    """Flatten the package rows into manifest metrics such as ``test_auroc_wrist_AP``."""
    metrics: dict[str, float | int | str] = {}
    for name, row in evaluation.sections.get("Package, per image and per view", []):
        key = name.replace(" ", "_")
        values = row.as_dict()
        for metric in ("auroc", "auroc_lower", "auroc_upper", "sensitivity", "sensitivity_lower", "sensitivity_upper",
                       "specificity", "specificity_lower", "specificity_upper", "accuracy", "f1"):
            if values.get(metric) is not None:
                metrics[f"{prefix}_{metric}_{key}"] = values[metric]
        unit = "patients" if name == "per patient" else "images"
        metrics[f"{prefix}_{unit}_{key}"] = row.n
        metrics[f"{prefix}_fracture_{unit}_{key}"] = row.positives
    if evaluation.boxes and evaluation.boxes.get("map50") is not None:
        metrics[f"{prefix}_map50"] = round(float(evaluation.boxes["map50"]), 4)
        metrics[f"{prefix}_map50_95"] = round(float(evaluation.boxes["map50_95"]), 4)
    return metrics

