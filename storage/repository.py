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
    InstanceVersion,
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
    """Identifiers and storage facts of one stored instance, with no patient data."""

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
    peer_address: str | None = None

    @property
    def starts_job(self) -> bool:
        return not self.own_output and self.not_read_reason is None


def audit(session: Session, event: AuditEvent, *, study_uid: str | None = None, sop_uid: str | None = None,
          job_id: int | None = None, peer: str | None = None, peer_address: str | None = None,
          detail: str | None = None) -> None:
    session.add(AuditRecord(event=event, study_instance_uid=study_uid, sop_instance_uid=sop_uid,
                            job_id=job_id, peer=peer, peer_address=peer_address, detail=detail))


def find_instance(session: Session, sop_instance_uid: str) -> Instance | None:
    return session.scalar(select(Instance).where(Instance.sop_instance_uid == sop_instance_uid))


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

    instance = find_instance(session, received.sop_instance_uid)
    if instance is not None and instance.sha256 == received.sha256:
        # The same bytes again (a PACS resending a study): acknowledged, and no new reading.
        audit(session, AuditEvent.DUPLICATE, study_uid=received.study_instance_uid,
              sop_uid=received.sop_instance_uid, peer=received.calling_ae_title, peer_address=received.peer_address,
              detail=f"identical content (sha256 {received.sha256[:16]}), version {len(instance.versions) + 1} kept")
        return instance

    if instance is None:
        instance = Instance(sop_instance_uid=received.sop_instance_uid, series=series)
        session.add(instance)
        event, detail = AuditEvent.RECEIVED, None
    else:
        event, detail = AuditEvent.NEW_VERSION, _keep_previous_version(instance, received)

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

    notes = [detail, "own output" if received.own_output else received.not_read_reason]
    audit(session, event, study_uid=received.study_instance_uid, sop_uid=received.sop_instance_uid,
          peer=received.calling_ae_title, peer_address=received.peer_address,
          detail="; ".join(note for note in notes if note) or None)
    return instance


def _keep_previous_version(instance: Instance, received: ReceivedInstance) -> str:
    """Move the current content of ``instance`` into its version history and describe the change."""
    number = len(instance.versions) + 1
    instance.versions.append(InstanceVersion(
        version=number, path=instance.path, size=instance.size, sha256=instance.sha256,
        calling_ae_title=instance.calling_ae_title, received_at=instance.received_at,
    ))
    return (f"content differs: version {number + 1} (sha256 {received.sha256[:16]}) replaces "
            f"version {number} (sha256 {instance.sha256[:16]}), which stays archived")


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


def fail_repeatedly_interrupted_jobs(session: Session, *, max_attempts: int) -> list[Job]:
    """Mark failed the running jobs that have been started ``max_attempts`` times already.

    A study whose reading kills the process (out of memory on a huge image, say) would otherwise
    be read again at every start, and the service would never stay up.
    """
    jobs = session.scalars(select(Job).where(Job.state == JobState.RUNNING, Job.attempts >= max_attempts)).all()
    for job in jobs:
        finish_job(session, job, JobState.FAILED,
                   reason=f"interrupted {job.attempts} times by a stop of the service; not started again")
    return list(jobs)


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
    model = f"model {job.model_identity}" if job.model_identity else None
    detail = "; ".join(part for part in (model, reason) if part) or None
    audit(session, event, study_uid=job.study.study_instance_uid, job_id=job.id, detail=detail)


def add_output(session: Session, job: Job, *, sop_instance_uid: str, sop_class_uid: str,
               series_instance_uid: str, kind: str, path: str, destinations: list[str]) -> OutputObject:
    """Record an output object and one pending delivery per destination."""
    output = OutputObject(job=job, sop_instance_uid=sop_instance_uid, sop_class_uid=sop_class_uid,
                          series_instance_uid=series_instance_uid, kind=kind, path=path)
    session.add(output)
    for destination in destinations:
        session.add(Delivery(output=output, destination=destination))
    return output


def previous_output(session: Session, job: Job, kind: str) -> OutputObject | None:
    """Return the output of ``kind`` made by the latest earlier job of the job's study, or None.

    A new reading of a study (late instances) uses it to name the report it replaces.
    """
    return session.scalar(
        select(OutputObject)
        .join(Job)
        .where(Job.study_id == job.study_id, Job.id < job.id, OutputObject.kind == kind)
        .order_by(Job.id.desc(), OutputObject.id.desc())
        .limit(1)
    )


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


def interrupted_deliveries(session: Session) -> list[Delivery]:
    """Pending deliveries whose last C-STORE was sent but whose response was never recorded."""
    return list(session.scalars(
        select(Delivery).where(Delivery.state == DeliveryState.PENDING, Delivery.sending_since.is_not(None))
        .order_by(Delivery.id)
    ))


def mark_sending(session: Session, delivery_ids: list[int]) -> None:
    """Record that C-STOREs are about to be sent; the caller commits before sending."""
    now = utcnow()
    for delivery_id in delivery_ids:
        session.get_one(Delivery, delivery_id).sending_since = now


def mark_delivered(session: Session, delivery: Delivery, *, confirmed_by_query: bool = False) -> None:
    """Close a delivery the peer acknowledged, or one a C-FIND found there after an uncertain attempt."""
    delivery.state = DeliveryState.DELIVERED
    delivery.delivered_at = utcnow()
    delivery.last_error = None
    delivery.sending_since = None
    study_uid = delivery.output.job.study.study_instance_uid
    event = AuditEvent.CONFIRMED if confirmed_by_query else AuditEvent.DELIVERED
    detail = "found at the destination by C-FIND after an interrupted attempt; not sent again" if confirmed_by_query else None
    audit(session, event, study_uid=study_uid, sop_uid=delivery.output.sop_instance_uid,
          job_id=delivery.output.job_id, peer=delivery.destination, detail=detail)


def mark_delivery_failed(session: Session, delivery: Delivery, error: str, *, max_attempts: int,
                         retry_in: float, uncertain: bool = False) -> bool:
    """Count a failed attempt; return True when the delivery goes dead after ``max_attempts``.

    ``uncertain`` keeps the in-flight mark, for an attempt whose C-STORE got no response: the peer
    may have stored the object, so the next attempt asks it first.
    """
    delivery.attempts += 1
    delivery.last_error = error
    if not uncertain:
        delivery.sending_since = None
    if delivery.attempts >= max_attempts:
        delivery.state = DeliveryState.DEAD
    else:
        delivery.next_attempt_at = utcnow() + timedelta(seconds=retry_in)

    study_uid = delivery.output.job.study.study_instance_uid
    dead = delivery.state == DeliveryState.DEAD
    audit(session, AuditEvent.DEAD if dead else AuditEvent.FAILED, study_uid=study_uid,
          sop_uid=delivery.output.sop_instance_uid, job_id=delivery.output.job_id, peer=delivery.destination,
          detail=f"attempt {delivery.attempts}: {error}")
    return dead


def retry_deliveries(session: Session, *, delivery_ids: list[int] | None = None, study_uid: str | None = None,
                     destination: str | None = None, include_pending: bool = False) -> list[Delivery]:
    """Make dead deliveries due now with a fresh count of attempts, and return them.

    With ``include_pending``, pending deliveries waiting out their back-off are also made due now.
    The filters combine; with none, every dead delivery is retried.
    """
    states = [DeliveryState.DEAD, DeliveryState.PENDING] if include_pending else [DeliveryState.DEAD]
    query = select(Delivery).join(OutputObject).join(Job).join(Study).where(Delivery.state.in_(states))
    if delivery_ids:
        query = query.where(Delivery.id.in_(delivery_ids))
    if study_uid:
        query = query.where(Study.study_instance_uid == study_uid)
    if destination:
        query = query.where(Delivery.destination == destination)

    deliveries = list(session.scalars(query.order_by(Delivery.id)))
    for delivery in deliveries:
        previous = f"{delivery.state.value} after {delivery.attempts} attempts"
        delivery.state = DeliveryState.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = utcnow()
        audit(session, AuditEvent.RETRIED, study_uid=delivery.output.job.study.study_instance_uid,
              sop_uid=delivery.output.sop_instance_uid, job_id=delivery.output.job_id, peer=delivery.destination,
              detail=f"retry requested by an operator ({previous})")
    return deliveries


def deliveries_needing_attention(session: Session, limit: int = 50) -> list[Delivery]:
    """Dead deliveries and pending ones whose last attempt failed, newest first."""
    return list(
        session.scalars(
            select(Delivery)
            .where((Delivery.state == DeliveryState.DEAD)
                   | ((Delivery.state == DeliveryState.PENDING) & Delivery.last_error.is_not(None)))
            .order_by(Delivery.id.desc())
            .limit(limit)
        )
    )


def audit_records(session: Session, *, study_uid: str | None = None, sop_uid: str | None = None,
                  events: list[AuditEvent] | None = None, peer: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, job_id: int | None = None, limit: int = 1000) -> list[AuditRecord]:
    """Audit records matching every filter given, oldest first (the latest ``limit`` of them)."""
    query = select(AuditRecord)
    if study_uid:
        query = query.where(AuditRecord.study_instance_uid == study_uid)
    if sop_uid:
        query = query.where(AuditRecord.sop_instance_uid == sop_uid)
    if events:
        query = query.where(AuditRecord.event.in_(events))
    if peer:
        query = query.where(AuditRecord.peer == peer)
    if since:
        query = query.where(AuditRecord.at >= since)
    if until:
        query = query.where(AuditRecord.at < until)
    if job_id is not None:
        query = query.where(AuditRecord.job_id == job_id)

    latest = list(session.scalars(query.order_by(AuditRecord.id.desc()).limit(limit)))
    return latest[::-1]


def save_results(session: Session, job: Job, results: list[Result]) -> None:
    for result in results:
        result.job = job
        session.add(result)


def recent_studies(session: Session, limit: int = 20) -> list[Study]:
    return list(session.scalars(select(Study).order_by(Study.last_received_at.desc()).limit(limit)))
