"""Settings: one TOML file, then ``PEDFRAC_*`` environment variables, then command-line flags.

Everything is validated once at start; an unknown key or a bad value stops the service with a
message that names the key.
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "models" / "demo"
ENV_PREFIX = "PEDFRAC_"
_AE_TITLE = r"^[\x20-\x5b\x5d-\x7e]{1,16}$"  # PS3.5 AE: 16 characters, no backslash or control characters


class SettingsError(Exception):
    """The settings file, an environment variable or a flag holds an invalid value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Destination(_Section):
    """A DICOM node that receives our results by C-STORE."""

    ae_title: str = Field(pattern=_AE_TITLE)
    host: str
    port: int = Field(ge=1, le=65535)

    @property
    def name(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Parse ``AET@HOST:PORT``."""
        match = re.fullmatch(r"(?P<aet>[^@]+)@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d+)", text)
        if match is None:
            raise SettingsError(f"destination {text!r} is not in the form AET@HOST:PORT")
        return cls(ae_title=match["aet"], host=match["host"].strip("[]"), port=int(match["port"]))


class DicomSettings(_Section):
    ae_title: str = Field(default="PEDFRAC", pattern=_AE_TITLE)
    bind: str = "127.0.0.1"
    port: int = Field(default=11112, ge=0, le=65535, description="0 picks a free port")
    allowed_calling_ae_titles: list[str] = []
    max_associations: int = Field(default=16, ge=1, le=256)
    maximum_pdu_size: int = Field(default=131072, ge=0)
    network_timeout: float = Field(default=60.0, gt=0)

    @field_validator("allowed_calling_ae_titles")
    @classmethod
    def _check_titles(cls, titles: list[str]) -> list[str]:
        for title in titles:
            if not re.fullmatch(_AE_TITLE, title):
                raise ValueError(f"{title!r} is not a valid AE title (1-16 printable characters, no backslash)")
        return titles


class StudySettings(_Section):
    stable_after: float = Field(default=30.0, ge=0, description="seconds without a new instance before a study is read")
    poll_interval: float = Field(default=1.0, gt=0)


class StorageSettings(_Section):
    data_dir: Path = Path("pedfrac-data")
    database_url: str | None = None

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"


class InferenceSettings(_Section):
    models: Path = BUNDLED_MODELS
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 uses every core")
    gradcam: bool = True


class ReportingSettings(_Section):
    language: Literal["ko", "en"] = "en"
    font: Path | None = None


class DeliverySettings(_Section):
    destinations: list[Destination] = []
    max_attempts: int = Field(default=8, ge=1)
    backoff_initial: float = Field(default=5.0, gt=0)
    backoff_max: float = Field(default=600.0, gt=0)
    timeout: float = Field(default=60.0, gt=0)


class Settings(_Section):
    dicom: DicomSettings = DicomSettings()
    study: StudySettings = StudySettings()
    storage: StorageSettings = StorageSettings()
    inference: InferenceSettings = InferenceSettings()
    reporting: ReportingSettings = ReportingSettings()
    delivery: DeliverySettings = DeliverySettings()


def _environment_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Map ``PEDFRAC_SECTION__KEY=value`` variables onto settings; values are parsed as TOML values."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue

        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        overrides.setdefault(section, {})[key] = value
    return overrides


def _merge(base: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {section: dict(values) if isinstance(values, dict) else values for section, values in base.items()}
    for section, values in overrides.items():
        if not isinstance(merged.get(section, {}), dict):
            raise SettingsError(f"settings key [{section}] must be a table")
        merged.setdefault(section, {}).update(values)
    return merged


def load_settings(path: Path | None = None, *, overrides: dict[str, dict[str, Any]] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (optional), apply environment variables, then ``overrides`` from flags.

    Raises
    ------
    SettingsError
        With the key path and the reason, for a missing file, bad TOML or an invalid value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise SettingsError(f"settings file {path} not found") from error
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"settings file {path} is not valid TOML: {error}") from error
        _resolve_relative_paths(data, path.parent)

    data = _merge(data, _environment_overrides(dict(os.environ if environ is None else environ)))
    data = _merge(data, overrides or {})

    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise SettingsError(f"invalid settings{f' in {path}' if path else ''}: {problems}") from error
    return settings


_PATH_KEYS = (("storage", "data_dir"), ("inference", "models"), ("reporting", "font"))


def _resolve_relative_paths(data: dict[str, Any], folder: Path) -> None:
    """Make relative paths written in a settings file relative to that file's folder."""
    for section, key in _PATH_KEYS:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and not Path(value).is_absolute():
            data[section][key] = str((folder / value).resolve())
