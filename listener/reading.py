"""One job: read a quiet study with the ensemble, build the output objects, queue their deliveries.

The output objects of a reading are the Secondary Capture overlays, the Grayscale Softcopy
Presentation States, the Structured Report and, when an image is positive, a Key Object
Selection. Every object is archived, and each destination gets deliveries only for the kinds
its ``objects`` setting lists.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName
from pydicom.errors import InvalidDicomError
from sqlalchemy.orm import Session, sessionmaker

from inference.ensemble import Ensemble
from inference.findings import SkippedImage, StudyFinding
from listener.inspection import describe_error
from listener.settings import Settings
from reporting.captions import patient_line
from reporting.identifiers import new_uid
from reporting.key_objects import build_key_object_selection
from reporting.overlay import render_overlay
from reporting.presentation_state import build_presentation_state
from reporting.secondary_capture import build_secondary_capture
from reporting.structured_report import ReportReference, build_structured_report
from storage.archive import Archive
from storage.models import Job, JobState, Result
from storage.repository import add_output, finish_job, previous_output, save_results, study_instances

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
            predecessor = _previous_report(session, job)

        logger.info("job %d started: study %s, %d instances, replaces report %s", job_id, study_uid, len(paths),
                    predecessor.sop_instance_uid if predecessor else "none")
        try:
            datasets, unreadable = _read_files(paths)
            finding = self.ensemble.read_study(study_uid, datasets, policy=self.settings.dicom.nonconformance)
            finding = replace(finding, skipped=finding.skipped + tuple(unreadable))
            outputs = self._build_outputs(finding, datasets, predecessor) if finding.images else []
            state = self._record(job_id, finding, outputs)
        except Exception as error:  # noqa: BLE001 - a job failure must not stop the service
            logger.exception("job %d failed: study %s", job_id, study_uid)
            with self.sessions.begin() as session:
                # The reason is shown by `pedfrac status`; quoted values (a patient's data) are withheld.
                finish_job(session, session.get_one(Job, job_id), JobState.FAILED, reason=describe_error(error))
            return JobState.FAILED

        logger.info("job %d %s: study %s, %d images read, %d skipped, %d outputs", job_id, state.value, study_uid,
                    len(finding.images), len(finding.skipped), len(outputs))
        return state

    def _build_outputs(self, finding: StudyFinding, datasets: list[Dataset],
                       predecessor: ReportReference | None) -> list[_Output]:
        by_uid = {str(dataset.SOPInstanceUID): dataset for dataset in datasets}
        sources = [by_uid[image.sop_instance_uid] for image in finding.images]
        name_as_stored = _stored_patient_name(sources[0])
        for source in sources:
            _add_empty_type2_attributes(source)
        identity = f"{finding.model_name} {finding.model_version}"
        language = self.settings.reporting.language

        outputs = self._overlays(finding, sources, identity)
        states = self._presentation_states(finding, sources, identity)
        outputs += [_Output(state, "presentation") for state in states.values()]

        sr = build_structured_report(sources, finding, series_instance_uid=new_uid(), model_identity=identity,
                                     algorithm_name=finding.model_name, algorithm_version=finding.model_version,
                                     predecessor=predecessor)
        outputs.append(_Output(sr, "report"))

        if finding.positive:
            key_objects = build_key_object_selection(sources, finding, series_instance_uid=new_uid(), language=language,
                                                     model_identity=identity, presentation_states=states)
            outputs.append(_Output(key_objects, "key_objects"))

        for output in outputs:
            _keep_patient_name_bytes(output.dataset, sources[0], name_as_stored)
        return outputs

    def _overlays(self, finding: StudyFinding, sources: list[Dataset], identity: str) -> list[_Output]:
        """Render and wrap one Secondary Capture per image read, all in one new series."""
        language = self.settings.reporting.language
        series = new_uid()
        outputs = []
        for number, (image, source) in enumerate(zip(finding.images, sources), start=1):
            patient = patient_line(source.get("PatientName"), source.get("PatientID"), language=language)
            overlay = render_overlay(image, language=language, model_identity=identity,
                                     font_path=self.settings.reporting.font, patient=patient)
            sc = build_secondary_capture(source, overlay, image, series_instance_uid=series, instance_number=number,
                                         model_identity=identity)
            outputs.append(_Output(sc, "overlay"))
        return outputs

    def _presentation_states(self, finding: StudyFinding, sources: list[Dataset], identity: str) -> dict[str, Dataset]:
        """Build one presentation state per image read, all in one new series, keyed by source SOP Instance UID."""
        series = new_uid()
        return {
            image.sop_instance_uid: build_presentation_state(source, image, series_instance_uid=series,
                                                             instance_number=number,
                                                             language=self.settings.reporting.language,
                                                             model_identity=identity)
            for number, (image, source) in enumerate(zip(finding.images, sources), start=1)
        }

    def _record(self, job_id: int, finding: StudyFinding, outputs: list[_Output]) -> JobState:
        written = [(output, self._write(finding.study_instance_uid, output.dataset)) for output in outputs]
        destinations = self.settings.delivery.destinations

        with self.sessions.begin() as session:
            job = session.get_one(Job, job_id)
            job.model_identity = f"{finding.model_name} {finding.model_version}"
            save_results(session, job, _results(finding))
            for output, path in written:
                add_output(session, job, sop_instance_uid=str(output.dataset.SOPInstanceUID),
                           sop_class_uid=str(output.dataset.SOPClassUID),
                           series_instance_uid=str(output.dataset.SeriesInstanceUID), kind=output.kind,
                           path=str(path),
                           destinations=[destination.name for destination in destinations if destination.receives(output.kind)])

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


def _previous_report(session: Session, job: Job) -> ReportReference | None:
    """Return the SR of the study's latest earlier reading, which this job's report replaces."""
    # NOTE: only the SR names what it replaces. The earlier overlays, presentation states and key
    # objects stay in the PACS beside the new series, because withdrawing them would take IHE
    # IOCM rejection notes, which pedfrac does not send.
    previous = previous_output(session, job, "report")
    if previous is None:
        return None
    return ReportReference(study_instance_uid=job.study.study_instance_uid,
                           series_instance_uid=previous.series_instance_uid,
                           sop_instance_uid=previous.sop_instance_uid, sop_class_uid=previous.sop_class_uid)


PATIENT_NAME = 0x00100010

# Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that our
# outputs copy from the source. highdicom 0.28.2 raises AttributeError when one is absent.
_TYPE_2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _add_empty_type2_attributes(source: Dataset) -> None:
    """Add the Type 2 attributes that ``source`` lacks, empty, to this job's in-memory copy; the archive keeps the file."""
    missing = [keyword for keyword in _TYPE_2_COPIED if keyword not in source]
    if missing:
        logger.info("source %s lacks Type 2 attributes %s; the outputs get them empty", source.SOPInstanceUID,
                    ", ".join(missing))
    for keyword in missing:
        setattr(source, keyword, "")


def _stored_patient_name(source: Dataset) -> bytes | None:
    """Return the Patient Name (0010,0010) bytes as read from the file, before anything decodes them."""
    element = source.get_item(PATIENT_NAME) if PATIENT_NAME in source else None
    return bytes(element.value) if isinstance(element, RawDataElement) and element.value is not None else None


def _keep_patient_name_bytes(output: Dataset, source: Dataset, stored: bytes | None) -> None:
    """Write the source's Patient Name (0010,0010) bytes into ``output`` where its character set is the source's.

    highdicom 0.28.2 copies the name as text and pydicom encodes it anew, so an ISO 2022 name may
    come out with other escape sequences than the modality wrote (pydicom 3.0.2 drops a final
    ESC ( B, for one). Where both Specific Character Sets (0008,0005) and the decoded names agree,
    the stored bytes replace the re-encoded ones.
    """
    # NOTE: other text attributes (Patient ID, Study Description, ...) are still re-encoded:
    # the same characters, but ISO 2022 escape sequences may differ from the source's bytes.
    if stored is None or "PatientName" not in output:
        return
    if output.get("SpecificCharacterSet") != source.get("SpecificCharacterSet"):
        return
    if str(output.PatientName) == str(source.PatientName):
        # A PersonName built from bytes is written back as those bytes while the character set is unchanged.
        encodings = convert_encodings(source.get("SpecificCharacterSet") or "ISO_IR 6")
        output.PatientName = PersonName(stored.rstrip(b" "), encodings=encodings)


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
