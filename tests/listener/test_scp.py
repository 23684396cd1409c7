"""The SCP over real loopback associations: statuses, allow-list, durability of what it accepts."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from sqlalchemy import select

from listener.scp import DATASET_DOES_NOT_MATCH_SOP_CLASS, OUT_OF_RESOURCES, StoreSCP
from listener.settings import DicomSettings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import Instance, Study
from tests.factories import dx_from_pixels, new_study
from tests.peers import free_port


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StoreSCP]:
    settings = DicomSettings(port=free_port(), allowed_calling_ae_titles=["MODALITY"])
    server = StoreSCP(settings, open_database(sqlite_url(tmp_path)), Archive(tmp_path / "archive"), min_free_bytes=0)
    server.start()
    yield server
    server.stop()


def small_dx():  # noqa: ANN201 - pydicom Dataset
    pixels = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    return dx_from_pixels(pixels, new_study())


def associate(scp: StoreSCP, calling: str = "MODALITY"):  # noqa: ANN201 - pynetdicom Association
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation)
    return ae.associate("127.0.0.1", scp.port, ae_title="PEDFRAC")


def test_echo_succeeds(scp: StoreSCP) -> None:
    assoc = associate(scp)
    status = assoc.send_c_echo()
    assoc.release()

    assert status.Status == 0x0000


def test_unknown_calling_ae_rejected(scp: StoreSCP) -> None:
    assoc = associate(scp, calling="STRANGER")

    assert assoc.is_rejected


def test_stored_file_matches_sent(scp: StoreSCP) -> None:
    dataset = small_dx()
    assoc = associate(scp)
    status = assoc.send_c_store(dataset)
    assoc.release()

    assert status.Status == 0x0000
    with scp.sessions() as session:
        instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == dataset.SOPInstanceUID))
        study = session.scalar(select(Study))
    stored = dcmread(instance.path)
    assert stored.SOPInstanceUID == dataset.SOPInstanceUID
    assert np.array_equal(stored.pixel_array, dataset.pixel_array)
    assert study.pending is True
    assert oct(Path(instance.path).parent.stat().st_mode & 0o777) == "0o700"


def test_missing_study_uid_status(scp: StoreSCP) -> None:
    dataset = small_dx()
    del dataset.StudyInstanceUID
    assoc = associate(scp)
    status = assoc.send_c_store(dataset)
    assoc.release()

    assert status.Status == DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_low_disk_refused(scp: StoreSCP) -> None:
    dataset = small_dx()
    assoc = associate(scp)
    scp.min_free_bytes = 1 << 62
    status = assoc.send_c_store(dataset)
    assoc.release()

    assert status.Status == OUT_OF_RESOURCES
    with scp.sessions() as session:
        assert session.scalar(select(Instance)) is None


def test_own_output_starts_no_job(scp: StoreSCP) -> None:
    dataset = small_dx()
    dataset.Manufacturer = "pedfrac"
    assoc = associate(scp)
    status = assoc.send_c_store(dataset)
    assoc.release()

    assert status.Status == 0x0000
    with scp.sessions() as session:
        instance = session.scalar(select(Instance))
        study = session.scalar(select(Study))
    assert instance.own_output is True
    assert study.pending is False
