"""Transactions on the state machines: instances received, jobs queued and run, deliveries sent.

Every function takes an open session and leaves committing to the caller, except where the name
says ``commit``; the listener decides the transaction boundaries.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import (
    AuditEvent,
    AuditRecord,
    Delivery,
    DeliveryState,
    Instance,
    Job,
    JobState,
    OutputObject,
    Result,
    Series,
    Study,
    StudyState,
    utcnow,
)


@dataclass(frozen=True)
class ReceivedInstance:
    """What the SCP knows of one stored instance, with no patient data."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str | None
    path: str
    size: int
    sha256: str
    calling_ae_title: str
    own_output: bool
    not_read_reason: str | None = None

    @property
    def starts_job(self) -> bool:
        return not self.own_output and self.not_read_reason is None


def audit(session: Session, event: AuditEvent, *, study_uid: str | None = None, sop_uid: str | None = None,
          job_id: int | None = None, peer: str | None = None, detail: str | None = None) -> None:
    session.add(AuditRecord(event=event, study_instance_uid=study_uid, sop_instance_uid=sop_uid,
                            job_id=job_id, peer=peer, detail=detail))


def record_instance(session: Session, received: ReceivedInstance) -> Instance:
    """Add or update the rows of a stored instance and re-open its study for reading.

    Our own outputs coming back, and objects that are not projection radiographs, are recorded but
    leave the study's quiet-period clock alone, so they never start a job. A study made only of
    such objects is marked skipped with the reason.
    """
    study = session.scalar(select(Study).where(Study.study_instance_uid == received.study_instance_uid))
    if study is None:
        study = Study(study_instance_uid=received.study_instance_uid, pending=received.starts_job)
        if received.not_read_reason is not None:
            study.state = StudyState.SKIPPED
            study.state_reason = received.not_read_reason
        session.add(study)

    series = session.scalar(select(Series).where(Series.series_instance_uid == received.series_instance_uid))
    if series is None:
        series = Series(series_instance_uid=received.series_instance_uid, modality=received.modality, study=study)
        session.add(series)

    instance = session.scalar(select(Instance).where(Instance.sop_instance_uid == received.sop_instance_uid))
    if instance is not None and instance.sha256 == received.sha256:
        # The same bytes again (a PACS resending a study): acknowledged, and no new reading.
        audit(session, AuditEvent.RECEIVED, study_uid=received.study_instance_uid,
              sop_uid=received.sop_instance_uid, peer=received.calling_ae_title, detail="duplicate, identical content")
        return instance

    if instance is None:
        instance = Instance(sop_instance_uid=received.sop_instance_uid, series=series)
        session.add(instance)

    instance.sop_class_uid = received.sop_class_uid
    instance.transfer_syntax_uid = received.transfer_syntax_uid
    instance.path = received.path
    instance.size = received.size
    instance.sha256 = received.sha256
    instance.calling_ae_title = received.calling_ae_title
    instance.own_output = received.own_output
    instance.not_read_reason = received.not_read_reason
    instance.received_at = utcnow()

    if received.starts_job:
        study.last_received_at = utcnow()
        study.pending = True
        study.state = StudyState.RECEIVING
        study.state_reason = None

    audit(session, AuditEvent.RECEIVED, study_uid=received.study_instance_uid,
          sop_uid=received.sop_instance_uid, peer=received.calling_ae_title,
          detail="own output" if received.own_output else received.not_read_reason)
    return instance


def queue_quiet_studies(session: Session, *, stable_after: float, now: datetime | None = None) -> list[Job]:
    """Create a job for each study that received instances and then stayed quiet ``stable_after`` seconds."""
    cutoff = (now or utcnow()) - timedelta(seconds=stable_after)
    studies = session.scalars(
        select(Study).where(Study.pending.is_(True), Study.last_received_at <= cutoff).order_by(Study.last_received_at)
    ).all()

    jobs = []
    for study in studies:
        study.pending = False
        study.state = StudyState.QUEUED
        job = Job(study=study)
        session.add(job)
        jobs.append(job)

    session.flush()
    for job in jobs:
        audit(session, AuditEvent.QUEUED, study_uid=job.study.study_instance_uid, job_id=job.id)
    return jobs


def claim_next_job(session: Session) -> Job | None:
    """Mark the oldest queued job running and return it, or None when the queue is empty."""
    job = session.scalar(select(Job).where(Job.state == JobState.QUEUED).order_by(Job.id).limit(1))
    if job is None:
        return None

    job.state = JobState.RUNNING
    job.attempts += 1
    job.started_at = utcnow()
    job.study.state = StudyState.READING
    return job


def requeue_interrupted_jobs(session: Session) -> list[Job]:
    """Put back in the queue the jobs a crash left running; they are read again from the start."""
    jobs = session.scalars(select(Job).where(Job.state == JobState.RUNNING)).all()
    for job in jobs:
        job.state = JobState.QUEUED
        job.study.state = StudyState.QUEUED
    return list(jobs)


def study_instances(session: Session, job: Job) -> list[Instance]:
    """The instances of the job's study that a reading considers: all but our own outputs."""
    return list(
        session.scalars(
            select(Instance)
            .join(Series)
            .where(Series.study_id == job.study_id, Instance.own_output.is_(False))
            .order_by(Series.id, Instance.id)
        )
    )


def finish_job(session: Session, job: Job, state: JobState, *, reason: str | None = None) -> None:
    job.state = state
    job.reason = reason
    job.finished_at = utcnow()

    study_state = {
        JobState.DONE: StudyState.REPORTED,
        JobState.SKIPPED: StudyState.SKIPPED,
        JobState.FAILED: StudyState.FAILED,
    }[state]
    # A study that received more instances meanwhile stays "receiving" for its next job.
    if not job.study.pending:
        job.study.state = study_state
        job.study.state_reason = reason

    event = {JobState.DONE: AuditEvent.REPORTED, JobState.SKIPPED: AuditEvent.SKIPPED,
             JobState.FAILED: AuditEvent.FAILED}[state]
    audit(session, event, study_uid=job.study.study_instance_uid, job_id=job.id, detail=reason)


def add_output(session: Session, job: Job, *, sop_instance_uid: str, sop_class_uid: str,
               series_instance_uid: str, kind: str, path: str, destinations: list[str]) -> OutputObject:
    """Record an output object and one pending delivery per destination."""
    output = OutputObject(job=job, sop_instance_uid=sop_instance_uid, sop_class_uid=sop_class_uid,
                          series_instance_uid=series_instance_uid, kind=kind, path=path)
    session.add(output)
    for destination in destinations:
        session.add(Delivery(output=output, destination=destination))
    return output


def is_own_series(session: Session, series_instance_uid: str) -> bool:
    found = session.scalar(select(OutputObject.id).where(OutputObject.series_instance_uid == series_instance_uid).limit(1))
    return found is not None


def due_deliveries(session: Session, *, now: datetime | None = None, limit: int = 100) -> list[Delivery]:
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= (now or utcnow()))
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
    )


def mark_delivered(session: Session, delivery: Delivery) -> None:
    delivery.state = DeliveryState.DELIVERED
    delivery.delivered_at = utcnow()
    delivery.last_error = None
    study_uid = delivery.output.job.study.study_instance_uid
    audit(session, AuditEvent.DELIVERED, study_uid=study_uid, sop_uid=delivery.output.sop_instance_uid,
          job_id=delivery.output.job_id, peer=delivery.destination)


def mark_delivery_failed(session: Session, delivery: Delivery, error: str, *, max_attempts: int,
                         retry_in: float) -> bool:
    """Count a failed attempt; return True when the delivery goes dead after ``max_attempts``."""
    delivery.attempts += 1
    delivery.last_error = error
    if delivery.attempts >= max_attempts:
        delivery.state = DeliveryState.DEAD
    else:
        delivery.next_attempt_at = utcnow() + timedelta(seconds=retry_in)

    study_uid = delivery.output.job.study.study_instance_uid
    audit(session, AuditEvent.FAILED, study_uid=study_uid, sop_uid=delivery.output.sop_instance_uid,
          job_id=delivery.output.job_id, peer=delivery.destination, detail=error)
    return delivery.state == DeliveryState.DEAD


def save_results(session: Session, job: Job, results: list[Result]) -> None:
    for result in results:
        result.job = job
        session.add(result)


def recent_studies(session: Session, limit: int = 20) -> list[Study]:
    return list(session.scalars(select(Study).order_by(Study.last_received_at.desc()).limit(limit)))
