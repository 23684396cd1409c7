"""Pipeline overhead: one two-view study through the service's job and delivery code, stage by stage.

Each repeat sends a fresh copy of the study (new UIDs) to the service's SCP, queues its job, and
times ``StudyReader.run`` and ``Service.deliver_due`` (C-STORE of every output to dcmtk's storescp),
which together are the whole. Timing probes on the functions they call give the stages of the
same runs. The members' raw forward passes are then timed on the very tensors the ensemble builds
(the classifier's normalised input, and the detector's input as ultralytics prepares it), and the
whole is compared with their sum.

Run inside a loopback-only network namespace, because storescp listens on every interface::

    unshare --net -- bash -c 'ip link set lo up && .venv/bin/python -m bench.pipeline'
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE

from bench.common import (
    BenchError,
    DcmtkStoreSCP,
    add_models_argument,
    base_parser,
    check_models,
    configure_logging,
    describe_machine,
    load_average,
    median,
    milliseconds,
    print_facts,
    print_table,
    require_loopback_only,
    run_main,
    spread,
    work_folder,
)
from bench.inputs import two_view_studies
from bench.probes import Probe, StageClock, probes_installed

logger = logging.getLogger(__name__)

CALLING_AE = "BENCH"
# Probes on the functions a job calls. Nested stages (preprocessing, Grad-CAM and the heat map's
# resize inside a classifier's batch) are subtracted from their parent when the table is built.
PROBES = [
    Probe("listener.reading", "_read_files", "read files"),
    Probe("inference.ensemble", "display_image", "decode pixels"),
    Probe("inference.members:Classifier", "predict_batch", "classifier"),
    Probe("inference.members:Classifier", "tensor", "classifier preprocess"),
    Probe("inference.members:Classifier", "_gradcam", "classifier forward with Grad-CAM"),
    Probe("inference.members", "_unletterbox", "heat map to source size"),
    Probe("inference.members:Detector", "predict_batch", "detector"),
    Probe("inference.ensemble", "to_uint8", "display copy"),
    Probe("listener.reading", "render_overlay", "overlay render"),
    Probe("listener.reading", "build_secondary_capture", "SC build"),
    Probe("listener.reading", "build_presentation_state", "GSPS build"),
    Probe("listener.reading", "build_structured_report", "SR build"),
    Probe("listener.reading", "build_key_object_selection", "KOS build"),
    Probe("listener.reading:StudyReader", "_write", "write outputs"),
    Probe("listener.reading:StudyReader", "_record", "record"),
]


@dataclass(frozen=True)
class Repeat:
    """One timed job: the stage seconds, the reading, the delivery."""

    stages: dict[str, float]
    reading: float
    delivery: float
    outputs: int

    @property
    def whole(self) -> float:
        return self.reading + self.delivery


def build_service(work: Path, args, destination: DcmtkStoreSCP):  # noqa: ANN001, ANN201 - Namespace, Service
    """Return a Service with the default settings but for the benchmark's options, and storescp as destination."""
    from listener.service import Service
    from listener.settings import load_settings
    from tests.peers import free_port

    settings = load_settings(environ={}, overrides={
        "dicom": {"port": free_port(), "allowed_calling_ae_titles": [CALLING_AE]},
        "storage": {"data_dir": str(work / "service")},
        "inference": {"models": str(args.models), "device": args.device, "gradcam": args.gradcam,
                      "threads": args.threads},
        "delivery": {"destinations": [{"ae_title": destination.aet, "host": "127.0.0.1", "port": destination.port}]},
    })
    return Service(settings, min_free_bytes=0)


def send_fresh_copy(port: int, datasets: list[Dataset]) -> None:
    """C-STORE ``datasets`` to the SCP under new Study, Series and SOP Instance UIDs."""
    study_uid = generate_uid()
    series_uids: dict[str, str] = {}
    ae = AE(ae_title=CALLING_AE)
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)

    assoc = ae.associate("127.0.0.1", port, ae_title="PEDFRAC")
    if not assoc.is_established:
        raise BenchError(f"association with the service SCP on port {port} failed")
    try:
        for dataset in datasets:
            dataset.StudyInstanceUID = study_uid
            dataset.SeriesInstanceUID = series_uids.setdefault(str(dataset.SeriesInstanceUID), generate_uid())
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            status = assoc.send_c_store(dataset)
            if not status or status.Status != 0x0000:
                raise BenchError(f"the service SCP returned C-STORE status {status}")
    finally:
        assoc.release()


def claim_job(service) -> int:  # noqa: ANN001 - listener.service.Service
    """Queue every pending study now, regardless of the quiet period, and claim the oldest job."""
    from storage.repository import claim_next_job, queue_quiet_studies

    with service.sessions.begin() as session:
        queue_quiet_studies(session, stable_after=0.0)
        job = claim_next_job(session)
        if job is None:
            raise BenchError("no job was queued for the study just sent")
        return job.id


def timed_repeat(service, datasets: list[Dataset], clock: StageClock, destination: DcmtkStoreSCP) -> Repeat:  # noqa: ANN001
    from storage.models import JobState

    send_fresh_copy(service.scp.port, datasets)
    job_id = claim_job(service)
    before = len(destination.received())
    clock.take()

    start = time.perf_counter()
    state = service.reader.run(job_id)
    reading = time.perf_counter() - start
    stages = clock.take()
    start = time.perf_counter()
    service.deliver_due()
    delivery = time.perf_counter() - start

    if state != JobState.DONE:
        raise BenchError(f"job {job_id} ended {state.value}; run with --verbose to see why")
    outputs = len(destination.received()) - before
    return Repeat(stages, reading, delivery, outputs)


def raw_forward(service, datasets: list[Dataset], repeats: int) -> dict[str, list[float]]:  # noqa: ANN001
    """Time each member's bare forward pass on the input the ensemble builds for it, per image."""
    from inference.anatomy import resolve_anatomy
    from inference.pixels import display_image

    ensemble = service.ensemble
    seconds: dict[str, list[float]] = {}
    for dataset in datasets:
        image = display_image(dataset)
        anatomy = resolve_anatomy(dataset)
        for member in ensemble.manifest.members_for(anatomy.body_part, anatomy.view):
            model, tensor = _forward_target(ensemble, member, image)
            seconds.setdefault(member.name, [0.0] * repeats)
            for index in range(repeats + 1):
                elapsed = _time_forward(model, tensor)
                if index:  # the first call warms caches and is not counted
                    seconds[member.name][index - 1] += elapsed
    return seconds


def _forward_target(ensemble, member, image: np.ndarray):  # noqa: ANN001, ANN202 - (module, tensor)
    import torch

    if member.kind == "classifier":
        classifier = ensemble.classifiers[member.name]
        tensor, _geometry = classifier.tensor(image)
        return classifier.model, tensor

    from inference.preprocess import model_input

    detector = ensemble.detectors[member.name]
    predictor = detector.model.predictor
    if predictor is None:
        raise BenchError(f"detector {member.name} has no ultralytics predictor yet; it must predict once first")
    pixels, _geometry = model_input(image, member.input_size)
    # As ultralytics prepares a square uint8 image of the input size: channels first, RGB, 0-1.
    rgb = np.ascontiguousarray(np.repeat(pixels[None], 3, axis=0))
    tensor = torch.from_numpy(rgb)[None].to(predictor.device)
    tensor = (tensor.half() if predictor.model.fp16 else tensor.float()) / 255.0
    return predictor.model, tensor


def _time_forward(model, tensor) -> float:  # noqa: ANN001 - torch module and tensor
    import torch

    with torch.inference_mode():
        _synchronize(tensor)
        start = time.perf_counter()
        model(tensor)
        _synchronize(tensor)
        return time.perf_counter() - start


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _synchronize(tensor) -> None:  # noqa: ANN001 - torch.Tensor
    import torch

    if tensor.device.type == "cuda":
        torch.cuda.synchronize(tensor.device)


def stage_rows(repeats: list[Repeat]) -> list[tuple[str, list[float]]]:
    """Per-study seconds of each stage over the repeats, nested stages taken out of their parents."""
    def series(name: str) -> list[float]:
        return [repeat.stages.get(name, 0.0) for repeat in repeats]

    def minus(total: list[float], *parts: list[float]) -> list[float]:
        return [value - sum(part[index] for part in parts) for index, value in enumerate(total)]

    classifier, preprocess = series("classifier"), series("classifier preprocess")
    gradcam, resize = series("classifier forward with Grad-CAM"), series("heat map to source size")
    record, write = series("record"), series("write outputs")
    rows = [
        ("read files (dcmread)", series("read files")),
        ("decode pixels (display_image)", series("decode pixels")),
        ("classifier preprocess (CLAHE, letterbox, normalise)", preprocess),
        ("classifier forward with Grad-CAM (one pass)", gradcam),
        ("classifier forward without Grad-CAM", minus(classifier, preprocess, gradcam, resize)),
        ("heat map to source size", resize),
        ("detector (CLAHE, letterbox, ultralytics, NMS)", series("detector")),
        ("display copy (8-bit)", series("display copy")),
        ("overlay render", series("overlay render")),
        ("SC build", series("SC build")),
        ("GSPS build", series("GSPS build")),
        ("SR build", series("SR build")),
        ("KOS build", series("KOS build")),
        ("write outputs (encode, fsync)", write),
        ("record in database", minus(record, write)),
        ("delivery (C-STORE to storescp)", [repeat.delivery for repeat in repeats]),
    ]
    measured = [sum(values[index] for _name, values in rows) for index in range(len(repeats))]
    rows.append(("rest of the job (database reads, ensemble glue)", minus([r.whole for r in repeats], measured)))
    return rows


def report(repeats: list[Repeat], forward: dict[str, list[float]], args) -> None:  # noqa: ANN001
    wholes = [repeat.whole for repeat in repeats]
    whole_median = median(wholes)
    rows = [[name, milliseconds(values), f"{100 * median(values) / whole_median:.0f}%"]
            for name, values in stage_rows(repeats)]
    rows.append(["whole (reading and delivery)", milliseconds(wholes), "100%"])
    print_table(f"Stages of one 2-image study ({args.rows} rows, {args.body_part}), median of {len(repeats)} "
                "repeats in ms (range in brackets)", ["stage", "ms", "share of whole"], rows)

    raw_total = [sum(values[index] for values in forward.values()) for index in range(len(repeats))]
    forward_rows = [[f"raw forward, {name}", milliseconds(values)] for name, values in forward.items()]
    forward_rows.append(["raw forward, all members", milliseconds(raw_total)])
    print_table("Members' raw forward passes on the same tensors, both images, ms", ["member", "ms"], forward_rows)

    ratio = [whole / raw for whole, raw in zip(wholes, raw_total)]
    print_table("Overhead", ["ratio", "value", "goal"],
                [["whole / raw forward", spread(ratio, digits=1), "<= 1.3"],
                 ["outputs delivered per study", str(repeats[0].outputs), ""]])


def parse_args(argv: list[str] | None):  # noqa: ANN201 - argparse.Namespace
    parser = base_parser(__doc__.split("\n\n")[0])
    add_models_argument(parser)
    parser.add_argument("--rows", type=int, default=2000, help="image height in pixels (default 2000, a DX detector)")
    parser.add_argument("--body-part", choices=("wrist", "elbow"), default="wrist", help="default wrist")
    parser.add_argument("--j2k", action="store_true", help="send the images JPEG 2000 lossless instead of uncompressed")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument("--no-gradcam", dest="gradcam", action="store_false", help="turn Grad-CAM off")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: every core (the default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from inference.offline import prefer_passive_openmp_wait

    prefer_passive_openmp_wait()  # as pedfrac serve does, before anything loads torch
    args = parse_args(argv)
    configure_logging(args.verbose)
    require_loopback_only("pipeline")
    check_models(args.models)

    with work_folder(args.work_dir, keep=args.keep) as work:
        from inference.offline import configure_ultralytics_offline

        configure_ultralytics_offline(work / "ultralytics")
        machine = describe_machine()
        paths = two_view_studies(work / "inputs", 1, rows=args.rows, body_part=args.body_part, j2k=args.j2k)[0]
        datasets = [dcmread(path) for path in paths]

        destination = DcmtkStoreSCP(work / "destination", aet="PACS")
        destination.start()
        service = build_service(work, args, destination)
        service.scp.start()
        try:
            repeats = run_repeats(service, datasets, destination, args.repeats)
            forward = raw_forward(service, datasets, args.repeats)
        finally:
            service.scp.stop()
            destination.stop()

        print_facts("Machine", machine + [("load average at end", load_average()),
                                          ("model package", f"{service.ensemble.manifest.identity} ({args.models})"),
                                          ("device", str(service.ensemble.device)),
                                          ("torch threads", str(_torch_threads())),
                                          ("Grad-CAM", "on" if args.gradcam else "off")])
        report(repeats, forward, args)
    return 0


def run_repeats(service, datasets: list[Dataset], destination: DcmtkStoreSCP, count: int) -> list[Repeat]:  # noqa: ANN001
    """Run one warm-up job, then ``count`` timed jobs with the probes installed."""
    clock = StageClock()
    timed_repeat(service, datasets, clock, destination)
    with probes_installed(PROBES, clock):
        return [timed_repeat(service, datasets, clock, destination) for _ in range(count)]


if __name__ == "__main__":
    sys.exit(run_main(main))
