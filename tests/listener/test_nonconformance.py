"""The SCP's non-conformance policy (dicom.nonconformance): store, store and warn, or reject a radiograph."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from listener.scp import DATASET_DOES_NOT_MATCH_SOP_CLASS, SUCCESS, StoreSCP
from listener.settings import DicomSettings, SettingsError, load_settings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from tests.listener.harness import small_dx, store_all
from tests.peers import free_port


def start_scp(data_dir: Path, policy: str) -> StoreSCP:
    settings = DicomSettings(port=free_port(), allowed_calling_ae_titles=["MODALITY"], nonconformance=policy)
    server = StoreSCP(settings, open_database(sqlite_url(data_dir)), Archive(data_dir / "archive"), min_free_bytes=0,
                      quarantine=data_dir / "quarantine")
    server.start()
    return server


def nonconformant_dx():  # noqa: ANN201 - pydicom Dataset
    dataset = small_dx(seed=3)
    dataset.HighBit = 15  # Bits Stored is 12
    return dataset


def send(tmp_path: Path, policy: str) -> tuple[int | None, Path]:
    server = start_scp(tmp_path, policy)
    try:
        dataset = nonconformant_dx()
        status = store_all(server.port, [dataset])[str(dataset.SOPInstanceUID)]
    finally:
        server.stop()
    return status, tmp_path / "quarantine"


def test_reject_answers_a900(tmp_path: Path) -> None:
    status, quarantine = send(tmp_path, "reject")

    assert status == DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert len(list(quarantine.glob("*.dcm"))) == 1
    note = next(quarantine.glob("*.json")).read_text()
    assert "High Bit (0028,0102) is 15" in note


def test_warn_stores_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="inference.conformance"):
        status, quarantine = send(tmp_path, "warn")

    assert status == SUCCESS
    assert not quarantine.exists() or not list(quarantine.iterdir())
    assert "non-conformant radiograph" in caplog.text


def test_ignore_stores_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="inference.conformance"):
        status, _quarantine = send(tmp_path, "ignore")

    assert status == SUCCESS
    assert "non-conformant" not in caplog.text


def test_policy_setting_validated() -> None:
    with pytest.raises(SettingsError, match=r"dicom\.nonconformance: Input should be 'ignore', 'warn' or 'reject'"):
        load_settings(environ={"PEDFRAC_DICOM__NONCONFORMANCE": '"raise"'})
