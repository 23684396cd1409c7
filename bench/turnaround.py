"""Turnaround: from the last C-STORE response of a study to its SR stored in Orthanc, less the quiet period.

``pedfrac serve`` runs in a child process with Orthanc as its destination; the benchmark sends
the studies itself, so it records when each study's last C-STORE response came, and polls Orthanc's
REST API for the arrival of each study's SR. Three phases: the first study after the service
started (cold), one more study (warm), and a batch of studies sent at once, for throughput.
The anchor is an orchestrator that returns results 2 to 3 minutes after the last image.

Run inside a loopback-only network namespace, because Orthanc listens on every interface::

    unshare --net -- bash -c 'ip link set lo up && .venv/bin/python -m bench.turnaround'
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from bench.common import (
    BenchError,
    add_models_argument,
    base_parser,
    check_models,
    configure_logging,
    describe_machine,
    load_average,
    median,
    print_facts,
    print_table,
    require_loopback_only,
    require_program,
    run_main,
    work_folder,
)
from bench.inputs import two_view_studies
from bench.service import ServiceOptions, ServiceProcess, send_studies
from tests.peers import ORTHANC, Orthanc

logger = logging.getLogger(__name__)

# Orchestrators that return results 2 to 3 minutes after the last image.
ORCHESTRATOR_SECONDS = (120.0, 180.0)
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Phase:
    """One sending of studies and when their SRs arrived; times are ``time.monotonic()`` values."""

    name: str
    sent: list[float]
    arrived: list[float]
    stable_after: float

    @property
    def turnarounds(self) -> list[float]:
        return [arrived - sent - self.stable_after for sent, arrived in zip(self.sent, self.arrived)]

    @property
    def studies_per_hour(self) -> float:
        """Studies read per hour of the window from the first study's quiet end to the last SR."""
        window = max(self.arrived) - (min(self.sent) + self.stable_after)
        return len(self.sent) / window * 3600


def study_uids(studies: list[list[Path]]) -> list[str]:
    return [str(dcmread(study[0], stop_before_pixels=True).StudyInstanceUID) for study in studies]


def reported_studies(orthanc: Orthanc) -> set[str]:
    """Return the Study Instance UIDs of the studies in Orthanc that contain an SR."""
    found = orthanc.request("POST", "/tools/find", {"Level": "Study", "Query": {"ModalitiesInStudy": "SR"},
                                                    "Expand": True})
    return {study["MainDicomTags"]["StudyInstanceUID"] for study in found}  # type: ignore[union-attr]


def run_phase(name: str, service: ServiceProcess, orthanc: Orthanc, studies: list[list[Path]], *,
              stable_after: float, timeout: float) -> Phase:
    """Send ``studies`` at once and wait until Orthanc contains an SR for each."""
    uids = study_uids(studies)
    sent = send_studies(service.port, studies)
    arrived: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(arrived) < len(uids):
        if time.monotonic() > deadline:
            raise BenchError(f"{name}: {len(uids) - len(arrived)} of {len(uids)} SRs had not reached Orthanc after "
                             f"{timeout:.0f} s; see {service.folder / 'pedfrac.log'}")
        if service.process is None or service.process.poll() is not None:
            raise BenchError(f"pedfrac serve exited during {name}; see {service.folder / 'pedfrac.log'}")
        now = time.monotonic()
        for uid in reported_studies(orthanc) & set(uids):
            arrived.setdefault(uid, now)
        time.sleep(POLL_SECONDS)
    return Phase(name, sent, [arrived[uid] for uid in uids], stable_after)


def report(phases: list[Phase]) -> None:
    rows = []
    for phase in phases:
        values = phase.turnarounds
        low, high = ORCHESTRATOR_SECONDS
        throughput = f"{phase.studies_per_hour:.0f}" if len(values) > 1 else "-"
        rows.append([phase.name, len(values), f"{median(values):.1f}", f"{max(values):.1f}", throughput,
                     f"{median(values) / high:.3f}-{median(values) / low:.3f}"])
    print_table(f"Turnaround in seconds, from a study's last C-STORE response to its SR in Orthanc, less the quiet "
                f"period ({phases[0].stable_after:g} s)",
                ["phase", "studies", "median", "max", "studies/hour", "median / 2-3 min orchestrator"], rows)


def parse_args(argv: list[str] | None):  # noqa: ANN201 - argparse.Namespace
    parser = base_parser(__doc__.split("\n\n")[0])
    add_models_argument(parser)
    parser.add_argument("--studies", type=int, default=50, help="studies in the batch sent at once (default 50)")
    parser.add_argument("--rows", type=int, default=2000, help="image height in pixels (default 2000)")
    parser.add_argument("--body-part", choices=("wrist", "elbow"), default="wrist", help="default wrist")
    parser.add_argument("--stable-after", type=float, default=2.0,
                        help="the service's quiet period in seconds, subtracted from each turnaround (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads of the service; 0: every core")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for a phase (default 3600)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    require_loopback_only("turnaround")
    require_program(ORTHANC)
    models = check_models(args.models)

    with work_folder(args.work_dir, keep=args.keep) as work:
        machine = describe_machine()
        single = two_view_studies(work / "inputs-single", 2, rows=args.rows, body_part=args.body_part, seed=1)
        batch = two_view_studies(work / "inputs-batch", args.studies, rows=args.rows, body_part=args.body_part,
                                 seed=2)

        options = ServiceOptions(models=models, stable_after=args.stable_after, device=args.device,
                                 threads=args.threads)
        service = ServiceProcess(work / "service", options)
        orthanc = Orthanc(work / "orthanc", {"PEDFRAC": ("PEDFRAC", "127.0.0.1", service.port)})
        orthanc.start()
        options.destinations.append((Orthanc.aet, orthanc.dicom_port))
        try:
            service.start()
            phases = [
                run_phase(name, service, orthanc, studies, stable_after=args.stable_after, timeout=args.timeout)
                for name, studies in (("first study after start", single[:1]), ("one study, warm", single[1:]),
                                      (f"{args.studies} studies at once", batch))
            ]
        finally:
            service.stop()
            orthanc.stop()

        print_facts("Machine", machine + [("load average at end", load_average()), ("model package", str(models)),
                                          ("images", f"2 per study, {args.rows} rows, {args.body_part}")])
        report(phases)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
