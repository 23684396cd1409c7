"""Settings: one TOML file, then ``PEDFRAC_*`` environment variables, then command-line flags.

Everything is validated once at start; an unknown key or a bad value stops the service with a
message that names the key.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "models" / "demo"
ENV_PREFIX = "PEDFRAC_"
_AE_TITLE = r"^[\x20-\x5b\x5d-\x7e]{1,16}$"  # PS3.5 AE: 16 characters, no backslash or control characters


class SettingsError(Exception):
    """The settings file, an environment variable or a flag contains an invalid value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# Kinds of output object a destination can receive: the Secondary Capture overlays, the
# Structured Report, the Grayscale Softcopy Presentation States and the Key Object Selection.
# Each name fits the 16-character kind column of the output_objects table.
ObjectKind = Literal["overlay", "report", "presentation", "key_objects"]
OBJECT_KINDS: tuple[ObjectKind, ...] = ("overlay", "report", "presentation", "key_objects")


class Destination(_Section):
    """A DICOM node that receives our results by C-STORE."""

    ae_title: str = Field(pattern=_AE_TITLE)
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = Field(default=False, description="connect with DICOM TLS, verifying the peer's certificate")
    objects: list[ObjectKind] = Field(default_factory=lambda: list(OBJECT_KINDS), min_length=1,
                                      description="kinds of output object sent to this destination; default: all")
    confirm_with_find: bool = Field(default=True, description="after an interrupted C-STORE, ask the peer by "
                                    "C-FIND whether it holds the object before sending it again")

    @field_validator("objects")
    @classmethod
    def _check_objects(cls, objects: list[ObjectKind]) -> list[ObjectKind]:
        repeated = sorted({kind for kind in objects if objects.count(kind) > 1})
        if repeated:
            raise ValueError(f"object kinds {', '.join(repeated)} are listed more than once")
        return objects

    @property
    def name(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def receives(self, kind: str) -> bool:
        """Return True when output objects of ``kind`` are sent to this destination."""
        return kind in self.objects

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
    require_called_ae_title: bool = Field(default=False, description="reject associations addressed to another AE title")
    nonconformance: Literal["ignore", "warn", "reject"] = Field(
        default="warn", description="radiographs whose image attributes break the DICOM standard or contradict each "
        "other: ignore (read them), warn (read them, log the problems and list them in the report) or reject "
        "(answer C-STORE 0xA900 and quarantine them; an image already stored is skipped with the reason)")
    allowed_peer_addresses: list[str] = Field(default=[], description="peer addresses or networks (CIDR) allowed to "
                                              "associate; empty allows any")
    tls_certificate: Path | None = Field(default=None, description="PEM certificate chain; set to serve DICOM TLS")
    tls_private_key: Path | None = None
    tls_private_key_password: SecretStr | None = None
    tls_ca_file: Path | None = Field(default=None, description="PEM CA certificates that client certificates must chain to")
    tls_require_client_certificate: bool = False

    @field_validator("allowed_calling_ae_titles")
    @classmethod
    def _check_titles(cls, titles: list[str]) -> list[str]:
        for title in titles:
            if not re.fullmatch(_AE_TITLE, title):
                raise ValueError(f"{title!r} is not a valid AE title (1-16 printable characters, no backslash)")
        return titles

    @field_validator("allowed_peer_addresses")
    @classmethod
    def _check_addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError as error:
                raise ValueError(f"{address!r} is not an IP address or network such as 10.1.2.0/24") from error
        return addresses

    @model_validator(mode="after")
    def _check_tls(self) -> DicomSettings:
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("tls_certificate and tls_private_key must be set together")
        if self.tls_require_client_certificate and (self.tls_certificate is None or self.tls_ca_file is None):
            raise ValueError("tls_require_client_certificate needs tls_certificate, tls_private_key and tls_ca_file")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None


class StudySettings(_Section):
    stable_after: float = Field(default=30.0, ge=0, description="seconds without a new instance before a study is read")
    poll_interval: float = Field(default=1.0, gt=0)


class StorageSettings(_Section):
    data_dir: Path = Path("pedfrac-data")
    database_url: str | None = None
    min_free_bytes: int = Field(default=1 << 30, ge=0, description="free bytes the archive keeps; below it "
                                "associations are rejected and C-STOREs answered 0xA700")

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"


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
    tls_ca_file: Path | None = Field(default=None, description="PEM CA certificates for destinations with tls = true; "
                                     "not set: the system's trust store")


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


_PATH_KEYS = (("storage", "data_dir"), ("inference", "models"), ("reporting", "font"), ("dicom", "tls_certificate"),
              ("dicom", "tls_private_key"), ("dicom", "tls_ca_file"), ("delivery", "tls_ca_file"))


def _resolve_relative_paths(data: dict[str, Any], folder: Path) -> None:
    """Make relative paths written in a settings file relative to that file's folder."""
    for section, key in _PATH_KEYS:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and not Path(value).is_absolute():
            data[section][key] = str((folder / value).resolve())
