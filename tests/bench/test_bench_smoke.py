"""Each benchmark runs once on a tiny input and prints its tables; times are not checked.

The benchmarks run as their documented commands, ``python -m bench.<name>``, in child processes,
with an untrained model package so that they do not depend on the bundled one.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.packages import untrained_package

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_package(tmp_path_factory.mktemp("package"))


def run_bench(name: str, *options: str, work: Path) -> str:
    """Run ``python -m bench.<name>`` and return its standard output; fail with its error output."""
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", "--work-dir", str(work), *options],
                            cwd=REPOSITORY, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"bench.{name} failed:\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_ingest_prints_ratios(tmp_path: Path, loopback: None) -> None:
    output = run_bench("ingest", "--files", "4", "--min-mb", "0.2", "--max-mb", "0.4", "--j2k-every", "2",
                       "--rounds", "1", work=tmp_path)

    assert "| pedfrac / bare pynetdicom" in output
    assert "| pedfrac / dcmtk storescp" in output
    assert "4/4" in output


@pytest.mark.slow
@pytest.mark.integration
def test_pipeline_prints_stages(tmp_path: Path, loopback: None, package: Path) -> None:
    output = run_bench("pipeline", "--models", str(package), "--rows", "256", "--repeats", "1", work=tmp_path)

    assert "| classifier forward with Grad-CAM (one pass)" in output
    assert "| delivery (C-STORE to storescp)" in output
    assert "| whole / raw forward" in output


@pytest.mark.slow
@pytest.mark.integration
def test_turnaround_prints_phases(tmp_path: Path, loopback: None, package: Path) -> None:
    output = run_bench("turnaround", "--models", str(package), "--studies", "2", "--rows", "256",
                       "--stable-after", "0.5", "--timeout", "300", work=tmp_path)

    assert "| first study after start" in output
    assert "| 2 studies at once" in output


@pytest.mark.slow
@pytest.mark.integration
def test_memory_prints_peak(tmp_path: Path, loopback: None, package: Path) -> None:
    output = run_bench("memory", "--models", str(package), "--studies", "1", "--rows", "256",
                       "--idle-seconds", "0.5", "--timeout", "300", work=tmp_path)

    assert "| peak over start and load (VmHWM)" in output
    assert "| floor: Python importing the same libraries" in output


@pytest.mark.slow
def test_gpu_runs_on_cpu(tmp_path: Path, package: Path) -> None:
    output = run_bench("gpu", "--models", str(package), "--studies", "2", "--distinct", "1", "--rows", "256",
                       "--batch-size", "4", "--studies-per-call", "2", "--decode-workers", "2", "--repeats", "1",
                       work=tmp_path)

    assert "| read_studies, batched across studies" in output
    assert "| batched / one study a call" in output


def test_training_runs_on_cpu(tmp_path: Path) -> None:
    output = run_bench("training", "--patients", "10", "--architecture", "test_resnet", "--input-size", "64",
                       "--epochs", "1", "--device", "cpu", work=tmp_path)

    assert "| pedfrac train_prepared (with validation each epoch)" in output
    assert "| bare / pedfrac" in output
