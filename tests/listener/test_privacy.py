"""A full round trip with a known patient: no log line, audit record or command output names them."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from listener.scp import DATASET_DOES_NOT_MATCH_SOP_CLASS, SUCCESS
from sqlalchemy import select

from storage.models import DeliveryState, Job, JobState
from tests.factories import new_study, phantom_dx
from tests.listener.harness import (
    CountingPACS,
    ServiceProcess,
    database,
    delivery_states,
    store_all,
    wait_for,
    write_config,
)
from tests.peers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENT_NAME = "Canary^Privacy^Tracer"
PATIENT_ID = "PHI-7731-CANARY"
BIRTH_DATE = "20151231"
# Written the way a careless modality writes it, so pydicom warns and quotes the value when the
# SCP reads it.
INVALID_BIRTH_DATE = "2015-12-31"
NEEDLES = ("Canary", "Tracer", PATIENT_ID, "7731", BIRTH_DATE, INVALID_BIRTH_DATE)


def command(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "listener.cli", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def leaks(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(needle.lower() in line.lower() for needle in NEEDLES)]


def test_round_trip_logs_no_patient(tmp_path: Path, loopback: None, model_package: Path, figures) -> None:  # noqa: ANN001
    pacs = CountingPACS().start()
    port = free_port()
    config = write_config(tmp_path / "pedfrac.toml", port=port, data_dir=tmp_path / "data", models=model_package,
                          stable_after=1.0, destinations=[{"ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.port}])
    node = ServiceProcess(config, tmp_path / "pedfrac.log", port)

    study = new_study(patient_name=PATIENT_NAME, patient_id=PATIENT_ID)
    study.PatientBirthDate = BIRTH_DATE
    sources = [phantom_dx(study, body_part="elbow", view=view, laterality="L", fracture=True, seed=seed)
               for seed, view in enumerate(("AP", "LAT"))]
    # A copy, because setting an element of a dataset made by Dataset.update changes the shared element.
    careless = copy.deepcopy(study)
    careless.PatientBirthDate = INVALID_BIRTH_DATE
    broken = phantom_dx(careless, body_part="elbow", view="AP", laterality="L", fracture=False, seed=9)
    del broken.SeriesInstanceUID

    node.start("--log-level", "DEBUG")
    try:
        statuses = store_all(port, [*sources, sources[0], broken])
        job = wait_for(lambda: finished_job(tmp_path), timeout=300, what="job finished")
        assert job == JobState.DONE, f"job {job}; see {node.log}"
        wait_for(lambda: delivered(tmp_path) and pacs.total() >= len(delivered(tmp_path)), timeout=120,
                 what="outputs delivered")
    finally:
        node.stop()
        pacs.stop()

    outputs = {
        "service log": node.log_text(),
        "status": command("status", "--data-dir", str(tmp_path / "data")),
        "audit": command("audit", "--data-dir", str(tmp_path / "data")),
        "audit json": command("audit", "--data-dir", str(tmp_path / "data"), "--format", "json"),
        "quarantine notes": "\n".join(path.read_text() for path in (tmp_path / "data").rglob("quarantine/*.json")),
    }
    found = {name: leaks(text) for name, text in outputs.items() if leaks(text)}
    received_names = {str(dataset.PatientName) for dataset in pacs.datasets.values()}
    figures.record(log_lines=len(outputs["service log"].splitlines()), audit_lines=len(outputs["audit"].splitlines()),
                   outputs_at_pacs=pacs.total(), lines_with_patient_data=sum(len(lines) for lines in found.values()))
    assert [statuses[str(source.SOPInstanceUID)] for source in sources] == [SUCCESS, SUCCESS]
    assert statuses[str(broken.SOPInstanceUID)] == DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert received_names == {PATIENT_NAME}
    assert len(outputs["service log"].splitlines()) > 100
    assert found == {}


def finished_job(tmp_path: Path) -> JobState | None:
    sessions = database(tmp_path / "data")
    with sessions() as session:
        states = list(session.scalars(select(Job.state)))
    sessions.kw["bind"].dispose()
    done = [state for state in states if state in (JobState.DONE, JobState.FAILED, JobState.SKIPPED)]
    return done[0] if done else None


def delivered(tmp_path: Path) -> list[str]:
    states = delivery_states(tmp_path / "data")
    if not states or any(state != DeliveryState.DELIVERED for state, _ in states.values()):
        return []
    return list(states)
