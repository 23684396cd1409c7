"""Association policy and C-STORE outcomes of the SCP: who may connect, duplicates, disk, quarantine."""
from __future__ import annotations

import errno
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from sqlalchemy import select

from listener.scp import DATASET_DOES_NOT_MATCH_SOP_CLASS, OUT_OF_RESOURCES, SUCCESS, StoreSCP
from listener.service import prepare_data_dir
from listener.settings import DicomSettings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import AuditEvent, AuditRecord, Instance, Study
from tests.listener.harness import small_dx, store_all, wait_for
from tests.peers import free_port

PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.10.1187.99.1"


def start_scp(data_dir: Path, **policy: object) -> StoreSCP:
    settings = DicomSettings(port=free_port(), allowed_calling_ae_titles=["MODALITY"], **policy)
    server = StoreSCP(settings, open_database(sqlite_url(data_dir)), Archive(data_dir / "archive"), min_free_bytes=0,
                      quarantine=data_dir / "quarantine")
    server.start()
    return server


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StoreSCP]:
    server = start_scp(tmp_path)
    yield server
    server.stop()


def associate(port: int, *, calling: str = "MODALITY", called: str = "PEDFRAC", contexts: tuple = (
        Verification, DigitalXRayImageStorageForPresentation)):  # noqa: ANN202 - pynetdicom Association
    ae = AE(ae_title=calling)
    for context in contexts:
        ae.add_requested_context(context)
    return ae.associate("127.0.0.1", port, ae_title=called)


def audit_events(scp: StoreSCP, *, at_least: int = 1) -> list[AuditRecord]:
    """The audit trail, once it contains ``at_least`` records: a rejection is audited on the server's thread."""
    def records() -> list[AuditRecord]:
        with scp.sessions() as session:
            return list(session.scalars(select(AuditRecord).order_by(AuditRecord.id)))

    wait_for(lambda: len(records()) >= at_least, timeout=10, what=f"{at_least} audit records")
    return records()


def test_wrong_called_ae_rejected(tmp_path: Path) -> None:
    server = start_scp(tmp_path, require_called_ae_title=True)
    try:
        assoc = associate(server.port, called="SOMEONE")
        events = audit_events(server)
    finally:
        server.stop()

    assert assoc.is_rejected
    assert assoc.acceptor.primitive.reason_str == "Called AE title not recognised"
    assert events[-1].event == AuditEvent.REJECTED
    assert "Called AE title not recognised" in events[-1].detail


def test_called_ae_accepted_when_ours(tmp_path: Path) -> None:
    server = start_scp(tmp_path, require_called_ae_title=True)
    try:
        assoc = associate(server.port)
        established = assoc.is_established
        assoc.release()
    finally:
        server.stop()

    assert established


def test_peer_outside_networks_rejected(tmp_path: Path) -> None:
    server = start_scp(tmp_path, allowed_peer_addresses=["10.20.30.0/24"])
    try:
        assoc = associate(server.port)
        events = audit_events(server)
    finally:
        server.stop()

    assert assoc.is_rejected
    assert assoc.acceptor.primitive.result == 0x01
    assert events[-1].peer_address == "127.0.0.1"
    assert "allowed_peer_addresses" in events[-1].detail


def test_peer_inside_networks_accepted(tmp_path: Path) -> None:
    server = start_scp(tmp_path, allowed_peer_addresses=["127.0.0.0/8"])
    try:
        assoc = associate(server.port)
        status = assoc.send_c_echo()
        assoc.release()
    finally:
        server.stop()

    assert status.Status == SUCCESS


def test_low_disk_rejects_association(scp: StoreSCP) -> None:
    scp.min_free_bytes = 1 << 62

    assoc = associate(scp.port)

    assert assoc.is_rejected
    assert assoc.acceptor.primitive.result_str == "Rejected Transient"
    assert assoc.acceptor.primitive.reason_str == "Local limit exceeded"


def test_instance_beyond_floor_refused(scp: StoreSCP) -> None:
    dataset = small_dx()
    assoc = associate(scp.port)
    scp.min_free_bytes = scp.archive.free_bytes() - 1000
    status = assoc.send_c_store(dataset)
    assoc.release()

    assert status.Status == OUT_OF_RESOURCES
    with scp.sessions() as session:
        assert session.scalar(select(Instance)) is None
    assert audit_events(scp)[-1].event == AuditEvent.REFUSED


def test_disk_full_answers_out_of_resources(scp: StoreSCP, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_args: object, **_kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scp.archive, "write", full)
    statuses = store_all(scp.port, [small_dx()])

    assert list(statuses.values()) == [OUT_OF_RESOURCES]
    with scp.sessions() as session:
        assert session.scalar(select(Instance)) is None


def test_unknown_sop_class_rejected(scp: StoreSCP) -> None:
    assoc = associate(scp.port, contexts=(Verification, PRIVATE_SOP_CLASS))
    rejected = [context.abstract_syntax for context in assoc.rejected_contexts]
    echo = assoc.send_c_echo()
    assoc.release()

    assert rejected == [PRIVATE_SOP_CLASS]
    assert echo.Status == SUCCESS


def test_identical_resend_stored_once(scp: StoreSCP) -> None:
    dataset = small_dx()

    first = store_all(scp.port, [dataset])
    second = store_all(scp.port, [dataset])

    assert list(first.values()) == list(second.values()) == [SUCCESS]
    with scp.sessions() as session:
        instance = session.scalar(select(Instance))
        versions = len(instance.versions)
    assert versions == 0
    assert len(list(Path(instance.path).parent.glob("*.dcm"))) == 1
    assert [record.event for record in audit_events(scp, at_least=2)] == [AuditEvent.RECEIVED, AuditEvent.DUPLICATE]


def test_changed_resend_keeps_both(scp: StoreSCP) -> None:
    dataset = small_dx()
    store_all(scp.port, [dataset])
    dataset.PixelData = np.zeros((32, 32), dtype=np.uint16).tobytes()

    status = store_all(scp.port, [dataset])

    with scp.sessions() as session:
        instance = session.scalar(select(Instance))
        old_path = instance.versions[0].path
        study = session.scalar(select(Study))
    assert list(status.values()) == [SUCCESS]
    assert Path(old_path).exists()
    assert not np.array_equal(dcmread(old_path).pixel_array, dcmread(instance.path).pixel_array)
    assert np.array_equal(dcmread(instance.path).pixel_array, dataset.pixel_array)
    assert study.pending is True
    assert audit_events(scp)[-1].event == AuditEvent.NEW_VERSION


def test_missing_uid_quarantined(scp: StoreSCP) -> None:
    dataset = small_dx()
    del dataset.SeriesInstanceUID

    status = store_all(scp.port, [dataset])

    assert list(status.values()) == [DATASET_DOES_NOT_MATCH_SOP_CLASS]
    kept = sorted(scp.quarantine.iterdir())
    note = json.loads(kept[1].read_text())
    assert [path.suffix for path in kept] == [".dcm", ".json"]
    assert dcmread(kept[0]).SOPInstanceUID == dataset.SOPInstanceUID
    assert note["status"] == "0xA900"
    assert "SeriesInstanceUID (0020,000E) is missing" in note["reason"]
    assert audit_events(scp)[-1].event == AuditEvent.QUARANTINED


def test_data_folder_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    prepare_data_dir(data_dir)
    server = start_scp(data_dir)
    try:
        store_all(server.port, [small_dx()])
        bad = small_dx()
        del bad.StudyInstanceUID
        store_all(server.port, [bad])
    finally:
        server.stop()

    paths = [data_dir, *data_dir.rglob("*")]
    loose = [f"{path.relative_to(tmp_path)} {stat.filemode(path.stat().st_mode)}" for path in paths
             if path.stat().st_mode & 0o077]
    assert loose == []
    assert (data_dir / "pedfrac.sqlite3-wal").exists()
