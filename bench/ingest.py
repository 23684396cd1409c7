"""Ingest: dcmtk's storescu sends one set of radiographs to three SCPs, in turn, in each round.

The receivers are dcmtk's storescp (``-pdu 131072 +B +xa``: bit-preserving writes, every transfer
syntax accepted, no fsync), a bare pynetdicom SCP that writes each data set to a file and fsyncs
it (the practical limit for a Python SCP), and pedfrac's own SCP with its SQLite database and
archive, which responds only after the file is fsynced and its row committed. Each round starts
every receiver afresh and rotates their order; the ratios are taken within a round.

Run inside a loopback-only network namespace, because storescp listens on every interface::

    unshare --net -- bash -c 'ip link set lo up && .venv/bin/python -m bench.ingest'
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event
from sqlalchemy import func, select

from bench.common import (
    BenchError,
    DcmtkStoreSCP,
    base_parser,
    configure_logging,
    describe_machine,
    load_average,
    median,
    print_facts,
    print_table,
    require_loopback_only,
    require_program,
    run_main,
    spread,
    work_folder,
)
from bench.inputs import radiograph_set
from listener.scp import TRANSFER_SYNTAXES, StoreSCP
from listener.settings import DicomSettings, StorageSettings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import Instance
from tests.peers import free_port

logger = logging.getLogger(__name__)

CALLING_AE = "BENCH"
PDU_SIZE = 131072
STORESCP_OPTIONS = ("-pdu", str(PDU_SIZE), "+B", "+xa")
# storescu proposes uncompressed syntaxes by default; -xv adds JPEG 2000 lossless for those files.
STORESCU_OPTIONS = ("-xv", "-pdu", str(PDU_SIZE))
RECEIVERS = ("dcmtk storescp", "bare pynetdicom", "pedfrac")


@dataclass(frozen=True)
class Transfer:
    """One storescu run into one receiver."""

    receiver: str
    round: int
    seconds: float
    stored: int


class BareSCP:
    """A pynetdicom SCP that only writes each received data set to a file and fsyncs it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self._server = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title="BARE")
        ae.maximum_pdu_size = PDU_SIZE
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def received(self) -> int:
        return sum(1 for _ in self.folder.iterdir())

    def _store(self, event: Event) -> int:
        path = self.folder / f"{event.request.AffectedSOPInstanceUID}.dcm"
        with open(path, "wb") as stream, event.request.DataSet.getbuffer() as body:
            stream.write(b"\x00" * 128 + b"DICM" + encode_file_meta(event.file_meta))
            stream.write(body)
            stream.flush()
            os.fsync(stream.fileno())
        return 0x0000


class PedfracSCP:
    """pedfrac's StoreSCP with a fresh database and archive, as ``pedfrac serve`` builds it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        settings = DicomSettings(port=free_port(), allowed_calling_ae_titles=[CALLING_AE])
        self.sessions = open_database(sqlite_url(folder))
        self.scp = StoreSCP(settings, self.sessions, Archive(folder / "archive"),
                            min_free_bytes=StorageSettings().min_free_bytes, quarantine=folder / "quarantine")

    @property
    def port(self) -> int:
        return self.scp.port

    def start(self) -> None:
        self.scp.start()

    def stop(self) -> None:
        self.scp.stop()
        self.sessions.kw["bind"].dispose()

    def received(self) -> int:
        """Count the committed Instance rows."""
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


def send(port: int, called: str, paths: list[Path]) -> float:
    """Send ``paths`` with storescu over one association; return the seconds it took."""
    command = [require_program("storescu"), *STORESCU_OPTIONS, "-aet", CALLING_AE, "-aec", called, "127.0.0.1",
               str(port), *map(str, paths)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(f"storescu to port {port} failed with exit status {result.returncode}: "
                         f"{result.stderr.strip()[-2000:]}")
    return seconds


def run_round(number: int, order: list[str], paths: list[Path], work: Path, log_file: Path) -> list[Transfer]:
    """Send ``paths`` to each receiver in ``order``, each started afresh and removed afterwards."""
    transfers = []
    for name in order:
        folder = work / f"round{number}-{name.split()[0]}"
        receiver, called = _receiver(name, folder)
        # pedfrac runs with the INFO logging of ``pedfrac serve``; the peers keep their defaults.
        with _service_logging(log_file) if name == "pedfrac" else nullcontext():
            receiver.start()
            try:
                seconds = send(receiver.port, called, paths)
            finally:
                receiver.stop()

        stored = _stored(receiver)
        transfers.append(Transfer(name, number, seconds, stored))
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("round %d: %s took %.2f s for %d files", number, name, seconds, stored)
    return transfers


def _receiver(name: str, folder: Path) -> tuple[DcmtkStoreSCP | BareSCP | PedfracSCP, str]:
    """Return the receiver called ``name`` and its AE title."""
    if name == "dcmtk storescp":
        return DcmtkStoreSCP(folder, options=STORESCP_OPTIONS, aet="STORESCP"), "STORESCP"
    if name == "bare pynetdicom":
        return BareSCP(folder), "BARE"
    return PedfracSCP(folder), "PEDFRAC"


def _stored(receiver: DcmtkStoreSCP | BareSCP | PedfracSCP) -> int:
    if isinstance(receiver, DcmtkStoreSCP):
        return len(receiver.received())
    return receiver.received()


@contextmanager
def _service_logging(path: Path) -> Iterator[None]:
    """Log at INFO into ``path`` for the duration, as ``pedfrac serve`` logs to stderr."""
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def report(transfers: list[Transfer], paths: list[Path]) -> None:
    total_mb = sum(path.stat().st_size for path in paths) / 1e6
    count = len(paths)
    rows = []
    for name in RECEIVERS:
        seconds = [item.seconds for item in transfers if item.receiver == name]
        stored = [item.stored for item in transfers if item.receiver == name]
        rows.append([name, spread(seconds), spread([total_mb / value for value in seconds], digits=1),
                     spread([count / value for value in seconds], digits=1), f"{min(stored)}/{count}"])
    print_table(f"Ingest of {count} files, {total_mb:.0f} MB, median of {len(transfers) // len(RECEIVERS)} rounds "
                "(range in brackets)",
                ["receiver", "seconds", "MB/s", "instances/s", "stored (least of any round)"], rows)

    by_round: dict[int, dict[str, float]] = {}
    for item in transfers:
        by_round.setdefault(item.round, {})[item.receiver] = item.seconds
    pairs = [("pedfrac", "bare pynetdicom", "goal >= 0.9"), ("pedfrac", "dcmtk storescp", "goal >= 1.0"),
             ("bare pynetdicom", "dcmtk storescp", "")]
    ratio_rows = []
    for faster, slower, goal in pairs:
        # Throughput ratio: the peer's time over ours, so above 1 means faster than the peer.
        values = [times[slower] / times[faster] for times in by_round.values()]
        ratio_rows.append([f"{faster} / {slower}", spread(values), goal])
    print_table("Throughput ratios, taken within each round", ["ratio", "median (range)", "goal"], ratio_rows)


def parse_args(argv: list[str] | None):  # noqa: ANN201 - argparse.Namespace
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="number of DX files to send (default 200)")
    parser.add_argument("--min-mb", type=float, default=2.0, help="smallest uncompressed file in MB (default 2)")
    parser.add_argument("--max-mb", type=float, default=10.0, help="largest uncompressed file in MB (default 10)")
    parser.add_argument("--j2k-every", type=int, default=4,
                        help="make every Nth file JPEG 2000 lossless; 0 for none (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three receivers (default 3)")
    parser.add_argument("--inputs", type=Path,
                        help="folder for the generated files, reused when it contains a set with the same parameters "
                             "(default: inside the work folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    require_loopback_only("ingest")
    require_program("storescp")

    with work_folder(args.work_dir, keep=args.keep) as work:
        machine = describe_machine()
        paths = radiograph_set(args.inputs or work / "inputs", args.files, min_mb=args.min_mb, max_mb=args.max_mb,
                               j2k_every=args.j2k_every)
        transfers = []
        for number in range(args.rounds):
            order = list(RECEIVERS[number % 3:] + RECEIVERS[:number % 3])
            transfers += run_round(number, order, paths, work, work / "pedfrac.log")

        print_facts("Machine", machine + [("load average at end", load_average())])
        report(transfers, paths)
        _check_complete(transfers, len(paths))
    return 0


def _check_complete(transfers: list[Transfer], count: int) -> None:
    short = [item for item in transfers if item.stored != count]
    for item in short:
        print(f"warning: {item.receiver} stored {item.stored} of {count} files in round {item.round}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main))
