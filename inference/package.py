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
    kind: Literal["classifier", "detector"]
    framework: Literal["timm", "ultralytics"]
    architecture: str
    body_parts: tuple[BodyPart, ...] = Field(min_length=1)
    views: tuple[View, ...] = Field(min_length=1)
    input_size: int = Field(ge=32, le=2048)
    in_chans: int = Field(default=1, ge=1, le=3)
    normalization: Normalization = Normalization()
    classes: tuple[str, ...] = Field(min_length=1)
    weight: float = Field(gt=0, le=1, description="soft-voting weight")
    box_threshold: float = Field(default=0.25, ge=0, le=1)
    weights_file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _check_kind(self) -> Member:
        expected = {"classifier": "timm", "detector": "ultralytics"}[self.kind]
        if self.framework != expected:
            raise ValueError(f"a {self.kind} member must use framework {expected!r}, found {self.framework!r}")
        if self.kind == "detector" and "fracture" not in self.classes:
            raise ValueError(f"detector {self.name!r} has no 'fracture' class in {list(self.classes)}")
        return self

    def reads(self, body_part: str, view: str) -> bool:
        return body_part in self.body_parts and view in self.views


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

    @model_validator(mode="after")
    def _check_coverage(self) -> Manifest:
        names = [member.name for member in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, found {names}")

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
