"""``pedfrac serve`` in a child process, with a settings file written for one benchmark run."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE

from bench.common import BenchError
from tests.peers import free_port, wait_for_port

logger = logging.getLogger(__name__)

CALLING_AE = "BENCH"
PEDFRAC = Path(sys.executable).with_name("pedfrac")


@dataclass
class ServiceOptions:
    """The settings a benchmark varies; everything else keeps its default."""

    models: Path
    stable_after: float = 2.0
    device: str = "cpu"
    threads: int = 0
    destinations: list[tuple[str, int]] = field(default_factory=list)


class ServiceProcess:
    """``pedfrac serve`` started with a settings file in ``folder``, logging into ``folder/pedfrac.log``."""

    def __init__(self, folder: Path, options: ServiceOptions) -> None:
        self.folder = folder
        self.port = free_port()
        self.options = options
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("the service is not running")
        return self.process.pid

    def start(self, *, timeout: float = 300.0) -> None:
        """Start the service and return once its SCP accepts connections (after the models loaded)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "pedfrac.toml"
        config.write_text(self._settings_text())
        log = (self.folder / "pedfrac.log").open("wb")
        self.process = subprocess.Popen([str(PEDFRAC), "serve", "--config", str(config)], stdout=log,
                                        stderr=subprocess.STDOUT, env=_child_environment())
        try:
            wait_for_port(self.port, timeout=timeout, process=self.process)
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise BenchError(f"pedfrac serve did not start: {error}; see {self.folder / 'pedfrac.log'}") from error

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=150)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _settings_text(self) -> str:
        """Return the TOML settings; strings are written as JSON strings, which TOML reads alike."""
        options = self.options
        destinations = ", ".join(
            f'{{ ae_title = {json.dumps(title)}, host = "127.0.0.1", port = {port} }}'
            for title, port in options.destinations
        )
        return "\n".join([
            "[dicom]",
            f"port = {self.port}",
            f"allowed_calling_ae_titles = [{json.dumps(CALLING_AE)}]",
            "[study]",
            f"stable_after = {options.stable_after}",
            "[storage]",
            f"data_dir = {json.dumps(str(self.folder / 'data'))}",
            "min_free_bytes = 0",
            "[inference]",
            f"models = {json.dumps(str(options.models))}",
            f"device = {json.dumps(options.device)}",
            f"threads = {options.threads}",
            "[delivery]",
            f"destinations = [{destinations}]",
            "",
        ])


def _child_environment() -> dict[str, str]:
    """Return this environment without PEDFRAC_* overrides, so only the settings file applies."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PEDFRAC_")}


def send_studies(port: int, studies: list[list[Path]]) -> list[float]:
    """C-STORE every study over one association; return, per study, when its last response came.

    Times are ``time.monotonic()`` values.
    """
    ae = AE(ae_title=CALLING_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 300
    for sop_class, syntax in sorted({_context_of(path) for study in studies for path in study}):
        ae.add_requested_context(sop_class, syntax)

    assoc = ae.associate("127.0.0.1", port, ae_title="PEDFRAC")
    if not assoc.is_established:
        raise BenchError(f"association with pedfrac on port {port} failed")
    finished = []
    try:
        for study in studies:
            for path in study:
                status = assoc.send_c_store(path)
                if not status or status.Status != 0x0000:
                    raise BenchError(f"pedfrac returned C-STORE status {status} for {path.name}")
            finished.append(time.monotonic())
    finally:
        assoc.release()
    return finished


def _context_of(path: Path) -> tuple[str, str]:
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
