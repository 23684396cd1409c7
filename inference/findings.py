"""What the ensemble concludes about images and studies; the input of ``reporting``."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRACTURE = "fracture"
FAT_PAD = "fat_pad"


@dataclass(frozen=True)
class Box:
    """A detector box in source image pixels: x is the column, y the row, both 0-based."""

    label: str
    confidence: float
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class MemberOutput:
    """One ensemble member's fracture probability for one image."""

    member: str
    kind: str
    probability: float
    weight: float


@dataclass(frozen=True)
class ImageFinding:
    """The ensemble's reading of one radiograph."""

    sop_instance_uid: str
    body_part: str
    view: str
    laterality: str | None
    view_source: str
    probability: float
    threshold: float
    positive: bool
    members: tuple[MemberOutput, ...]
    boxes: tuple[Box, ...]
    display: np.ndarray = field(repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SkippedImage:
    """An instance of the study that was not read, with the reason in plain words."""

    sop_instance_uid: str
    reason: str


@dataclass(frozen=True)
class StudyFinding:
    """The patient-level result of one study: positive if any image read is positive."""

    study_instance_uid: str
    images: tuple[ImageFinding, ...]
    skipped: tuple[SkippedImage, ...]
    model_name: str
    model_version: str

    @property
    def probability(self) -> float:
        """Maximum image probability, or 0.0 when no image was read."""
        return max((image.probability for image in self.images), default=0.0)

    @property
    def positive(self) -> bool:
        return any(image.positive for image in self.images)

    @property
    def views_read(self) -> tuple[str, ...]:
        return tuple(sorted({image.view for image in self.images}))
