"""GPU: the ensemble on CUDA, reading studies one at a time and batched across studies, in images/s.

For the device machine, but it runs anywhere: ``--device auto`` (the default) takes CUDA when
torch finds it and the CPU otherwise, so a CPU-only machine runs the same code on a small input.
Three rates are measured in the same run: the members' bare forward passes on full batches (the
ceiling), :meth:`Ensemble.read_study` per study (what the service's job loop does today), and
:meth:`Ensemble.read_studies` with each member batched across studies. The overlays and reports
built from the findings (CPU work) are timed beside them. No sockets are opened, so no network
namespace is needed. Goal on an H200: at least 500 images/s batched.

NOTE: the CUDA path of this script is untested; no CUDA figure has been measured with it.

    .venv/bin/python -m bench.gpu --studies 256 --batch-size 64
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from bench.common import (
    add_models_argument,
    base_parser,
    check_models,
    configure_logging,
    describe_machine,
    load_average,
    milliseconds,
    print_facts,
    print_table,
    run_main,
    spread,
    work_folder,
)
from bench.inputs import two_view_studies
from bench.probes import Probe, StageClock, probes_installed

logger = logging.getLogger(__name__)

PROBES = [
    Probe("inference.ensemble", "display_image", "decode pixels (summed over decode threads)"),
    Probe("inference.members:Classifier", "tensor", "classifier preprocess"),
    Probe("inference.members:Classifier", "_gradcam", "classifier forward with Grad-CAM"),
    Probe("inference.members", "_unletterbox", "heat map to source size"),
    Probe("inference.members:Detector", "predict_batch", "detector (preprocess, forward, NMS)"),
    Probe("inference.ensemble", "to_uint8", "display copy"),
]


@dataclass(frozen=True)
class Rate:
    """Images read over seconds, per repeat."""

    name: str
    images: int
    seconds: list[float]

    @property
    def per_second(self) -> list[float]:
        return [self.images / value for value in self.seconds]


def load_studies(groups: list[list[Path]], count: int) -> list[tuple[str, list]]:
    """Read ``count`` studies from the distinct ``groups``, cycling; each read parses its files afresh."""
    studies = []
    for index in range(count):
        datasets = [dcmread(path) for path in groups[index % len(groups)]]
        studies.append((str(datasets[0].StudyInstanceUID), datasets))
    return studies


def time_sequential(ensemble, groups: list[list[Path]], count: int) -> float:  # noqa: ANN001 - Ensemble
    studies = load_studies(groups, count)
    start = time.perf_counter()
    for uid, datasets in studies:
        ensemble.read_study(uid, datasets)
    return time.perf_counter() - start


def time_batched(ensemble, groups: list[list[Path]], count: int, per_call: int) -> tuple[float, list]:  # noqa: ANN001
    """Read ``count`` studies with read_studies, ``per_call`` studies a call; return seconds and findings."""
    studies = load_studies(groups, count)
    findings = []
    start = time.perf_counter()
    for first in range(0, len(studies), per_call):
        findings += ensemble.read_studies(studies[first : first + per_call])
    return time.perf_counter() - start, list(zip(studies, findings))


def time_outputs(read: list) -> float:
    """Build one overlay Secondary Capture per image and one SR per study, as a job does; return seconds."""
    from reporting.identifiers import new_uid
    from reporting.overlay import render_overlay
    from reporting.secondary_capture import build_secondary_capture
    from reporting.structured_report import build_structured_report

    start = time.perf_counter()
    for (_uid, datasets), finding in read:
        sources = {str(dataset.SOPInstanceUID): dataset for dataset in datasets}
        identity = f"{finding.model_name} {finding.model_version}"
        series = new_uid()
        for number, image in enumerate(finding.images, start=1):
            overlay = render_overlay(image, language="en", model_identity=identity)
            build_secondary_capture(sources[image.sop_instance_uid], overlay, image, series_instance_uid=series,
                                    instance_number=number, model_identity=identity)
        build_structured_report([sources[image.sop_instance_uid] for image in finding.images], finding,
                                series_instance_uid=new_uid(), model_identity=identity,
                                algorithm_name=finding.model_name, algorithm_version=finding.model_version)
    return time.perf_counter() - start


def forward_ceiling(ensemble, batch_size: int, repeats: int) -> float:  # noqa: ANN001 - Ensemble
    """Return the seconds that every member's bare forward pass takes on one full batch (median of ``repeats``)."""
    import torch

    # The view classifier runs only on images whose tags do not name the view, so it is left out.
    members = [member for member in ensemble.manifest.members if member.kind != "view_classifier"]
    seconds = []
    for _ in range(repeats + 1):
        total = 0.0
        for member in members:
            model = (ensemble.classifiers[member.name].model if member.kind == "classifier"
                     else ensemble.detectors[member.name].model.predictor.model)
            channels = member.in_chans if member.kind == "classifier" else 3
            batch = torch.rand(batch_size, channels, member.input_size, member.input_size, device=ensemble.device)
            total += _timed_forward(model, batch)
        seconds.append(total)
    return sorted(seconds[1:])[len(seconds[1:]) // 2]


def _timed_forward(model, batch) -> float:  # noqa: ANN001 - torch module and tensor
    import torch

    with torch.inference_mode():
        _synchronize(batch)
        start = time.perf_counter()
        model(batch)
        _synchronize(batch)
        return time.perf_counter() - start


def _synchronize(tensor) -> None:  # noqa: ANN001 - torch.Tensor
    import torch

    if tensor.device.type == "cuda":
        torch.cuda.synchronize(tensor.device)


def report(rates: list[Rate], stages: list[dict[str, float]], images: int, args) -> None:  # noqa: ANN001
    rows = [[rate.name, spread(rate.per_second, digits=1)] for rate in rates]
    print_table(f"Images per second, {images} images a repeat, median of {args.repeats} (range in brackets)",
                ["path", "images/s"], rows)

    by_name = {rate.name: rate for rate in rates}
    batched, sequential = by_name["read_studies, batched across studies"], by_name["read_study, one study a call"]
    ceiling = by_name[f"bare forward passes, batch {args.batch_size}"]
    ratios = [
        ["batched / one study a call", spread([b / s for b, s in zip(batched.per_second, sequential.per_second)])],
        ["batched / bare forward ceiling", spread([b / c for b, c in zip(batched.per_second, ceiling.per_second)])],
    ]
    print_table("Ratios, within each repeat (goal on an H200: at least 500 images/s batched)",
                ["ratio", "median (range)"], ratios)

    names = sorted({name for repeat in stages for name in repeat})
    stage_rows = [[name, milliseconds([repeat.get(name, 0.0) / images for repeat in stages])] for name in names]
    print_table("Stages of the batched reading, ms per image", ["stage", "ms per image"], stage_rows)


def parse_args(argv: list[str] | None):  # noqa: ANN201 - argparse.Namespace
    parser = base_parser(__doc__.split("\n\n")[0])
    add_models_argument(parser)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when torch finds it, else the CPU (default)")
    parser.add_argument("--studies", type=int, default=64, help="two-image studies read per repeat (default 64)")
    parser.add_argument("--distinct", type=int, default=8, help="distinct studies generated and cycled (default 8)")
    parser.add_argument("--rows", type=int, default=2000, help="image height in pixels (default 2000)")
    parser.add_argument("--batch-size", type=int, default=32, help="images a member reads per pass (default 32)")
    parser.add_argument("--studies-per-call", type=int, default=16,
                        help="studies passed to one read_studies call (default 16)")
    parser.add_argument("--decode-workers", type=int, default=os.cpu_count() or 1,
                        help="threads that decode pixel data (default: one per logical CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (default 3)")
    parser.add_argument("--no-gradcam", dest="gradcam", action="store_false", help="turn Grad-CAM off")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from inference.offline import configure_ultralytics_offline, prefer_passive_openmp_wait

    prefer_passive_openmp_wait()  # as pedfrac serve does, before anything loads torch
    args = parse_args(argv)
    configure_logging(args.verbose)
    check_models(args.models)

    with work_folder(args.work_dir, keep=args.keep) as work:
        configure_ultralytics_offline(work / "ultralytics")
        from inference.ensemble import Ensemble

        machine = describe_machine()
        groups = two_view_studies(work / "inputs", args.distinct, rows=args.rows, seed=4)
        ensemble = Ensemble(args.models, device=args.device, gradcam=args.gradcam, batch_size=args.batch_size,
                            decode_workers=args.decode_workers)
        rates, stages = measure(ensemble, groups, args)

        print_facts("Machine", machine + [("load average at end", load_average()),
                                          ("model package", f"{ensemble.manifest.identity} ({args.models})"),
                                          ("device", str(ensemble.device)),
                                          ("images", f"{args.rows} rows, 2 per study"),
                                          ("Grad-CAM", "on" if args.gradcam else "off")])
        report(rates, stages, 2 * args.studies, args)
    return 0


def measure(ensemble, groups: list[list[Path]], args) -> tuple[list[Rate], list[dict[str, float]]]:  # noqa: ANN001
    """Warm up, then time the ceiling, the per-study path, the batched path and the outputs, per repeat."""
    ensemble.warm_up()
    time_batched(ensemble, groups, min(args.studies, args.studies_per_call), args.studies_per_call)

    images = 2 * args.studies
    clock = StageClock()
    ceiling, sequential, batched, with_outputs, stages = [], [], [], [], []
    for _ in range(args.repeats):
        ceiling.append(forward_ceiling(ensemble, args.batch_size, 1) * images / args.batch_size)
        sequential.append(time_sequential(ensemble, groups, args.studies))
        clock.take()
        with probes_installed(PROBES, clock):
            seconds, read = time_batched(ensemble, groups, args.studies, args.studies_per_call)
        stages.append(clock.take())
        batched.append(seconds)
        with_outputs.append(seconds + time_outputs(read))

    return [
        Rate(f"bare forward passes, batch {args.batch_size}", images, ceiling),
        Rate("read_study, one study a call", images, sequential),
        Rate("read_studies, batched across studies", images, batched),
        Rate("read_studies and the overlays and SR (CPU)", images, with_outputs),
    ], stages


if __name__ == "__main__":
    sys.exit(run_main(main))
