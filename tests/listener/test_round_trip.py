"""A study sent by a real peer comes back with the overlays, presentation states, SR and key objects, checked by dciodvfy."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from listener.service import Service
from listener.settings import Destination
from reporting.identifiers import SC_SERIES_DESCRIPTION
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
from tests.peers import (
    CHROMIUM,
    WEB_VIEWER_PLUGIN,
    StoreSCP,
    chromium,
    dciodvfy_errors,
    free_port,
    require_file,
    require_program,
    stop_process,
    storescu,
    wait_for_port,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
PR_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
KO_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


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
    """Assert one SR, one SC and one presentation state per source, and key objects for positive images.

    Every object must be in the source study and valid by dciodvfy.
    """
    source_uids = {str(source.SOPInstanceUID) for source in sources}
    reports = [ds for ds in outputs if ds.SOPClassUID == SR_CLASS]
    overlays = [ds for ds in outputs if ds.SOPClassUID == SC_CLASS]
    states = [ds for ds in outputs if ds.SOPClassUID == PR_CLASS]
    key_objects = [ds for ds in outputs if ds.SOPClassUID == KO_CLASS]
    assert len(reports) == 1
    assert len(overlays) == len(sources)
    assert len(states) == len(sources)
    assert len(key_objects) <= 1
    assert len(outputs) == len(reports) + len(overlays) + len(states) + len(key_objects)

    study_uid = sources[0].StudyInstanceUID
    for output in outputs:
        assert output.StudyInstanceUID == study_uid
        assert output.SeriesInstanceUID not in {source.SeriesInstanceUID for source in sources}
        assert output.PatientName == sources[0].PatientName
        assert output.SpecificCharacterSet == sources[0].SpecificCharacterSet

    referenced = {str(item.ReferencedSOPInstanceUID) for ds in overlays for item in ds.SourceImageSequence}
    assert referenced == source_uids
    annotated = {str(image.ReferencedSOPInstanceUID) for ds in states for series in ds.ReferencedSeriesSequence
                 for image in series.ReferencedImageSequence}
    assert annotated == source_uids
    flagged = {str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for ds in key_objects
               for item in ds.ContentSequence if item.ValueType == "IMAGE"}
    assert flagged <= source_uids

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


def deliveries_settled(service: Service, *, jobs: int) -> bool:
    """True once ``jobs`` jobs finished and no delivery is pending."""
    from storage.models import Delivery, DeliveryState, JobState

    with service.sessions() as session:
        finished = session.query(Job).filter(Job.state.in_([JobState.DONE, JobState.SKIPPED, JobState.FAILED])).count()
        pending = session.query(Delivery).filter(Delivery.state == DeliveryState.PENDING).count()
    return finished >= jobs and pending == 0


def orthanc_results(orthanc, orthanc_study: str) -> list[dict]:  # noqa: ANN001 - tests.peers.Orthanc
    """Wait until the study in Orthanc contains an SR and a presentation state and its instance count stops changing."""
    counts: list[int] = []

    def settled() -> list[dict]:
        series = orthanc.request("GET", f"/studies/{orthanc_study}/series")
        modalities = {item["MainDicomTags"].get("Modality", "") for item in series}
        counts.append(len(orthanc.request("GET", f"/studies/{orthanc_study}/instances")))
        stable = len(counts) >= 2 and counts[-1] == counts[-2]
        return series if {"SR", "PR"} <= modalities and stable else []

    return wait_until(settled, timeout=300, what="results in Orthanc")


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

        wait_until(lambda: deliveries_settled(service, jobs=1), timeout=300, what="outputs delivered to storescp")
    finally:
        service.stop()

    outputs = [pydicom.dcmread(path) for path in storescp.received()]
    check_outputs(outputs, sources, tmp_path)


def test_destination_receives_selected_objects(tmp_path: Path, storescp, model_package: Path) -> None:
    reports_only = StoreSCP(tmp_path / "reports-only", aet="REPORTS")
    reports_only.start()
    destinations = [
        Destination(ae_title=storescp.aet, host="127.0.0.1", port=storescp.port),
        Destination(ae_title=reports_only.aet, host="127.0.0.1", port=reports_only.port, objects=["report"]),
    ]
    service = Service(service_settings(tmp_path / "data", model_package, destinations=destinations,
                                       allow=["MODALITY"]), min_free_bytes=0)
    service.start()
    try:
        study = new_study()
        sources = [phantom_dx(study, body_part="wrist", view="AP", laterality="R", fracture=True, seed=21)]
        result = storescu(service.scp.port, write_files(tmp_path / "sent", sources))
        assert result.returncode == 0, result.stderr

        wait_until(lambda: deliveries_settled(service, jobs=1), timeout=300, what="outputs delivered")
    finally:
        service.stop()
        reports_only.stop()

    everything = {str(pydicom.dcmread(path).SOPClassUID) for path in storescp.received()}
    reports = [str(pydicom.dcmread(path).SOPClassUID) for path in reports_only.received()]
    assert {SR_CLASS, SC_CLASS, PR_CLASS} <= everything
    assert reports == [SR_CLASS]


def test_late_image_supersedes_report(tmp_path: Path, storescp, model_package: Path) -> None:
    destination = Destination(ae_title=storescp.aet, host="127.0.0.1", port=storescp.port)
    service = Service(service_settings(tmp_path / "data", model_package, destinations=[destination],
                                       allow=["MODALITY"]), min_free_bytes=0)
    service.start()
    try:
        study = new_study()
        first = phantom_dx(study, body_part="elbow", view="AP", laterality="R", fracture=True, seed=31)
        late = phantom_dx(study, body_part="elbow", view="LAT", laterality="R", fracture=True, seed=32)
        assert storescu(service.scp.port, write_files(tmp_path / "sent", [first])).returncode == 0
        wait_until(lambda: deliveries_settled(service, jobs=1), timeout=300, what="first reading delivered")
        first_outputs = {path.name for path in storescp.received()}

        assert storescu(service.scp.port, write_files(tmp_path / "late", [late])).returncode == 0
        wait_until(lambda: deliveries_settled(service, jobs=2), timeout=300, what="second reading delivered")
    finally:
        service.stop()

    earlier = [pydicom.dcmread(path) for path in storescp.received() if path.name in first_outputs]
    later = [pydicom.dcmread(path) for path in storescp.received() if path.name not in first_outputs]
    old_report = next(ds for ds in earlier if ds.SOPClassUID == SR_CLASS)
    new_report = next(ds for ds in later if ds.SOPClassUID == SR_CLASS)
    predecessor = new_report.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.SeriesInstanceUID == old_report.SeriesInstanceUID
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old_report.SOPInstanceUID
    assert {ds.SeriesInstanceUID for ds in later}.isdisjoint({ds.SeriesInstanceUID for ds in earlier})
    check_outputs(later, [first, late], tmp_path)


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

        orthanc_results(orthanc, orthanc_study)
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


def test_web_viewer_shows_overlay_series(tmp_path: Path, orthanc_factory, model_package: Path) -> None:
    """The Orthanc Web Viewer, in headless Chromium, loads the overlay series that pedfrac sent back.

    Set PEDFRAC_VIEWER_SCREENSHOT to a file path to keep the screenshot, e.g. docs/viewer-overlay.png.
    """
    plugin = require_file(WEB_VIEWER_PLUGIN, "orthanc-webviewer")
    require_program(CHROMIUM)
    port = free_port()
    orthanc = orthanc_factory({"pedfrac": ("PEDFRAC", "127.0.0.1", port)}, plugins=[plugin])
    settings = service_settings(tmp_path / "data", model_package, allow=[orthanc.aet],
                                destinations=[Destination(ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port)])
    settings.dicom.port = port
    settings.reporting.language = "ko"
    service = Service(settings, min_free_bytes=0)
    service.start()
    try:
        # The real fracture radiograph alone, so the viewer opens on it.
        sources = wrist_study()[1][:1]
        orthanc.upload(write_files(tmp_path / "sent", sources)[0].read_bytes())
        orthanc_study = orthanc.request("POST", "/tools/lookup", str(sources[0].StudyInstanceUID).encode())[0]["ID"]
        orthanc.request("POST", "/modalities/pedfrac/store", {"Resources": [orthanc_study], "Synchronous": True})
        series = orthanc_results(orthanc, orthanc_study)
    finally:
        service.stop()

    overlay = next(item for item in series if item["MainDicomTags"].get("SeriesDescription") == SC_SERIES_DESCRIPTION)
    viewer_series = orthanc.request("GET", f"/web-viewer/series/{overlay['ID']}")
    first_slice = orthanc.request("GET", f"/web-viewer/instances/jpeg95-{viewer_series['Slices'][0]}")
    screenshot = tmp_path / "viewer.png"
    dom = chromium(f"http://127.0.0.1:{orthanc.http_port}/web-viewer/app/viewer.html?series={overlay['ID']}", tmp_path,
                   screenshot=screenshot)
    kept = os.environ.get("PEDFRAC_VIEWER_SCREENSHOT")
    if kept:
        shutil.copyfile(screenshot, kept)

    assert len(viewer_series["Slices"]) == len(sources)
    assert first_slice["Orthanc"]["PhotometricInterpretation"] == "RGB"
    assert SC_SERIES_DESCRIPTION in dom
    assert "김희중" in dom
    assert "<canvas" in dom
    assert coloured_fraction(screenshot) > 0.001


def coloured_fraction(png: Path) -> float:
    """Fraction of pixels whose channels differ by more than 40: the caption and heat map, never the grey radiograph."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return float((spread > 40).mean())
