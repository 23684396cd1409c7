"""Assembly of a model package from training runs: members, operating points, metrics, data description.

The steps:

1. turn each run folder (see :mod:`inference.training.runs`) into a package member with its
   soft-voting weight;
2. write a provisional package and score the ``val`` split with it, as the service would;
3. choose the ensemble's operating point per body part and view at the Youden index on ``val``;
4. write the final package; when the manifests have a ``test`` split, score and evaluate it and put
   the test metrics into the manifest.

The package records what it was trained on (the manifests' ``index.json`` and each run's data
counts), each member's validation accuracy (for the weighted voting rule) and every metric measured.
"""
from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

from inference.package import BODY_PARTS, VIEWS, Manifest, OperatingPoint, verify_package
from inference.training.evaluation import evaluate, summary_metrics, write_report
from inference.training.manifests import read_manifests
from inference.training.metrics import youden_threshold
from inference.training.packaging import PackageMember, write_package
from inference.training.records import ImageRecord
from inference.training.runs import read_run
from inference.training.scoring import ScoreTable, score_records

logger = logging.getLogger(__name__)

DEFAULT_CLASSIFIER_WEIGHT = 0.6
DEFAULT_DETECTOR_WEIGHT = 0.4
DEFAULT_INTENDED_USE = (
    "Second reader for pediatric elbow and wrist radiographs (AP and lateral). Not for diagnosis alone: "
    "a physician reads every image. Validated only on the data the metrics name."
)


@dataclass(frozen=True)
class PackageSpec:
    """Name, version, voting weights and box thresholds of the package that ``pedfrac package`` builds.

    ``classifier_weight`` and ``detector_weight`` are the soft-voting weights of every classifier
    and every detector. ``box_threshold`` keeps detector boxes from that confidence on (the
    high-sensitivity tier), and ``box_threshold_high_specificity`` marks the high-specificity tier.
    """

    name: str
    version: str
    intended_use: str = DEFAULT_INTENDED_USE
    classifier_weight: float = DEFAULT_CLASSIFIER_WEIGHT
    detector_weight: float = DEFAULT_DETECTOR_WEIGHT
    box_threshold: float = 0.05
    box_threshold_high_specificity: float | None = 0.25
    device: str = "auto"


def assemble_package(
    runs: Sequence[Path],
    manifests: Path,
    out_dir: Path,
    spec: PackageSpec,
    *,
    view_classifier_from: Path | None = None,
    report_dir: Path | None = None,
) -> Manifest:
    """Build a model package from run folders and choose its operating points on the ``val`` split.

    Parameters
    ----------
    runs
        Run folders of classifiers and detectors; a member is named after its folder.
    manifests
        Folder written by ``pedfrac index``; its ``val`` split sets the thresholds, its ``test``
        split (when present) the reported metrics.
    out_dir
        Package folder to write; an existing package there is replaced once the new one verifies.
    spec
        Name, version, weights and box thresholds.
    view_classifier_from
        A package whose view classifier is copied in, for images whose tags do not say the view.
    report_dir
        Where to write the test evaluation report; none is written when None.

    Returns
    -------
    The verified manifest of the written package.
    """
    members = [_member(Path(run), spec) for run in runs]
    if view_classifier_from is not None:
        members.append(_view_member(Path(view_classifier_from)))
    covered = _covered(members)
    logger.info("assembling %s %s from %d runs; it reads %s", spec.name, spec.version, len(runs),
                ", ".join(f"{part} {view}" for part, view in covered))

    validation = [r for r in read_manifests(manifests, "val") if (r.body_part, r.view) in covered]
    test = [r for r in read_manifests(manifests, "test") if (r.body_part, r.view) in covered]
    runs_data = {member.fields["name"]: read_run(run)["data"] for member, run in zip(members, runs)}
    description = describe_training_data(manifests, runs_data, view_classifier_from)

    with tempfile.TemporaryDirectory(prefix="pedfrac-package-") as work:
        provisional = Path(work) / "provisional"
        write_package(provisional, members, [OperatingPoint(body_part=p, view=v, threshold=0.5) for p, v in covered],
                      name=spec.name, version=spec.version, intended_use=spec.intended_use,
                      training_data=description)
        # Thresholds change no probability, so the provisional package scores both splits in one load.
        scored = score_records(provisional, validation + test, device=spec.device)

    points = operating_points(_only(scored, validation), covered)
    validation_scores = with_operating_points(_only(scored, validation), points)
    metrics = _validation_metrics(validation_scores)
    evaluation = None
    if test:
        test_scores = with_operating_points(_only(scored, test), points)
        evaluation = evaluate(test_scores, tune=validation_scores, tune_name="val")
        metrics.update(summary_metrics(evaluation, "test"))
    else:
        logger.warning("the manifests have no test split; the package carries validation metrics only")

    manifest = write_package(out_dir, members, points, name=spec.name, version=spec.version,
                             intended_use=spec.intended_use, training_data=description, metrics=metrics)
    if evaluation is not None and report_dir is not None:
        write_report(evaluation, test_scores, Path(report_dir), title=f"Test evaluation of {manifest.identity}")
    return manifest


def _only(scores: ScoreTable, records: Sequence[ImageRecord]) -> ScoreTable:
    """Return the scores of ``records``, in the order they were scored."""
    wanted = set(records)
    return ScoreTable(scores.manifest, tuple(score for score in scores.images if score.record in wanted))


def _member(run_dir: Path, spec: PackageSpec) -> PackageMember:
    run = read_run(run_dir)
    fields: dict[str, Any] = {
        "name": run_dir.name, "kind": run["kind"], "framework": run["framework"],
        "architecture": run["architecture"], "body_parts": run["body_parts"], "views": run["views"],
        "input_size": run["input_size"], "in_chans": run["in_chans"], "classes": run["classes"],
        "weight": spec.classifier_weight if run["kind"] == "classifier" else spec.detector_weight,
    }
    if run["kind"] == "classifier":
        fields["normalization"] = run["normalization"]
    else:
        fields["box_threshold"] = spec.box_threshold
        fields["box_threshold_high_specificity"] = spec.box_threshold_high_specificity
    return PackageMember(run_dir / run["weights_file"], fields)


def _view_member(package: Path) -> PackageMember:
    manifest = verify_package(package)
    member = manifest.view_classifier
    if member is None:
        raise ValueError(f"package {package} has no view classifier to copy")
    return PackageMember(package / member.weights_file, member.model_dump(exclude={"weights_file", "sha256"}))


def _covered(members: Sequence[PackageMember]) -> list[tuple[str, str]]:
    fracture_members = [m for m in members if m.fields["kind"] in ("classifier", "detector")]
    return [(part, view) for part in BODY_PARTS for view in VIEWS
            if any(part in m.fields["body_parts"] and view in m.fields["views"] for m in fracture_members)]


def operating_points(scores: ScoreTable, covered: Sequence[tuple[str, str]]) -> list[OperatingPoint]:
    """Choose the ensemble threshold per body part and view at the Youden index of the scored records.

    A body part and view whose records lack fractures or normals gets 0.5, with a warning: the
    manifest then carries a threshold that nothing measured.
    """
    points = []
    for part, view in covered:
        subset = scores.subset(part, view)
        labels = subset.labels()
        if len(set(labels.tolist())) < 2:
            # NOTE: 0.5 is a placeholder for a validation split without both classes in this view.
            logger.warning("validation %s %s has %d images without both classes; threshold 0.5", part, view,
                           len(labels))
            threshold = 0.5
        else:
            threshold = youden_threshold(labels, subset.ensemble())
        points.append(OperatingPoint(body_part=part, view=view, threshold=round(threshold, 6)))
    return points


def with_operating_points(scores: ScoreTable, points: Sequence[OperatingPoint]) -> ScoreTable:
    """Return the scores with each image's threshold replaced by its operating point in ``points``."""
    thresholds = {(point.body_part, point.view): point.threshold for point in points}
    images = tuple(replace(score, threshold=thresholds[(score.record.body_part, score.record.view)])
                   for score in scores.images)
    return ScoreTable(scores.manifest, images)


def _validation_metrics(scores: ScoreTable) -> dict[str, float | int | str]:
    """Validation metrics at the chosen operating points: the thresholds were tuned on these images."""
    evaluation = evaluate(scores, tune=scores, tune_name="val")
    metrics: dict[str, float | int | str] = dict(summary_metrics(evaluation, "validation"))
    for name in [m.name for m in scores.manifest.members if m.kind in ("classifier", "detector")]:
        labels = [bool(s.record.label) for s in scores.images if name in s.members]
        values = [s.members[name] for s in scores.images if name in s.members]
        if len(set(labels)) == 2:
            threshold = youden_threshold(labels, values)
            correct = sum((value >= threshold) == label for value, label in zip(values, labels))
            metrics[f"validation_accuracy_{name}"] = round(correct / len(labels), 4)
    return metrics


def describe_training_data(manifests: Path, runs_data: dict[str, dict[str, Any]],
                           view_classifier_from: Path | None = None) -> str:
    """State which data trained, tuned and tested the package, from the manifests' summary and the runs.

    The statement ends with the date and the versions of pedfrac, torch, timm and ultralytics that
    built the package, and names the package a copied view classifier came from.
    """
    index = Path(manifests) / "index.json"
    summary = json.loads(index.read_text(encoding="utf-8")) if index.is_file() else {}
    totals = summary.get("totals", {})
    parts = [f"CSV manifests written by pedfrac index from {', '.join(summary.get('sources', [])) or 'unknown sources'}"]
    if totals:
        parts.append(f"patient-level splits (seed {summary.get('seed')}, test fraction {summary.get('test_fraction')}, "
                     f"val fraction {summary.get('validation_fraction')}): "
                     + "; ".join(f"{split} {_count(totals[split])}" for split in ("train", "val", "test") if split in totals))
    for name, data in runs_data.items():
        parts.append(f"{name} trained on {_count(data.get('train', {}))}, stopped early on {_count(data.get('val', {}))}")
    if view_classifier_from is not None:
        source = verify_package(Path(view_classifier_from))
        parts.append(f"view classifier copied from package {source.identity}, not retrained or evaluated here "
                     "(its training data is in that package's manifest)")
    parts.append("operating points at the Youden index of the ensemble on val; metrics named test_* on test")
    versions = ", ".join(f"{name} {_version(name)}" for name in ("torch", "timm", "ultralytics"))
    parts.append(f"built {date.today().isoformat()} by pedfrac {_version('pedfrac')} ({versions})")
    return ". ".join(parts) + "."


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _count(counts: dict[str, Any]) -> str:
    positives = counts.get("positives", counts.get("fractures"))
    return f"{counts.get('images')} images ({positives} showing a fracture) of {counts.get('patients')} patients"
