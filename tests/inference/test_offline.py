"""Ultralytics offline: training and prediction in a fresh process with every network call blocked.

Each check runs in a subprocess, because ultralytics reads its offline settings once at import and
the test process has imported it already. The subprocess replaces ``socket.socket.connect``,
``socket.getaddrinfo`` and ``socket.create_connection`` with functions that record the attempt and
raise ``OSError``; the tests assert that nothing was recorded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

BLOCK_NETWORK = textwrap.dedent(
    """
    import json, socket, sys
    from pathlib import Path

    attempts = []

    def blocked(name):
        def refuse(*args, **kwargs):
            attempts.append([name, repr(args)[:200]])
            raise OSError(f"network call {name} blocked by the test")
        return refuse

    socket.socket.connect = blocked("socket.connect")
    socket.socket.connect_ex = blocked("socket.connect_ex")
    socket.getaddrinfo = blocked("getaddrinfo")
    socket.create_connection = blocked("create_connection")
    work = Path(sys.argv[1])
    """
)

TRAIN_AND_PREDICT = BLOCK_NETWORK + textwrap.dedent(
    """
    from inference.offline import configure_ultralytics_offline
    configure_ultralytics_offline(work / "config", threads=2)

    import torch
    from inference.phantoms import generate_dataset
    from inference.training.detector import DetectorConfig, fracture_probabilities, train_detector

    phantoms = generate_dataset(3, seed=1, fracture_rate=1.0)
    config = DetectorConfig(input_size=64, epochs=1, batch_size=2, config_dir=work / "config")
    result = train_detector(phantoms[:4], phantoms[4:], work / "detector.pt", config, work_dir=work / "run")
    scores = fracture_probabilities(result.weights, [p.image for p in phantoms[4:]], input_size=64,
                                    box_threshold=0.001, config_dir=work / "config")

    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR
    report = {
        "attempts": attempts,
        "weights": result.weights.is_file(),
        "scores": len(scores),
        "config_dir": str(USER_CONFIG_DIR),
        "settings": dict(SETTINGS),
        "threads": torch.get_num_threads(),
    }
    (work / "report.json").write_text(json.dumps(report, default=str))
    """
)

IMPORT_FIRST = BLOCK_NETWORK + textwrap.dedent(
    """
    import ultralytics
    from inference.offline import configure_ultralytics_offline
    try:
        configure_ultralytics_offline(work / "config")
    except RuntimeError as error:
        print(error)
    print(json.dumps(attempts))
    """
)


def _run(script: str, work: Path) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR", "OMP_NUM_THREADS")}
    environment["PYTHONPATH"] = str(REPOSITORY)
    # Keep ultralytics' default settings folder inside the test folder too.
    environment["XDG_CONFIG_HOME"] = str(work / "xdg")
    return subprocess.run([sys.executable, "-c", script, str(work)], cwd=work, env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("offline")
    completed = _run(TRAIN_AND_PREDICT, work)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((work / "report.json").read_text()) | {"work": str(work)}


@pytest.mark.slow
def test_no_network_attempt(report: dict) -> None:
    assert report["attempts"] == []


@pytest.mark.slow
def test_training_wrote_weights(report: dict) -> None:
    assert report["weights"]
    assert report["scores"] == 2


@pytest.mark.slow
def test_settings_in_our_folder(report: dict) -> None:
    assert report["config_dir"] == str(Path(report["work"]) / "config" / "Ultralytics")
    assert (Path(report["config_dir"]) / "settings.json").is_file()


@pytest.mark.slow
def test_sync_and_loggers_off(report: dict) -> None:
    settings = report["settings"]

    for key in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb"):
        assert settings[key] is False, key
    assert settings["api_key"] == ""


@pytest.mark.slow
def test_fonts_in_place(report: dict) -> None:
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        assert (Path(report["config_dir"]) / name).stat().st_size > 100_000


@pytest.mark.slow
def test_threads_as_configured(report: dict) -> None:
    assert report["threads"] == 2


def test_import_before_configure_rejected(tmp_path: Path) -> None:
    completed = _run(IMPORT_FIRST, tmp_path)

    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "call it before the first import of ultralytics" in completed.stdout


def test_trap_sees_online_import(tmp_path: Path) -> None:
    # Without YOLO_OFFLINE, importing ultralytics looks up DNS names: the blocked calls must record it.
    completed = _run(IMPORT_FIRST, tmp_path)

    attempts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "getaddrinfo" in [name for name, _ in attempts]
