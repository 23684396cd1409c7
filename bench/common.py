"""Helpers shared by the benchmarks: machine description, tables, ratios, timers and dcmtk's storescp."""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from listener.settings import BUNDLED_MODELS
from tests.peers import free_port, stop_process, wait_for_port

logger = logging.getLogger(__name__)

NAMESPACE_COMMAND = "unshare --net -- bash -c 'ip link set lo up && .venv/bin/python -m bench.NAME ...'"


class BenchError(Exception):
    """A benchmark cannot run as requested; the message states what to change."""


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a benchmark's ``main`` and turn a BenchError into exit status 2 with its message."""
    try:
        return main(argv)
    except BenchError as error:
        print(f"benchmark not run: {error}", file=sys.stderr)
        return 2


def base_parser(description: str) -> argparse.ArgumentParser:
    """Return a parser with the options every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work-dir", type=Path,
                        help="folder for generated inputs, received files and databases (default: a new temporary "
                             "folder, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--verbose", action="store_true", help="log at INFO level instead of WARNING")
    return parser


def add_models_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=BUNDLED_MODELS,
                        help=f"model package folder (default: the bundled package {BUNDLED_MODELS})")


def configure_logging(verbose: bool) -> None:
    """Log to stderr at INFO with ``verbose``, else at WARNING; the level is the handler's own."""
    level = logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def check_models(folder: Path) -> Path:
    """Return ``folder`` when it contains a model package manifest, else raise BenchError."""
    if not (folder / "manifest.json").is_file():
        raise BenchError(f"model package {folder} has no manifest.json; pass --models FOLDER "
                         "(tests/packages.py untrained_package writes one for plumbing checks)")
    return folder


@contextmanager
def work_folder(requested: Path | None, *, keep: bool) -> Iterator[Path]:
    """Yield ``requested`` (created when missing) or a temporary folder removed afterwards unless ``keep``."""
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        yield requested
        return

    folder = Path(tempfile.mkdtemp(prefix="pedfrac-bench-"))
    try:
        yield folder
    finally:
        if keep:
            print(f"work folder kept: {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def require_loopback_only(name: str) -> None:
    """Raise BenchError unless this process runs in a network namespace whose only interface is ``lo``.

    dcmtk's storescp and Orthanc listen on every interface, so the benchmarks that start them run
    only where nothing outside the machine can reach them.
    """
    interfaces = sorted(interface for _index, interface in socket.if_nameindex())
    if interfaces != ["lo"]:
        raise BenchError(f"this benchmark starts DICOM listeners and needs a loopback-only network namespace, "
                         f"found interfaces {interfaces}; run it as {NAMESPACE_COMMAND.replace('NAME', name)}")


def require_program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found on PATH; scripts/install.sh installs it from Debian's packages")
    return found


def describe_machine() -> list[tuple[str, str]]:
    """Return the facts a reader needs to compare two runs: CPU, cores, memory, load, versions."""
    import torch

    cpu = _cpu_model()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("memory", f"{memory_gib:.1f} GiB"),
        ("GPU", gpu),
        ("load average (1, 5, 15 min) at start", load_average()),
        ("OpenMP in the benchmark process", f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
                   f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"),
        ("software", f"Python {platform.python_version()}, torch {torch.__version__}, {platform.system()} "
                     f"{platform.release()}"),
    ]


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_facts(title: str, facts: Sequence[tuple[str, str]]) -> None:
    print(f"\n{title}\n")
    for name, value in facts:
        print(f"- {name}: {value}")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table, so the output can go into docs/performance.md unchanged."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[index]) for row in cells)) for index, header in enumerate(headers)]

    print(f"\n{title}\n")
    print("| " + " | ".join(str(header).ljust(width) for header, width in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in cells:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], *, digits: int = 2) -> str:
    """Format the median with the range, such as ``1.23 (1.10-1.40)``; one value prints alone."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def milliseconds(values: Sequence[float]) -> str:
    return spread([value * 1000 for value in values], digits=1)


class DcmtkStoreSCP:
    """dcmtk's storescp writing every received object into ``folder``, on a free port.

    Parameters
    ----------
    folder
        Output directory; created when missing.
    options
        Extra storescp options, such as ``("-pdu", "131072", "+B")``.
    aet
        The AE title of storescp.
    """

    def __init__(self, folder: Path, *, options: Sequence[str] = (), aet: str = "STORESCP") -> None:
        self.folder = folder
        self.options = tuple(options)
        self.aet = aet
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder.parent / f"storescp-{self.port}.log").open("wb")
        command = [require_program("storescp"), "--aetitle", self.aet, "--output-directory", str(self.folder),
                   *self.options, str(self.port)]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def received(self) -> list[Path]:
        return sorted(path for path in self.folder.iterdir() if path.is_file())
