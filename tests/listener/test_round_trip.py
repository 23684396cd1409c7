"""A study sent by a real peer comes back with the SC overlays and the SR, checked by dciodvfy."""
from __future__ import annotations

import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from listener.service import Service
from listener.settings import Destination
from storage.models import Job
from tests.conftest import service_settings
from tests.factories import (
    CHEST_CR,
    WRIST_FRACTURE_PNG,
    ct_slice,
    new_study,
    phantom_dx,
    shared_file,
    wrist_dx,
)
from tests.peers import dciodvfy_errors, free_port, stop_process, storescu, wait_for_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def wrist_study() -> tuple[Dataset, list[Dataset]]:
    """The real fracture wrist AP of patient 0003 and a phantom lateral of the same side."""
    study = new_study(patient_name="김희중", charset=["", "ISO 2022 IR 149"])
    ap = wrist_dx(WRIST_FRACTURE_PNG, study, view_position="AP", laterality="R")
    lateral = phantom_dx(study, body_part="wrist", view="LAT", laterality="R", fracture=True, seed=3)
    lateral.InstanceNumber = 2
    return study, [ap, lateral]


def write_files(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in datasets:
        path = folder / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def check_outputs(outputs: list[Dataset], sources: list[Dataset], folder: Path) -> None:
    """Assert one SR and one SC per source, in the source study, valid by dciodvfy."""
    source_uids = {str(source.SOPInstanceUID) for source in sources}
    reports = [ds for ds in outputs if ds.SOPClassUID == SR_CLASS]
    overlays = [ds for ds in outputs if ds.SOPClassUID == SC_CLASS]
    assert len(reports) == 1
    assert len(overlays) == len(sources)

    study_uid = sources[0].StudyInstanceUID
    for output in outputs:
        assert output.StudyInstanceUID == study_uid
        assert output.SeriesInstanceUID not in {source.SeriesInstanceUID for source in sources}
        assert output.PatientName == sources[0].PatientName
        assert output.SpecificCharacterSet == sources[0].SpecificCharacterSet

    referenced = {str(item.ReferencedSOPInstanceUID) for ds in overlays for item in ds.SourceImageSequence}
    assert referenced == source_uids

    report = reports[0]
    text = dump_sr(report, folder)
    for uid in source_uids:
        assert uid in text
    assert "Fracture" in text
    assert report.ContentSequence is not None

    for index, output in enumerate(outputs):
        path = folder / f"check-{index}.dcm"
        output.save_as(path, enforce_file_format=True)
        errors, _warnings = dciodvfy_errors(path)
        assert errors == [], f"dciodvfy errors for {output.SOPClassUID}: {errors}"


def dump_sr(report: Dataset, folder: Path) -> str:
    path = folder / "report.dcm"
    report.save_as(path, enforce_file_format=True)
    result = subprocess.run(["dsrdump", "+Pu", "+Pl", "+Pc", str(path)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # dsrdump prints names in the file's own character set, so ISO 2022 IR 149 bytes appear as they are.
    return result.stdout.decode("utf-8", errors="replace")


def test_dcmtk_round_trip(tmp_path: Path, storescp, model_package: Path) -> None:
    destination = Destination(ae_title=storescp.aet, host="127.0.0.1", port=storescp.port)
    service = Service(service_settings(tmp_path / "data", model_package, destinations=[destination],
                                       allow=["MODALITY"]), min_free_bytes=0)
    service.start()
    try:
        study = new_study(patient_name="Hong^Gildong")
        sources = [
            phantom_dx(study, body_part="elbow", view="AP", laterality="L", fracture=True, seed=11),
            phantom_dx(study, body_part="elbow", view="LAT", laterality="L", fracture=True, seed=12),
        ]
        result = storescu(service.scp.port, write_files(tmp_path / "sent", sources))
        assert result.returncode == 0, result.stderr

        wait_until(lambda: len(storescp.received()) >= len(sources) + 1, timeout=300, what="SR and SC at storescp")
    finally:
        service.stop()

    outputs = [pydicom.dcmread(path) for path in storescp.received()]
    check_outputs(outputs, sources, tmp_path)


def test_non_radiograph_study_skipped(tmp_path: Path, storescp, model_package: Path) -> None:
    from storage.models import Job, JobState, Study, StudyState

    destination = Destination(ae_title=storescp.aet, host="127.0.0.1", port=storescp.port)
    service = Service(service_settings(tmp_path / "data", model_package, destinations=[destination]), min_free_bytes=0)
    service.start()
    try:
        chest = pydicom.dcmread(shared_file(CHEST_CR))
        ct = ct_slice(new_study())
        chest_sent = storescu(service.scp.port, write_files(tmp_path / "sent", [chest]), options=("-xw",))
        ct_sent = storescu(service.scp.port, write_files(tmp_path / "sent", [ct]))
        assert chest_sent.returncode == 0, chest_sent.stderr
        assert ct_sent.returncode == 0, ct_sent.stderr

        def finished() -> bool:
            with service.sessions() as session:
                states = [study.state for study in session.query(Study)]
            return len(states) == 2 and all(state in (StudyState.SKIPPED, StudyState.FAILED) for state in states)

        wait_until(finished, timeout=120, what="both studies skipped")
        with service.sessions() as session:
            studies = session.query(Study).all()
            jobs = session.query(Job).all()
            states = {s.study_instance_uid: (s.state, s.state_reason) for s in studies}
            job_states = [job.state for job in jobs]
            outputs = sum(len(job.outputs) for job in jobs)
    finally:
        service.stop()

    assert states[str(chest.StudyInstanceUID)][0] == StudyState.SKIPPED
    assert "CHEST" in states[str(chest.StudyInstanceUID)][1]
    assert states[str(ct.StudyInstanceUID)][0] == StudyState.SKIPPED
    assert "Modality CT" in states[str(ct.StudyInstanceUID)][1]
    assert job_states == [JobState.SKIPPED]
    assert outputs == 0
    assert storescp.received() == []


def test_orthanc_round_trip(tmp_path: Path, orthanc_factory, model_package: Path) -> None:
    port = free_port()
    orthanc = orthanc_factory({"pedfrac": ("PEDFRAC", "127.0.0.1", port)})
    command = [
        sys.executable, "-m", "listener.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
        "--allow", orthanc.aet, "--destination", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}",
        "--stable-after", "2", "--models", str(model_package), "--device", "cpu",
    ]
    log = (tmp_path / "pedfrac.log").open("wb")
    service = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=180, process=service)
        _study, sources = wrist_study()
        for dataset in sources:
            path = write_files(tmp_path / "sent", [dataset])[0]
            orthanc.upload(path.read_bytes())

        orthanc_study = orthanc.request("POST", "/tools/lookup", str(sources[0].StudyInstanceUID).encode())[0]["ID"]
        orthanc.request("POST", "/modalities/pedfrac/store", {"Resources": [orthanc_study], "Synchronous": True})

        def all_series() -> list:
            series = orthanc.request("GET", f"/studies/{orthanc_study}/series")
            modalities = sorted(item["MainDicomTags"].get("Modality", "") for item in series)
            return series if len(series) == 4 and "SR" in modalities else []

        wait_until(all_series, timeout=300, what="SR and SC series in Orthanc")
        instances = orthanc.request("GET", f"/studies/{orthanc_study}/instances")
        datasets = [pydicom.dcmread(BytesIO(orthanc.request("GET", f"/instances/{item['ID']}/file")))
                    for item in instances]
        status = subprocess.run([sys.executable, "-m", "listener.cli", "status", "--data-dir", str(tmp_path / "data")],
                                capture_output=True, text=True, timeout=120)
    finally:
        stop_process(service)

    source_uids = {str(source.SOPInstanceUID) for source in sources}
    outputs = [ds for ds in datasets if str(ds.SOPInstanceUID) not in source_uids]
    check_outputs(outputs, sources, tmp_path)
    assert status.returncode == 0
    assert "reported" in status.stdout
    assert str(sources[0].StudyInstanceUID) in status.stdout


def test_orthanc_autoroute_once(tmp_path: Path, orthanc_factory, model_package: Path) -> None:
    """The deploy/ Lua script forwards a stable study once; our results coming back do not loop."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "orthanc-autoroute.lua"
    destination_port = free_port()
    orthanc = orthanc_factory({"pedfrac": ("PEDFRAC", "127.0.0.1", destination_port)}, lua_scripts=[script])
    destination = Destination(ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port)
    settings = service_settings(tmp_path / "data", model_package, destinations=[destination], allow=[orthanc.aet])
    settings.dicom.port = destination_port
    service = Service(settings, min_free_bytes=0)
    service.start()
    try:
        _study, sources = wrist_study()
        for dataset in sources:
            orthanc.upload(write_files(tmp_path / "sent", [dataset])[0].read_bytes())
        orthanc_study = orthanc.request("POST", "/tools/lookup", str(sources[0].StudyInstanceUID).encode())[0]["ID"]

        def report_count() -> int:
            series = orthanc.request("GET", f"/studies/{orthanc_study}/series")
            return sum(item["MainDicomTags"].get("Modality") == "SR" for item in series)

        wait_until(report_count, timeout=300, what="SR in Orthanc after auto-routing")
        # Long enough for Orthanc to call the script again once our outputs made the study stable.
        time.sleep(6)
        with service.sessions() as session:
            jobs = session.query(Job).count()
    finally:
        service.stop()

    assert report_count() == 1
    assert jobs == 1
