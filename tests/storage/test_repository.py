from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from storage.archive import Archive, ArchiveError
from storage.database import open_database, sqlite_url
from storage.models import JobState, StudyState, utcnow
from storage.repository import (
    ReceivedInstance,
    add_output,
    claim_next_job,
    due_deliveries,
    mark_delivery_failed,
    queue_quiet_studies,
    record_instance,
    requeue_interrupted_jobs,
)

import pytest


def received(sop: str, *, study: str = "1.2.3", own_output: bool = False) -> ReceivedInstance:
    return ReceivedInstance(study_instance_uid=study, series_instance_uid=f"{study}.1", sop_instance_uid=sop,
                            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                            modality="DX", path="/dev/null", size=0, sha256="0" * 64, calling_ae_title="MODALITY",
                            own_output=own_output)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    return open_database(sqlite_url(tmp_path))


def test_quiet_study_queued_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))

    with sessions.begin() as session:
        assert queue_quiet_studies(session, stable_after=30) == []
        jobs = queue_quiet_studies(session, stable_after=30, now=utcnow() + timedelta(seconds=31))
        assert len(jobs) == 1
        assert jobs[0].study.state == StudyState.QUEUED
        assert queue_quiet_studies(session, stable_after=30, now=utcnow() + timedelta(seconds=60)) == []


def test_late_instance_reopens_study(sessions: sessionmaker[Session]) -> None:
    later = utcnow() + timedelta(seconds=31)
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        queue_quiet_studies(session, stable_after=30, now=later)
        record_instance(session, received("1.2.3.1.2"))

    with sessions.begin() as session:
        jobs = queue_quiet_studies(session, stable_after=30, now=later + timedelta(seconds=31))
        assert len(jobs) == 1


def test_interrupted_job_requeued(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        queue_quiet_studies(session, stable_after=0, now=utcnow() + timedelta(seconds=1))
        job = claim_next_job(session)
        assert job.state == JobState.RUNNING

    with sessions.begin() as session:
        requeued = requeue_interrupted_jobs(session)
        assert [job.state for job in requeued] == [JobState.QUEUED]
        assert claim_next_job(session).attempts == 2


def test_delivery_dead_after_max_attempts(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        queue_quiet_studies(session, stable_after=0, now=utcnow() + timedelta(seconds=1))
        job = claim_next_job(session)
        add_output(session, job, sop_instance_uid="2.25.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
                   series_instance_uid="2.25.2", kind="report", path="/dev/null", destinations=["PACS@h:1"])

    with sessions.begin() as session:
        delivery = due_deliveries(session)[0]
        assert mark_delivery_failed(session, delivery, "refused", max_attempts=2, retry_in=0) is False
        assert mark_delivery_failed(session, delivery, "refused", max_attempts=2, retry_in=0) is True
        assert due_deliveries(session) == []


def test_archive_rejects_path_like_uid(tmp_path: Path) -> None:
    archive = Archive(tmp_path)

    with pytest.raises(ArchiveError, match=r"SOPInstanceUID '\.\./x' is not a valid DICOM UID"):
        archive.path_for("received", "1.2", "1.2.3", "../x")


def test_archive_write_is_complete(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    path = archive.path_for("received", "1.2", "1.2.3", "1.2.3.4")

    digest = archive.write(path, b"DICM" * 100)

    assert path.read_bytes() == b"DICM" * 100
    assert len(digest) == 64
    assert list(path.parent.glob(".incoming-*")) == []


def test_identical_resend_not_reread(sessions: sessionmaker[Session]) -> None:
    later = utcnow() + timedelta(seconds=31)
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        queue_quiet_studies(session, stable_after=30, now=later)
        record_instance(session, received("1.2.3.1.1"))

    with sessions.begin() as session:
        assert queue_quiet_studies(session, stable_after=30, now=later + timedelta(seconds=31)) == []


def test_own_output_alone_starts_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1", own_output=True))

    with sessions.begin() as session:
        assert queue_quiet_studies(session, stable_after=0, now=utcnow() + timedelta(seconds=1)) == []
