"""One job: read a quiet study with the ensemble, build the SC overlays and the SR, queue deliveries."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy.orm import Session, sessionmaker

from inference.ensemble import Ensemble
from inference.findings import SkippedImage, StudyFinding
from listener.settings import Settings
from reporting.identifiers import new_uid
from reporting.overlay import render_overlay
from reporting.secondary_capture import build_secondary_capture
from reporting.structured_report import build_structured_report
from storage.archive import Archive
from storage.models import Job, JobState, Result
from storage.repository import add_output, finish_job, save_results, study_instances

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Output:
    dataset: Dataset
    kind: str


class StudyReader:
    """Runs jobs: everything between a queued job and its pending deliveries."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], archive: Archive,
                 ensemble: Ensemble) -> None:
        self.settings = settings
        self.sessions = sessions
        self.archive = archive
        self.ensemble = ensemble

    def run(self, job_id: int) -> JobState:
        """Read the job's study and record the outcome; a failure is recorded, never raised."""
        with self.sessions() as session:
            job = session.get_one(Job, job_id)
            study_uid = job.study.study_instance_uid
            paths = [Path(instance.path) for instance in study_instances(session, job)]

        logger.info("job %d started: study %s, %d instances", job_id, study_uid, len(paths))
        try:
            datasets, unreadable = _read_files(paths)
            finding = self.ensemble.read_study(study_uid, datasets)
            finding = StudyFinding(study_uid, finding.images, finding.skipped + tuple(unreadable),
                                   finding.model_name, finding.model_version)
            outputs = self._build_outputs(finding, datasets) if finding.images else []
            state = self._record(job_id, finding, outputs)
        except Exception as error:  # noqa: BLE001 - a job failure must not stop the service
            logger.exception("job %d failed: study %s", job_id, study_uid)
            with self.sessions.begin() as session:
                finish_job(session, session.get_one(Job, job_id), JobState.FAILED, reason=f"{type(error).__name__}: {error}")
            return JobState.FAILED

        logger.info("job %d %s: study %s, %d images read, %d skipped, %d outputs", job_id, state.value, study_uid,
                    len(finding.images), len(finding.skipped), len(outputs))
        return state

    def _build_outputs(self, finding: StudyFinding, datasets: list[Dataset]) -> list[_Output]:
        by_uid = {str(dataset.SOPInstanceUID): dataset for dataset in datasets}
        identity = f"{finding.model_name} {finding.model_version}"
        overlay_series = new_uid()
        outputs = []

        for number, image in enumerate(finding.images, start=1):
            overlay = render_overlay(image, language=self.settings.reporting.language, model_identity=identity,
                                     font_path=self.settings.reporting.font)
            sc = build_secondary_capture(by_uid[image.sop_instance_uid], overlay, image,
                                         series_instance_uid=overlay_series, instance_number=number,
                                         model_identity=identity)
            outputs.append(_Output(sc, "overlay"))

        sources = [by_uid[image.sop_instance_uid] for image in finding.images]
        # NOTE: a re-read after late instances makes a new SR but does not yet fill the Predecessor
        # Documents Sequence with the SR it replaces.
        sr = build_structured_report(sources, finding, series_instance_uid=new_uid(), model_identity=identity,
                                     algorithm_name=finding.model_name, algorithm_version=finding.model_version)
        outputs.append(_Output(sr, "report"))
        return outputs

    def _record(self, job_id: int, finding: StudyFinding, outputs: list[_Output]) -> JobState:
        written = [(output, self._write(finding.study_instance_uid, output.dataset)) for output in outputs]
        destinations = [destination.name for destination in self.settings.delivery.destinations]

        with self.sessions.begin() as session:
            job = session.get_one(Job, job_id)
            job.model_identity = f"{finding.model_name} {finding.model_version}"
            save_results(session, job, _results(finding))
            for output, path in written:
                add_output(session, job, sop_instance_uid=str(output.dataset.SOPInstanceUID),
                           sop_class_uid=str(output.dataset.SOPClassUID),
                           series_instance_uid=str(output.dataset.SeriesInstanceUID), kind=output.kind,
                           path=str(path), destinations=destinations)

            if finding.images:
                finish_job(session, job, JobState.DONE)
                return JobState.DONE

            finish_job(session, job, JobState.SKIPPED, reason=_skip_summary(finding.skipped))
            return JobState.SKIPPED

    def _write(self, study_uid: str, dataset: Dataset) -> Path:
        path = self.archive.path_for("outputs", study_uid, str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID))
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        self.archive.write(path, buffer.getvalue())
        return path


def _read_files(paths: list[Path]) -> tuple[list[Dataset], list[SkippedImage]]:
    datasets, unreadable = [], []
    for path in paths:
        try:
            datasets.append(dcmread(path))
        except (InvalidDicomError, OSError, ValueError) as error:
            logger.error("archived file %s could not be read: %s", path, error)
            unreadable.append(SkippedImage(path.stem, f"archived file could not be read: {error}"))
    return datasets, unreadable


def _results(finding: StudyFinding) -> list[Result]:
    identity = f"{finding.model_name} {finding.model_version}"
    results = [
        Result(sop_instance_uid=image.sop_instance_uid, body_part=image.body_part, view=image.view,
               laterality=image.laterality, probability=image.probability, threshold=image.threshold,
               positive=image.positive, model_identity=identity)
        for image in finding.images
    ]
    results += [Result(sop_instance_uid=skipped.sop_instance_uid, skipped_reason=skipped.reason,
                       model_identity=identity) for skipped in finding.skipped]
    if finding.images:
        results.append(Result(sop_instance_uid=None, probability=finding.probability, positive=finding.positive,
                              model_identity=identity))
    return results


def _skip_summary(skipped: tuple[SkippedImage, ...]) -> str:
    if not skipped:
        return "the study holds no instance to read"
    reasons = sorted({item.reason for item in skipped})
    return f"no elbow or wrist radiograph to read: {'; '.join(reasons)}"
