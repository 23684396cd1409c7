from __future__ import annotations

import importlib.metadata

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from reporting import identifiers
from reporting.identifiers import (
    SC_SERIES_NUMBER,
    SR_SERIES_NUMBER,
    UNKNOWN_VERSION,
    UTF8_CHARACTER_SET,
    algorithm_equipment,
    character_set_for,
    new_uid,
    series_laterality,
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


@pytest.mark.parametrize(
    ("charset", "texts", "expected"),
    [
        (["", "ISO 2022 IR 149"], ["골절 0.87", "AI 보조 판독 - 진단용 단독 사용 금지"], ["", "ISO 2022 IR 149"]),
        (["", "ISO 2022 IR 149"], ["AI 보조 판독 — 진단용 단독 사용 금지"], UTF8_CHARACTER_SET),
        ("ISO_IR 100", ["fracture 0.87 é"], "ISO_IR 100"),
        ("ISO_IR 100", ["골절 0.87"], UTF8_CHARACTER_SET),
        (None, ["fracture 0.87"], None),
        (None, ["골절"], UTF8_CHARACTER_SET),
        ("ISO_IR 192", ["골절"], "ISO_IR 192"),
    ],
)
def test_character_set_for_keeps_source_when_it_encodes(charset: str | list[str] | None, texts: list[str],
                                                         expected: str | list[str] | None) -> None:
    source = Dataset()
    if charset is not None:
        source.SpecificCharacterSet = charset

    assert character_set_for(source, texts) == expected


@pytest.mark.parametrize(
    ("laterality", "image_laterality", "expected"),
    [("R", "R", "R"), (None, "L", "L"), (None, "B", None), (None, None, None)],
)
def test_series_laterality_takes_r_or_l(laterality: str | None, image_laterality: str | None, expected: str | None) -> None:
    source = Dataset()
    if laterality is not None:
        source.Laterality = laterality
    if image_laterality is not None:
        source.ImageLaterality = image_laterality

    assert series_laterality(source) == expected


def test_algorithm_equipment_names_model_package() -> None:
    equipment = algorithm_equipment("pedfrac-demo 1.2.0")

    assert equipment.Manufacturer == "pedfrac"
    assert equipment.ManufacturerModelName == "pedfrac-demo 1.2.0"
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert equipment.ContributionDescription.startswith("Processing algorithm:")
