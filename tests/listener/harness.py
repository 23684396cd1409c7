"""Test peers and helpers for the fault-injection tests: a counting PACS, a service process, senders.

Everything listens on 127.0.0.1 and every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from listener.scp import TRANSFER_SYNTAXES
from listener.scu import disable_nagle
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import Delivery, DeliveryState, JobState, utcnow
from storage.repository import (
    ReceivedInstance,
    add_output,
    claim_next_job,
    finish_job,
    queue_quiet_studies,
    record_instance,
)
from tests.factories import dx_from_pixels, new_study
from tests.peers import free_port, stop_process, wait_for_port


class CountingPACS:
    """A pynetdicom Storage SCP and Study Root C-FIND SCP that counts every C-STORE it receives.

    Parameters
    ----------
    allowed_calling
        Calling AE titles accepted; others get A-ASSOCIATE-RJ "calling AE title not recognised".
    on_store
        Called with the SOP Instance UID and its count so far, after the object is kept and
        before the C-STORE response is sent.
    """

    def __init__(self, aet: str = "PACS", *, allowed_calling: list[str] | None = None,
                 on_store: Callable[[str, int], None] | None = None, ssl_context=None,  # noqa: ANN001
                 port: int = 0) -> None:
        self.aet = aet
        self.requested_port = port
        self.allowed_calling = allowed_calling or []
        self.on_store = on_store
        self.ssl_context = ssl_context
        self.received: Counter[str] = Counter()
        self.datasets: dict[str, Dataset] = {}
        self.finds = 0
        self._lock = threading.Lock()
        self._server = None

    def start(self) -> CountingPACS:
        ae = AE(ae_title=self.aet)
        ae.require_calling_aet = self.allowed_calling
        ae.add_supported_context(Verification)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_C_FIND, self._find)]
        self._server = ae.start_server(("127.0.0.1", self.requested_port), block=False, evt_handlers=handlers,
                                       ssl_context=self.ssl_context)
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def name(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def count(self, sop_uid: str) -> int:
        with self._lock:
            return self.received[sop_uid]

    def total(self) -> int:
        with self._lock:
            return sum(self.received.values())

    def _store(self, event: Event) -> int:
        dataset = event.dataset
        uid = str(dataset.SOPInstanceUID)
        with self._lock:
            self.received[uid] += 1
            self.datasets[uid] = dataset
            count = self.received[uid]
        if self.on_store is not None:
            self.on_store(uid, count)
        return 0x0000

    def _find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        self.finds += 1
        wanted = str(event.identifier.get("SOPInstanceUID", ""))
        with self._lock:
            stored = self.datasets.get(wanted)
        if stored is not None:
            match = Dataset()
            match.QueryRetrieveLevel = "IMAGE"
            match.StudyInstanceUID = stored.StudyInstanceUID
            match.SeriesInstanceUID = stored.SeriesInstanceUID
            match.SOPInstanceUID = stored.SOPInstanceUID
            yield 0xFF00, match
        yield 0x0000, None


@dataclass
class ServiceProcess:
    """``pedfrac serve`` in a child process, logging to a file, so it can be killed with SIGKILL."""

    config: Path
    log: Path
    port: int
    process: subprocess.Popen | None = None
    starts: int = field(default=0)

    def start(self, *extra: str, timeout: float = 180) -> ServiceProcess:
        self.starts += 1
        stream = self.log.open("ab")
        command = [sys.executable, "-m", "listener.cli", *extra, "serve", "--config", str(self.config)]
        self.process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=timeout, process=self.process)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or committed that was not already."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def write_config(path: Path, *, port: int, data_dir: Path, models: Path, allow: list[str] = (),
                 destinations: list[dict] = (), stable_after: float = 600.0, extra: str = "") -> Path:
    """Write a settings file for a test service on 127.0.0.1."""
    lines = [
        "[dicom]", f"port = {port}", f"allowed_calling_ae_titles = {list(allow)!r}".replace("'", '"'),
        "[study]", f"stable_after = {stable_after}", "poll_interval = 0.2",
        "[storage]", f'data_dir = "{data_dir}"', "min_free_bytes = 0",
        "[inference]", f'models = "{models}"', 'device = "cpu"',
        "[delivery]", "backoff_initial = 0.5", "backoff_max = 2.0", "timeout = 20.0",
    ]
    for destination in destinations:
        lines.append("[[delivery.destinations]]")
        for key, value in destination.items():
            lines.append(f"{key} = {_toml_value(value)}")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def small_dx(study: Dataset | None = None, *, seed: int = 0, side: int = 32) -> Dataset:
    """A small 12-bit DX image with seeded pixels."""
    pixels = np.random.default_rng(seed).integers(0, 4096, size=(side, side), dtype=np.uint16)
    dataset = dx_from_pixels(pixels, study or new_study())
    dataset.BitsStored = 12
    dataset.HighBit = 11
    return dataset


def store_all(port: int, datasets: list[Dataset], *, calling: str = "MODALITY",
              after_each: Callable[[str, int], None] | None = None, timeout: float = 30) -> dict[str, int | None]:
    """Send ``datasets`` over one association; return SOP Instance UID to status (None: no response)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in sorted({str(dataset.SOPClassUID) for dataset in datasets}):
        ae.add_requested_context(sop_class)
    statuses: dict[str, int | None] = {str(dataset.SOPInstanceUID): None for dataset in datasets}
    assoc = ae.associate("127.0.0.1", port, ae_title="PEDFRAC", evt_handlers=[(evt.EVT_CONN_OPEN, disable_nagle)])
    if not assoc.is_established:
        return statuses

    try:
        for dataset in datasets:
            uid = str(dataset.SOPInstanceUID)
            try:
                answer = assoc.send_c_store(dataset)
            except RuntimeError:
                break
            statuses[uid] = int(answer.Status) if answer and "Status" in answer else None
            if after_each is not None and statuses[uid] is not None:
                after_each(uid, statuses[uid])
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def prepare_outputs(data_dir: Path, destinations: list[str], count: int) -> list[str]:
    """Record a read study whose job made ``count`` output files, each pending for every destination.

    Returns the outputs' SOP Instance UIDs. This replaces a reading, so delivery tests need
    no model package.
    """
    sessions = database(data_dir)
    archive = Archive(data_dir / "archive")
    study = new_study()
    outputs = []
    with sessions.begin() as session:
        record_instance(session, ReceivedInstance(
            study_instance_uid=str(study.StudyInstanceUID), series_instance_uid=f"{study.StudyInstanceUID}.1",
            sop_instance_uid=f"{study.StudyInstanceUID}.1.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
            transfer_syntax_uid="1.2.840.10008.1.2.1", modality="DX", path="/dev/null", size=0, sha256="0" * 64,
            calling_ae_title="MODALITY", own_output=False))
        queue_quiet_studies(session, stable_after=0, now=utcnow() + timedelta(seconds=1))
        job = claim_next_job(session)
        for index in range(count):
            dataset = small_dx(study, seed=index, side=16)
            dataset.Manufacturer = "pedfrac"
            path = archive.path_for("outputs", str(study.StudyInstanceUID), str(dataset.SeriesInstanceUID),
                                    str(dataset.SOPInstanceUID))
            buffer = BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            archive.write(path, buffer.getvalue())
            add_output(session, job, sop_instance_uid=str(dataset.SOPInstanceUID), sop_class_uid=str(dataset.SOPClassUID),
                       series_instance_uid=str(dataset.SeriesInstanceUID), kind="overlay", path=str(path),
                       destinations=destinations)
            outputs.append(str(dataset.SOPInstanceUID))
        job.model_identity = "pedfrac-test 0.0.0"
        finish_job(session, job, JobState.DONE)
    sessions.kw["bind"].dispose()
    return outputs


def delivery_states(data_dir: Path) -> dict[str, tuple[DeliveryState, int]]:
    """SOP Instance UID of each output to (state, attempts) of its delivery."""
    sessions = database(data_dir)
    with sessions() as session:
        rows = {delivery.output.sop_instance_uid: (delivery.state, delivery.attempts)
                for delivery in session.scalars(select(Delivery))}
    sessions.kw["bind"].dispose()
    return rows


def database(data_dir: Path) -> sessionmaker[Session]:
    return open_database(sqlite_url(data_dir))


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met after {timeout} s")


__all__ = ["CountingPACS", "ServiceProcess", "database", "free_port", "small_dx", "store_all", "wait_for",
           "write_config"]
