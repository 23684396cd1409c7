"""Grad-CAM review images for a manifest: the overlay the radiologist would see, plus the ground truth.

Each image is rendered by :func:`reporting.overlay.render_overlay`, the renderer of the Secondary
Capture the service sends, so a reviewer judges exactly what reaches the PACS. The record's own
boxes are drawn on top as thin green rectangles, and ``review.csv`` lists label, probability and
decision per image, so false negatives and false positives can be found quickly.
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inference.findings import ImageFinding, MemberOutput
from inference.package import verify_package
from inference.preprocess import to_uint8
from inference.training.records import ImageRecord
from inference.training.scoring import ImageScore, iterate_scores
from reporting.overlay import render_overlay

logger = logging.getLogger(__name__)

TRUTH_COLOUR_BGR = (0, 200, 0)


def export_gradcam(
    package: Path,
    records: Sequence[ImageRecord],
    out_dir: Path,
    *,
    language: str = "en",
    device: str = "auto",
    limit: int | None = None,
) -> Path:
    """Write one PNG per record with heat map, detector boxes, caption and true boxes; return ``review.csv``.

    Parameters
    ----------
    package
        Model package folder.
    records
        Records to review, such as a test split read by ``read_manifests``.
    out_dir
        Folder for the PNG files and ``review.csv``.
    language
        Caption language, ``"ko"`` or ``"en"``.
    device
        ``auto``, ``cpu`` or ``cuda``.
    limit
        Review only the first ``limit`` records.
    """
    identity = verify_package(Path(package)).identity
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = list(records)[:limit] if limit is not None else list(records)
    index_path = out_dir / "review.csv"
    written = 0
    with index_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review_image", "image_path", "body_part", "view", "label", "probability", "threshold",
                         "positive", "outcome"])
        for number, (score, image) in enumerate(iterate_scores(package, chosen, device=device, gradcam=True)):
            name = f"{number:05d}_{Path(score.record.image_path).stem}.png"
            picture = _render(score, image, language, identity)
            if not cv2.imwrite(str(out_dir / name), picture):
                raise OSError(f"could not write review image {out_dir / name}")
            writer.writerow([name, score.record.image_path, score.record.body_part, score.record.view,
                             int(score.record.label), f"{score.ensemble:.6f}", f"{score.threshold:.6f}",
                             int(score.positive), _outcome(score)])
            written += 1

    logger.info("wrote %d Grad-CAM review images to %s", written, out_dir)
    return index_path


def _render(score: ImageScore, image: np.ndarray, language: str, identity: str) -> np.ndarray:
    """Return the overlay as a BGR array with the record's true boxes drawn over it."""
    record = score.record
    finding = ImageFinding(
        sop_instance_uid=Path(record.image_path).stem, body_part=record.body_part, view=record.view,
        laterality=record.laterality or None, view_source="manifest", probability=score.ensemble,
        threshold=score.threshold, positive=score.positive,
        members=tuple(MemberOutput(name, "member", probability, 1.0) for name, probability in score.members.items()),
        boxes=score.boxes, display=to_uint8(image), heatmap=score.heatmap, body_part_source="manifest",
    )
    rgb = render_overlay(finding, language=language, model_identity=identity)
    picture = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape) / 500))
    for _label, x0, y0, x1, y1 in score.truth:
        cv2.rectangle(picture, (round(x0), round(y0)), (round(x1), round(y1)), TRUTH_COLOUR_BGR, thickness)
    return picture


def _outcome(score: ImageScore) -> str:
    truth, positive = bool(score.record.label), score.positive
    return {(True, True): "true positive", (True, False): "false negative",
            (False, True): "false positive", (False, False): "true negative"}[(truth, positive)]
