"""Memory: resident set size of ``pedfrac serve`` with every member loaded, idle and under load.

The service runs in a child process with dcmtk's storescp as its destination. Its VmRSS and
VmHWM (peak) are read from /proc: after start and an idle wait, while a batch of studies is
read and delivered, and after the batch. The floor beside it is a bare Python process that only
imports the libraries the service loads (torch, timm, ultralytics, OpenCV, pydicom, pynetdicom,
highdicom). The goal is a peak of at most 2 GiB on CPU.

Run inside a loopback-only network namespace, because storescp listens on every interface::

    unshare --net -- bash -c 'ip link set lo up && .venv/bin/python -m bench.memory'
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    BenchError,
    DcmtkStoreSCP,
    add_models_argument,
    base_parser,
    check_models,
    configure_logging,
    describe_machine,
    load_average,
    print_facts,
    print_table,
    require_loopback_only,
    run_main,
    work_folder,
)
from bench.inputs import two_view_studies
from bench.service import ServiceOptions, ServiceProcess, send_studies

logger = logging.getLogger(__name__)

GOAL_BYTES = 2 * 2**30
SAMPLE_SECONDS = 0.2
FLOOR_SCRIPT = (
    "import cv2, highdicom, pydicom, pynetdicom, timm, torch, ultralytics\n"
    "print(open('/proc/self/status').read())\n"
)


def memory_status(pid: int) -> dict[str, int]:
    """Return VmRSS and VmHWM of ``pid`` in bytes, from /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return _parse_status(status.read())


def _parse_status(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def framework_floor(work: Path) -> int:
    """Return the RSS of a Python process that only imports the service's libraries."""
    # Offline, as the service runs ultralytics: without these it looks up hosts at import.
    environment = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(work / "ultralytics-floor")}
    result = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT], capture_output=True, text=True, timeout=300,
                            env=environment)
    if result.returncode != 0:
        raise BenchError(f"importing the libraries failed: {result.stderr.strip()[-1000:]}")
    return _parse_status(result.stdout)["VmRSS"]


def wait_for_reports(service: ServiceProcess, destination: DcmtkStoreSCP, count: int, timeout: float) -> int:
    """Wait until ``destination`` has received ``count`` SRs, sampling the service's RSS; return the largest sample."""
    largest = 0
    deadline = time.monotonic() + timeout
    while _reports(destination) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{count - _reports(destination)} of {count} SRs had not arrived after {timeout:.0f} s; "
                             f"see {service.folder / 'pedfrac.log'}")
        largest = max(largest, memory_status(service.pid)["VmRSS"])
        time.sleep(SAMPLE_SECONDS)
    return largest


def _reports(destination: DcmtkStoreSCP) -> int:
    # storescp names each file by the modality of its SOP class; SR documents start with "SR".
    return sum(1 for path in destination.received() if path.name.startswith("SR"))


def mebibytes(value: int) -> str:
    return f"{value / 2**20:.0f}"


def report(samples: list[tuple[str, int]], floor: int) -> None:
    rows = [[name, mebibytes(value), f"{value / floor:.2f}", f"{value / GOAL_BYTES:.2f}"] for name, value in samples]
    rows.append(["floor: Python importing the same libraries", mebibytes(floor), "1.00", f"{floor / GOAL_BYTES:.2f}"])
    print_table("Resident memory of pedfrac serve, MiB", ["state", "MiB", "/ floor", "/ goal (2 GiB)"], rows)


def parse_args(argv: list[str] | None):  # noqa: ANN201 - argparse.Namespace
    parser = base_parser(__doc__.split("\n\n")[0])
    add_models_argument(parser)
    parser.add_argument("--studies", type=int, default=10, help="studies sent as the load (default 10)")
    parser.add_argument("--rows", type=int, default=2000, help="image height in pixels (default 2000)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle wait after start (default 10)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads of the service; 0: every core")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the load (default 3600)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    require_loopback_only("memory")
    models = check_models(args.models)

    with work_folder(args.work_dir, keep=args.keep) as work:
        machine = describe_machine()
        studies = two_view_studies(work / "inputs", args.studies, rows=args.rows, seed=3)
        floor = framework_floor(work)

        destination = DcmtkStoreSCP(work / "destination", aet="PACS")
        destination.start()
        options = ServiceOptions(models=models, device=args.device, threads=args.threads,
                                 destinations=[(destination.aet, destination.port)])
        service = ServiceProcess(work / "service", options)
        try:
            samples = measure(service, destination, studies, args)
        finally:
            service.stop()
            destination.stop()

        print_facts("Machine", machine + [("load average at end", load_average()), ("model package", str(models)),
                                          ("load", f"{args.studies} studies of 2 images, {args.rows} rows")])
        report(samples, floor)
    return 0


def measure(service: ServiceProcess, destination: DcmtkStoreSCP, studies: list[list[Path]],
            args) -> list[tuple[str, int]]:  # noqa: ANN001 - argparse.Namespace
    """Start the service, then sample its memory idle, under the load of ``studies``, and idle again."""
    service.start()
    time.sleep(args.idle_seconds)
    idle = memory_status(service.pid)

    send_studies(service.port, studies)
    largest = wait_for_reports(service, destination, len(studies), args.timeout)
    after_load = memory_status(service.pid)
    time.sleep(args.idle_seconds)
    settled = memory_status(service.pid)
    return [
        (f"idle, {args.idle_seconds:g} s after start", idle["VmRSS"]),
        ("peak during start (VmHWM before the load)", idle["VmHWM"]),
        ("largest sample under load", largest),
        ("peak over start and load (VmHWM)", after_load["VmHWM"]),
        (f"idle, {args.idle_seconds:g} s after the load", settled["VmRSS"]),
    ]

if __name__ == "__main__":
    sys.exit(run_main(main))
