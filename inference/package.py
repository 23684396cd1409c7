"""Model package: a folder of weights files and a ``manifest.json`` that states their contract.

The service loads a package only when every weights file matches the SHA-256 in the manifest and
the manifest validates, so a reading always names the exact models that made it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
BODY_PARTS = ("wrist", "elbow")
VIEWS = ("AP", "LAT")

BodyPart = Literal["wrist", "elbow"]
View = Literal["AP", "LAT"]
Side = Literal["L", "R"]

# Classes a view classifier may have: one per body part and view, written "<body part> <view>",
# and OTHER_CLASS for an image that is neither an elbow nor a wrist AP or lateral view.
OTHER_CLASS = "other"
VIEW_CLASSES = (*(f"{part} {view}" for part in BODY_PARTS for view in VIEWS), OTHER_CLASS)


# Elbows are read as right elbows: left ones are mirrored first, and their outputs mapped back.
DEFAULT_CANONICAL_SIDE: dict[str, str] = {"elbow": "R"}


class PackageError(Exception):
    """The model package is missing, malformed or does not match its checksums."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(_Strict):
    """Per-channel mean and standard deviation applied to inputs scaled to [0, 1]."""

    mean: float = 0.5
    std: float = 0.25


class Member(_Strict):
    """One model of the ensemble and the images it reads."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["classifier", "detector", "view_classifier"] = Field(
        description="classifier and detector read fractures; a view_classifier decides body part and view "
                    "where the attributes are silent or disagree, and takes no part in the vote")
    framework: Literal["timm", "ultralytics"]
    architecture: str
    body_parts: tuple[BodyPart, ...] = Field(min_length=1)
    views: tuple[View, ...] = Field(min_length=1)
    input_size: int = Field(ge=32, le=2048)
    in_chans: int = Field(default=1, ge=1, le=3)
    normalization: Normalization = Normalization()
    classes: tuple[str, ...] = Field(min_length=1)
    weight: float = Field(gt=0, le=1, description="soft-voting weight")
    box_threshold: float = Field(default=0.25, ge=0, le=1,
                                 description="detector boxes below this confidence are dropped (high-sensitivity operating point)")
    box_threshold_high_specificity: float | None = Field(
        default=None, ge=0, le=1,
        description="boxes at or above this confidence form the high-specificity tier; None: one tier",
    )
    min_confidence: float | None = Field(
        default=None, ge=0, le=1,
        description="view_classifier only: below this probability of its best class it decides nothing")
    weights_file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _check_kind(self) -> Member:
        expected = {"classifier": "timm", "detector": "ultralytics", "view_classifier": "timm"}[self.kind]
        if self.framework != expected:
            raise ValueError(f"a {self.kind} member must use framework {expected!r}, found {self.framework!r}")
        if self.kind == "detector" and "fracture" not in self.classes:
            raise ValueError(f"detector {self.name!r} has no 'fracture' class in {list(self.classes)}")
        self._check_view_classifier()

        high = self.box_threshold_high_specificity
        if high is not None and self.kind != "detector":
            raise ValueError(f"member {self.name!r} is a {self.kind}; only a detector takes box_threshold_high_specificity")
        if high is not None and high < self.box_threshold:
            raise ValueError(
                f"detector {self.name!r}: box_threshold_high_specificity {high} is below box_threshold "
                f"{self.box_threshold}; it must be at least box_threshold"
            )
        return self

    def _check_view_classifier(self) -> None:
        if self.kind != "view_classifier":
            if self.min_confidence is not None:
                raise ValueError(f"member {self.name!r} is a {self.kind}; only a view_classifier takes min_confidence")
            return

        if self.min_confidence is None:
            raise ValueError(f"view_classifier {self.name!r} needs min_confidence, the probability below which "
                             "it decides nothing")
        unknown = [name for name in self.classes if name not in VIEW_CLASSES]
        views = [name for name in self.classes if name != OTHER_CLASS]
        if unknown or len(set(self.classes)) != len(self.classes) or len(views) < 2:
            raise ValueError(f"view_classifier {self.name!r} has classes {list(self.classes)}; expected two or more "
                             f"distinct classes of {list(VIEW_CLASSES[:-1])}, and optionally {OTHER_CLASS!r}")

    def reads(self, body_part: str, view: str) -> bool:
        """True when this member votes on fractures in images of ``body_part`` and ``view``."""
        return self.kind != "view_classifier" and body_part in self.body_parts and view in self.views


class OperatingPoint(_Strict):
    """Ensemble decision threshold for one body part and view, chosen on validation data."""

    body_part: BodyPart
    view: View
    threshold: float = Field(ge=0, le=1)


class Manifest(_Strict):
    """The whole contract of a model package, as written in ``manifest.json``."""

    format_version: Literal[1]
    name: str
    version: str
    intended_use: str
    training_data: str
    metrics: dict[str, float | int | str] = {}
    members: tuple[Member, ...] = Field(min_length=1)
    operating_points: tuple[OperatingPoint, ...] = Field(min_length=1)
    canonical_side: dict[BodyPart, Side] = Field(
        default_factory=lambda: dict(DEFAULT_CANONICAL_SIDE),
        description="per body part, the side every member sees: images of the other side are mirrored left to "
                    "right first, and their heat maps and boxes mapped back")

    @model_validator(mode="after")
    def _check_coverage(self) -> Manifest:
        names = [member.name for member in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, found {names}")

        view_classifiers = [member.name for member in self.members if member.kind == "view_classifier"]
        if len(view_classifiers) > 1:
            raise ValueError(f"a package has at most one view_classifier, found {view_classifiers}")

        for point in self.operating_points:
            if not self.members_for(point.body_part, point.view):
                raise ValueError(f"operating point {point.body_part}/{point.view} has no member that reads it")
        return self

    def members_for(self, body_part: str, view: str) -> tuple[Member, ...]:
        return tuple(member for member in self.members if member.reads(body_part, view))

    def threshold_for(self, body_part: str, view: str) -> float | None:
        for point in self.operating_points:
            if point.body_part == body_part and point.view == view:
                return point.threshold
        return None

    @property
    def identity(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def view_classifier(self) -> Member | None:
        """The member that decides body part and view from the pixels, if the package has one."""
        return next((member for member in self.members if member.kind == "view_classifier"), None)

    def flips(self, body_part: str, laterality: str | None) -> bool:
        """True when an image of ``body_part`` and ``laterality`` is mirrored to the canonical side first."""
        return mirrors_to_canonical(body_part, laterality, self.canonical_side)


def mirrors_to_canonical(body_part: str, laterality: str | None, sides: dict[str, str] | None = None) -> bool:
    """True when an image of ``body_part`` and ``laterality`` is mirrored to the side in ``sides`` first.

    ``sides`` maps body parts to their canonical side; :data:`DEFAULT_CANONICAL_SIDE` when None.
    Training applies the same rule as the service, so members learn on the side they later read.
    """
    side = (DEFAULT_CANONICAL_SIDE if sides is None else sides).get(body_part)
    return side is not None and laterality in ("L", "R") and laterality != side


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> Manifest:
    """Read and validate ``manifest.json`` of a package folder, without checking the weights."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise PackageError(f"model package {folder}: {MANIFEST_NAME} not found")

    try:
        return Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as error:
        raise PackageError(f"model package {folder}: invalid {MANIFEST_NAME}: {error}") from error


def verify_package(folder: Path) -> Manifest:
    """Validate the manifest and check every weights file against its SHA-256.

    Raises
    ------
    PackageError
        When the manifest is invalid, a weights file is missing, or a checksum differs.
    """
    manifest = read_manifest(folder)

    for member in manifest.members:
        weights = folder / member.weights_file
        if not weights.is_file():
            raise PackageError(f"model package {folder}: weights file {member.weights_file} of member {member.name} not found")

        found = sha256_of(weights)
        if found != member.sha256:
            raise PackageError(
                f"model package {folder}: SHA-256 of {member.weights_file} is {found}, "
                f"the manifest expects {member.sha256}; reinstall the package or rebuild its manifest"
            )

    logger.info("model package %s verified: %d members", manifest.identity, len(manifest.members))
    return manifest
