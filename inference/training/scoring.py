"""Scores of a model package on manifest records, computed by the service's own members.

Each record's image goes through the same loaded members, canonical-side mirror, preprocessing and
soft vote as a radiograph that arrives by DICOM, so what evaluation measures is what the service
will do. The scores keep every member's probability apart, for the comparison of voting rules.
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference.ensemble import Ensemble, soft_vote
from inference.findings import Box, MemberOutput
from inference.package import Manifest, Member
from inference.training.images import load_boxes, load_image
from inference.training.records import ImageRecord

logger = logging.getLogger(__name__)

TruthBox = tuple[str, float, float, float, float]


@dataclass(frozen=True)
class ImageScore:
    """One record as the package read it.

    ``members`` maps the name of every member that reads the record's body part and view to its
    fracture probability; ``ensemble`` is their soft vote with the manifest's weights and
    ``threshold`` the package's operating point. ``boxes`` are the detectors' boxes and
    ``truth`` the record's boxes, both in source pixels. ``heatmap`` is the Grad-CAM map of the
    first classifier that reads the image, on source pixels, when it was asked for.
    """

    record: ImageRecord
    members: dict[str, float]
    ensemble: float
    threshold: float
    boxes: tuple[Box, ...]
    truth: tuple[TruthBox, ...]
    heatmap: np.ndarray | None = None

    @property
    def positive(self) -> bool:
        return self.ensemble >= self.threshold


@dataclass(frozen=True)
class ScoreTable:
    """Scores of a set of records and the manifest of the package that made them."""

    manifest: Manifest
    images: tuple[ImageScore, ...]

    def labels(self) -> np.ndarray:
        return np.array([bool(score.record.label) for score in self.images])

    def ensemble(self) -> np.ndarray:
        return np.array([score.ensemble for score in self.images])

    def subset(self, body_part: str | None = None, view: str | None = None) -> ScoreTable:
        kept = tuple(score for score in self.images
                     if (body_part is None or score.record.body_part == body_part)
                     and (view is None or score.record.view == view))
        return ScoreTable(self.manifest, kept)

    def member(self, name: str) -> Member:
        return next(member for member in self.manifest.members if member.name == name)


def score_records(package: Path, records: Sequence[ImageRecord], *, device: str = "auto",
                  batch_size: int = 16) -> ScoreTable:
    """Read every record with the package's members and return their scores.

    Records whose body part and view no member reads are left out with a warning.
    """
    return _score(package, records, device, batch_size, gradcam=False)


def iterate_scores(package: Path, records: Sequence[ImageRecord], *, device: str = "auto",
                   batch_size: int = 8, gradcam: bool = True) -> Iterator[tuple[ImageScore, np.ndarray]]:
    """Yield each record's score, with Grad-CAM maps when ``gradcam``, and its display image.

    Images are loaded one batch at a time, so a whole split can be reviewed without holding it in memory.
    """
    ensemble = Ensemble(Path(package), device=device, gradcam=gradcam, batch_size=batch_size)
    readable = _readable(ensemble.manifest, records)
    for start in range(0, len(readable), batch_size):
        batch = readable[start : start + batch_size]
        images = [load_image(record) for record in batch]
        yield from zip(_score_batch(ensemble, batch, images, gradcam=gradcam), images)


def _score(package: Path, records: Sequence[ImageRecord], device: str, batch_size: int, *, gradcam: bool) -> ScoreTable:
    ensemble = Ensemble(Path(package), device=device, gradcam=gradcam, batch_size=batch_size)
    manifest = ensemble.manifest
    readable = _readable(manifest, records)
    scores: list[ImageScore] = []
    batches = range(0, len(readable), batch_size)
    for start in tqdm(batches, desc="scoring", unit="batch", disable=None, leave=False):
        batch = readable[start : start + batch_size]
        scores.extend(_score_batch(ensemble, batch, [load_image(record) for record in batch], gradcam=gradcam))
    logger.info("scored %d images with %s", len(scores), manifest.identity)
    return ScoreTable(manifest, tuple(scores))


def _readable(manifest: Manifest, records: Sequence[ImageRecord]) -> list[ImageRecord]:
    readable = [record for record in records if manifest.members_for(record.body_part, record.view)]
    if len(readable) < len(records):
        logger.warning("%d of %d records have a body part and view that no member of %s reads; left out",
                       len(records) - len(readable), len(records), manifest.identity)
    return readable


def _score_batch(ensemble: Ensemble, records: Sequence[ImageRecord], images: Sequence[np.ndarray], *,
                 gradcam: bool) -> list[ImageScore]:
    manifest = ensemble.manifest
    flips = [manifest.flips(record.body_part, record.laterality or None) for record in records]
    outputs: list[list[MemberOutput]] = [[] for _ in records]
    boxes: list[list[Box]] = [[] for _ in records]
    heatmaps: list[np.ndarray | None] = [None] * len(records)

    for member in manifest.members:
        chosen = [index for index, record in enumerate(records) if member.reads(record.body_part, record.view)]
        if not chosen:
            continue
        batch = [images[index] for index in chosen]
        batch_flips = [flips[index] for index in chosen]
        if member.kind == "classifier":
            # Like the service, an image's heat map comes from the first classifier that reads it.
            mapped = gradcam and all(heatmaps[index] is None for index in chosen)
            results = ensemble.classifiers[member.name].predict_batch(batch, gradcam=mapped, flips=batch_flips)
            probabilities = [result.probability for result in results]
            for index, result in zip(chosen, results):
                if result.heatmap is not None:
                    heatmaps[index] = result.heatmap
        else:
            detected = ensemble.detectors[member.name].predict_batch(batch, flips=batch_flips)
            probabilities = [probability for probability, _boxes in detected]
            for index, (_probability, found) in zip(chosen, detected):
                boxes[index].extend(found)
        for index, probability in zip(chosen, probabilities):
            outputs[index].append(MemberOutput(member.name, member.kind, probability, member.weight))

    return [
        ImageScore(
            record=record, members={output.member: output.probability for output in image_outputs},
            ensemble=soft_vote(image_outputs), threshold=_threshold(manifest, record),
            boxes=tuple(image_boxes), truth=tuple(load_boxes(record, image.shape[:2])), heatmap=heatmap,
        )
        for record, image, image_outputs, image_boxes, heatmap in zip(records, images, outputs, boxes, heatmaps)
    ]


def _threshold(manifest: Manifest, record: ImageRecord) -> float:
    threshold = manifest.threshold_for(record.body_part, record.view)
    if threshold is None:
        raise ValueError(f"package {manifest.identity} has no operating point for {record.body_part} {record.view}")
    return threshold


def write_scores(table: ScoreTable, path: Path) -> Path:
    """Write one CSV row per image: path, body part, view, label, each member's probability, the vote."""
    names = [member.name for member in table.manifest.members if member.kind != "view_classifier"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "body_part", "view", "laterality", "label", *names, "ensemble", "threshold",
                         "positive", "detector_boxes"])
        for score in table.images:
            record = score.record
            writer.writerow([
                record.image_path, record.body_part, record.view, record.laterality, int(record.label),
                *[_cell(score.members.get(name)) for name in names], f"{score.ensemble:.6f}",
                f"{score.threshold:.6f}", int(score.positive), len(score.boxes),
            ])
    return path


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"
