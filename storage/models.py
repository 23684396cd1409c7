"""SQLAlchemy 2 models: studies, series, instances, jobs, results, deliveries and the audit trail."""
from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import DateTime, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Current UTC time without tzinfo, the form SQLite returns, so stored and fresh values compare."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class StudyState(enum.StrEnum):
    """State of a study, as ``pedfrac status`` prints it."""

    RECEIVING = "receiving"
    QUEUED = "queued"
    READING = "reading"
    REPORTED = "reported"
    SKIPPED = "skipped"
    FAILED = "failed"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class AuditEvent(enum.StrEnum):
    """Job events: the audit trail and the logs use the same words."""

    RECEIVED = "received"
    DUPLICATE = "duplicate"
    NEW_VERSION = "new-version"
    QUARANTINED = "quarantined"
    REFUSED = "refused"
    QUEUED = "queued"
    INFERRED = "inferred"
    SKIPPED = "skipped"
    REPORTED = "reported"
    DELIVERED = "delivered"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    DEAD = "dead"
    RETRIED = "retried"
    REJECTED = "rejected"


def _enum(kind: type[enum.StrEnum]) -> Enum:
    return Enum(kind, native_enum=False, length=16, values_callable=lambda members: [m.value for m in members])


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    state: Mapped[StudyState] = mapped_column(_enum(StudyState), default=StudyState.RECEIVING)
    state_reason: Mapped[str | None] = mapped_column(Text)
    first_received_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow, index=True)
    # True while instances arrived that no job has read yet; the quiet-period watcher clears it.
    pending: Mapped[bool] = mapped_column(default=True, index=True)

    series: Mapped[list[Series]] = relationship(back_populates="study", cascade="all, delete-orphan")
    jobs: Mapped[list[Job]] = relationship(back_populates="study", order_by="Job.id")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    modality: Mapped[str | None] = mapped_column(String(16))

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series", cascade="all, delete-orphan")


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    calling_ae_title: Mapped[str] = mapped_column(String(16))
    # Our own outputs coming back: kept, never read, never starting a job.
    own_output: Mapped[bool] = mapped_column(default=False)
    # Why this instance starts no job (not a projection radiograph); None for radiographs.
    not_read_reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances")
    # Earlier contents of this SOP Instance UID, oldest first; the row itself contains the current one.
    versions: Mapped[list[InstanceVersion]] = relationship(back_populates="instance", cascade="all, delete-orphan",
                                                           order_by="InstanceVersion.version")


class InstanceVersion(Base):
    """A superseded content of an instance: the same SOP Instance UID was received with other bytes.

    The file stays in the archive, so what was read before can still be inspected.
    """

    __tablename__ = "instance_versions"
    __table_args__ = (UniqueConstraint("instance_id", "version", name="uq_instance_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    calling_ae_title: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(DateTime())
    superseded_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)

    instance: Mapped[Instance] = relationship(back_populates="versions")


class Job(Base):
    """One reading of a study; a late instance produces a new job that supersedes the last."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.QUEUED, index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    model_identity: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime())

    study: Mapped[Study] = relationship(back_populates="jobs")
    results: Mapped[list[Result]] = relationship(back_populates="job", cascade="all, delete-orphan")
    outputs: Mapped[list[OutputObject]] = relationship(back_populates="job", cascade="all, delete-orphan")


class Result(Base):
    """A reading of one image (``sop_instance_uid`` set) or of the patient (``sop_instance_uid`` empty)."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    body_part: Mapped[str | None] = mapped_column(String(16))
    view: Mapped[str | None] = mapped_column(String(8))
    laterality: Mapped[str | None] = mapped_column(String(2))
    probability: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    positive: Mapped[bool | None]
    skipped_reason: Mapped[str | None] = mapped_column(Text)
    model_identity: Mapped[str] = mapped_column(String(128))

    job: Mapped[Job] = relationship(back_populates="results")


class OutputObject(Base):
    """A DICOM object pedfrac made (SC overlay or SR), kept in the archive until delivered."""

    __tablename__ = "output_objects"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="outputs")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="output", cascade="all, delete-orphan")


class Delivery(Base):
    """Sending one output object to one destination; unique per pair so nothing is sent twice."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("output_id", "destination", name="uq_delivery_output_destination"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("output_objects.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState), default=DeliveryState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime())
    # Set and committed before a C-STORE is sent, cleared when its response is committed. Still set
    # after a crash or a lost response: the peer may hold the object, so it is checked before a resend.
    sending_since: Mapped[datetime | None] = mapped_column(DateTime())

    output: Mapped[OutputObject] = relationship(back_populates="deliveries")


class AuditRecord(Base):
    """Who sent what and when, which model read it, what was delivered where. Holds no PHI."""

    __tablename__ = "audit_trail"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow, index=True)
    event: Mapped[AuditEvent] = mapped_column(_enum(AuditEvent))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[int | None]
    peer: Mapped[str | None] = mapped_column(String(64))
    peer_address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
