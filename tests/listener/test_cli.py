from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from listener.cli import main
from tests.packages import untrained_package


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "listener.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    result = run_cli("--help")

    assert result.returncode == 0
    for command in ("serve", "status", "echo", "check-models", "build-demo-package"):
        assert command in result.stdout


def test_serve_help_lists_flags() -> None:
    result = run_cli("serve", "--help")

    for flag in ("--ae-title", "--bind", "--port", "--data-dir", "--allow", "--destination", "--stable-after",
                 "--models", "--device", "--config"):
        assert flag in result.stdout


def test_status_without_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["status", "--data-dir", str(tmp_path)])

    assert code == 1
    assert "no database in" in capsys.readouterr().err


def test_check_models_accepts_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = untrained_package(tmp_path / "package")

    assert main(["check-models", str(package)]) == 0
    assert "checksums match" in capsys.readouterr().out


def test_check_models_rejects_tampering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = untrained_package(tmp_path / "package")
    with (package / "classifier.pt").open("ab") as stream:
        stream.write(b"\0")

    assert main(["check-models", str(package)]) == 1
    assert "SHA-256 of classifier.pt" in capsys.readouterr().err


def test_serve_rejects_bad_settings(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[dicom]\nport = 'eleven'\n")

    result = run_cli("serve", "--config", str(config))

    assert result.returncode == 2
    assert "dicom.port" in result.stderr


def test_serve_rejects_missing_package(tmp_path: Path) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path / "data"), "--models", str(tmp_path / "none"), "--port", "0")

    assert result.returncode == 3
    assert "manifest.json not found" in result.stderr


def test_check_models_prints_operating_points_and_test_auroc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-models"]) == 0

    output = capsys.readouterr().out
    assert "operating points: wrist AP " in output
    assert "test AUROC: all images " in output
    assert "warning" not in output


def test_check_models_warns_about_chance_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = untrained_package(tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["metrics"] = {"test_auroc_wrist_AP": 0.43, "test_auroc_lower_wrist_AP": 0.2}
    (package / "manifest.json").write_text(json.dumps(manifest))

    assert main(["check-models", str(package)]) == 0
    assert "warning: test AUROC at chance or below for wrist AP" in capsys.readouterr().out
