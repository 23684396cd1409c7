"""Build of the bundled demonstration model package by the method's own commands, on synthetic phantoms.

:func:`demo_commands` lists the ``pedfrac`` command lines, and :func:`build_demo_package` runs them
in order, exactly as a hospital runs them on its own data: phantoms written in GRAZPEDWRI-DX's
layout, ``index``, ``train-classifier`` per body part, ``train-detector``, then ``package``, which
chooses the operating points on the val split and measures the test split. The manifest's
``training_data`` and metrics therefore describe the phantoms the package was made on.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from inference.package import Manifest, PackageError, verify_package

logger = logging.getLogger(__name__)

PACKAGE_NAME = "pedfrac-demo"
PACKAGE_VERSION = "0.2.0"
INTENDED_USE = (
    "Demonstration only. These models were trained and tested only on synthetic phantoms drawn by "
    "inference.phantoms, never on radiographs of patients. Not for clinical use: their outputs say "
    "nothing about fractures in real images. Use the package to exercise the service, its DICOM outputs "
    "and its monitoring."
)


@dataclass(frozen=True)
class DemoConfig:
    """Phantom patients per body part (two views each) and the training runs' sizes.

    The classifier is a small ResNet because, trained from scratch on a CPU for minutes, timm's
    ConvNeXt models stayed near chance on these phantoms (layer scale starts at 1e-6), while
    ResNets learned them. A hospital's own package uses ConvNeXt by default.
    """

    wrist_patients: int = 300
    elbow_patients: int = 300
    architecture: str = "resnet10t"
    wrist_input: int = 256
    elbow_input: int = 256
    classifier_epochs: int = 12
    classifier_patience: int = 6
    classifier_learning_rate: float = 2e-3
    detector_yaml: str = "yolov8n.yaml"
    detector_input: int = 320
    detector_epochs: int = 5
    device: str = "auto"


def demo_commands(work: Path, out_dir: Path, *, seed: int, config: DemoConfig, report_dir: Path | None = None,
                  view_classifier_from: Path | None = None) -> list[list[str]]:
    """Return the ``pedfrac`` command lines that build the demo package in ``out_dir``."""
    manifests, runs = work / "manifests", work / "runs"
    classifier = {"wrist": runs / f"wrist-{config.architecture}", "elbow": runs / f"elbow-{config.architecture}"}
    detector = runs / f"detector-{Path(config.detector_yaml).stem}"
    inputs = {"wrist": config.wrist_input, "elbow": config.elbow_input}

    commands = [
        ["make-phantoms", "--out", str(work / "wrists"), "--patients", str(config.wrist_patients),
         "--body-part", "wrist", "--seed", str(seed), "--first-patient-number", "7000"],
        ["make-phantoms", "--out", str(work / "elbows"), "--patients", str(config.elbow_patients),
         "--body-part", "elbow", "--seed", str(seed + 1), "--first-patient-number", str(7000 + config.wrist_patients)],
        ["index", "--grazpedwri", str(work / "wrists"), "--grazpedwri", str(work / "elbows"),
         "--out", str(manifests), "--seed", str(seed)],
    ]
    for part in ("wrist", "elbow"):
        commands.append([
            "train-classifier", "--manifests", str(manifests), "--body-part", part, "--out", str(classifier[part]),
            "--architecture", config.architecture, "--input-size", str(inputs[part]),
            "--epochs", str(config.classifier_epochs), "--patience", str(config.classifier_patience),
            "--learning-rate", str(config.classifier_learning_rate), "--seed", str(seed), "--device", config.device,
            "--force",
        ])
    commands.append([
        "train-detector", "--manifests", str(manifests), "--out", str(detector), "--model", config.detector_yaml,
        "--input-size", str(config.detector_input), "--epochs", str(config.detector_epochs),
        "--seed", str(seed), "--device", config.device, "--force",
    ])

    package = ["package", "--runs", str(classifier["wrist"]), str(classifier["elbow"]), str(detector),
               "--manifests", str(manifests), "--out", str(out_dir), "--name", PACKAGE_NAME,
               "--version", PACKAGE_VERSION, "--intended-use", INTENDED_USE, "--device", config.device, "--force"]
    if view_classifier_from is not None:
        package += ["--view-classifier-from", str(view_classifier_from)]
    if report_dir is not None:
        package += ["--report", str(report_dir)]
    commands.append(package)
    return commands


def build_demo_package(
    out_dir: Path,
    *,
    seed: int = 0,
    config: DemoConfig = DemoConfig(),
    work_dir: Path | None = None,
    report_dir: Path | None = None,
) -> Manifest:
    """Run :func:`demo_commands` and return the verified manifest of the package.

    A view classifier already in ``out_dir`` is carried over into the new package; otherwise none
    is added (``python -m inference.training.view`` trains one).

    Raises
    ------
    RuntimeError
        When a command fails; its message is in the log.
    """
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        return _build(Path(out_dir), seed, config, Path(work_dir), report_dir)
    with tempfile.TemporaryDirectory(prefix="pedfrac-demo-") as folder:
        return _build(Path(out_dir), seed, config, Path(folder), report_dir)


def _build(out_dir: Path, seed: int, config: DemoConfig, work: Path, report_dir: Path | None) -> Manifest:
    from listener.cli import main

    started = time.monotonic()
    previous = _previous_view_classifier(out_dir, work)
    for argv in demo_commands(work, out_dir, seed=seed, config=config, report_dir=report_dir,
                              view_classifier_from=previous):
        logger.info("demo build: pedfrac %s", " ".join(argv[:1]))
        if main(argv) != 0:
            raise RuntimeError(f"pedfrac {argv[0]} failed while building the demo package")

    manifest = verify_package(out_dir)
    logger.info("demo package %s built in %.0f s", manifest.identity, time.monotonic() - started)
    return manifest


def _previous_view_classifier(out_dir: Path, work: Path) -> Path | None:
    """Copy the package in ``out_dir`` aside when it has a view classifier, and return the copy."""
    try:
        manifest = verify_package(out_dir)
    except PackageError:
        return None
    if manifest.view_classifier is None:
        return None
    copy = work / "previous-package"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(out_dir, copy)
    return copy
