from __future__ import annotations

import importlib.metadata

import pytest
from pydicom.uid import UID

from reporting import identifiers
from reporting.identifiers import (
    SC_SERIES_NUMBER,
    SR_SERIES_NUMBER,
    UNKNOWN_VERSION,
    new_uid,
    software_version,
    stable_uid,
)


def test_new_uid_is_valid_uuid_derived() -> None:
    uid = new_uid()

    assert uid.startswith("2.25.")
    assert UID(uid).is_valid


def test_new_uid_differs_between_calls() -> None:
    assert new_uid() != new_uid()


def test_stable_uid_repeats_for_same_parts() -> None:
    assert stable_uid("pedfrac", "ensemble", "1.0") == stable_uid("pedfrac", "ensemble", "1.0")


def test_stable_uid_differs_per_version() -> None:
    assert stable_uid("pedfrac", "ensemble", "1.0") != stable_uid("pedfrac", "ensemble", "1.1")


def test_stable_uid_is_valid() -> None:
    uid = stable_uid("pedfrac", "ensemble", "1.0")

    assert uid.startswith("2.25.")
    assert UID(uid).is_valid


def test_stable_uid_rejects_no_parts() -> None:
    with pytest.raises(ValueError, match="at least one name part"):
        stable_uid()


def test_series_numbers_are_distinct() -> None:
    assert SC_SERIES_NUMBER != SR_SERIES_NUMBER


def test_software_version_falls_back_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(identifiers.importlib.metadata, "version", not_installed)
    software_version.cache_clear()
    try:
        assert software_version() == UNKNOWN_VERSION
    finally:
        software_version.cache_clear()


def test_software_version_reads_installed_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identifiers.importlib.metadata, "version", lambda name: "9.8.7")
    software_version.cache_clear()
    try:
        assert software_version() == "9.8.7"
    finally:
        software_version.cache_clear()
