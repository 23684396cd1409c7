"""Malformed input through the listener: the right status, the bytes kept, and the SCP still responds."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from sqlalchemy import func, select

from listener.scp import SUCCESS, StoreSCP
from listener.settings import DicomSettings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import Instance
from tests.listener.corpus import Case, Corpus
from tests.peers import free_port

SYNTAXES = (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit)


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StoreSCP]:
    server = StoreSCP(DicomSettings(port=free_port()), open_database(sqlite_url(tmp_path)),
                      Archive(tmp_path / "archive"), min_free_bytes=0, quarantine=tmp_path / "quarantine")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def send_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send each file's data set as it is on disk, without decoding it first."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def send_case(port: int, case: Case) -> tuple[int | None, int | None]:
    """C-STORE the case's file, then C-ECHO on the same association; return both statuses."""
    ae = AE(ae_title="MODALITY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(Verification)
    for syntax in SYNTAXES:
        ae.add_requested_context(DigitalXRayImageStorageForPresentation, syntax)

    assoc = ae.associate("127.0.0.1", port, ae_title="PEDFRAC")
    assert assoc.is_established, f"{case.name}: association not established"
    try:
        store = assoc.send_c_store(case.path)
        echo = assoc.send_c_echo()
    finally:
        assoc.release()
    return (int(store.Status) if "Status" in store else None), (int(echo.Status) if "Status" in echo else None)


def quarantined(scp: StoreSCP, sop_fragment: str) -> list[str]:
    if not scp.quarantine.exists():
        return []
    return sorted(path.suffix for path in scp.quarantine.iterdir() if sop_fragment in path.name)


def test_malformed_corpus_statuses(scp: StoreSCP, send_raw: None, tmp_path: Path, figures) -> None:  # noqa: ANN001
    cases = list(Corpus(tmp_path / "corpus").small_cases())
    outcomes = {case.name: send_case(scp.port, case) for case in cases}

    wrong = {name: f"0x{store:04X}" if store is not None else "no answer" for name, (store, _echo) in outcomes.items()
             if store != next(case.expected for case in cases if case.name == name)}
    silent = [name for name, (_store, echo) in outcomes.items() if echo != SUCCESS]
    figures.record(cases=len(cases), stored=sum(case.expected == SUCCESS for case in cases),
                   rejected=sum(case.expected != SUCCESS for case in cases), wrong_status=len(wrong),
                   echo_failures=len(silent))
    assert wrong == {}
    assert silent == []


def test_rejected_corpus_quarantined(scp: StoreSCP, send_raw: None, tmp_path: Path) -> None:
    cases = [case for case in Corpus(tmp_path / "corpus").small_cases() if case.expected != SUCCESS]
    for case in cases:
        send_case(scp.port, case)

    missing = [case.name for case in cases if quarantined(scp, case.sop_instance_uid[:60]) != [".dcm", ".json"]]
    notes = list(scp.quarantine.glob("*.json"))
    kept = list(scp.quarantine.glob("*.dcm"))
    assert missing == []
    assert len(notes) == len(kept) == len(cases)
    with scp.sessions() as session:
        assert session.scalar(select(func.count(Instance.id))) == 0


@pytest.mark.slow
def test_large_image_stored(scp: StoreSCP, send_raw: None, tmp_path: Path, figures) -> None:  # noqa: ANN001
    case = Corpus(tmp_path / "corpus").large_image()
    size = case.path.stat().st_size
    sent_offset = split_dataset(case.path)[1]

    started = time.monotonic()
    store, echo = send_case(scp.port, case)
    elapsed = time.monotonic() - started
    case.path.unlink()

    with scp.sessions() as session:
        stored = session.scalar(select(Instance))
    figures.record(bytes=size, seconds=round(elapsed, 1), stored=int(stored is not None))
    assert store == SUCCESS
    assert echo == SUCCESS
    assert Path(stored.path).stat().st_size == stored.size
    assert data_set_size(Path(stored.path)) == size - sent_offset


def data_set_size(path: Path) -> int:
    """Bytes after the File Meta Information, which pynetdicom writes anew on each side."""
    return path.stat().st_size - split_dataset(path)[1]
