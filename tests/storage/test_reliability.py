"""Storage state machines under faults: versions of a resent instance, retries, crash recovery, upgrades."""
from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import AuditEvent, AuditRecord, Delivery, DeliveryState, Instance, JobState, utcnow
from storage.repository import (
    ReceivedInstance,
    add_output,
    audit_records,
    claim_next_job,
    deliveries_needing_attention,
    due_deliveries,
    fail_repeatedly_interrupted_jobs,
    interrupted_deliveries,
    mark_delivered,
    mark_delivery_failed,
    mark_sending,
    queue_quiet_studies,
    record_instance,
    requeue_interrupted_jobs,
    retry_deliveries,
)

STUDY = "1.2.3"
DESTINATION = "PACS@127.0.0.1:104"


def received(sop: str, *, sha256: str = "a" * 64, path: str = "/archive/v1.dcm") -> ReceivedInstance:
    return ReceivedInstance(study_instance_uid=STUDY, series_instance_uid=f"{STUDY}.1", sop_instance_uid=sop,
                            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                            modality="DX", path=path, size=10, sha256=sha256, calling_ae_title="MODALITY",
                            own_output=False, peer_address="127.0.0.1")


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    return open_database(sqlite_url(tmp_path))


def quiet(session: Session) -> list:
    return queue_quiet_studies(session, stable_after=30, now=utcnow() + timedelta(seconds=31))


def delivery_for(sessions: sessionmaker[Session]) -> int:
    """A study read once, with one output and one pending delivery; returns the delivery id."""
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        quiet(session)
        job = claim_next_job(session)
        add_output(session, job, sop_instance_uid="2.25.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
                   series_instance_uid="2.25.2", kind="report", path="/dev/null", destinations=[DESTINATION])
    with sessions() as session:
        return session.scalar(select(Delivery.id))


def test_changed_resend_keeps_old_version(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        record_instance(session, received("1.2.3.1.1", sha256="b" * 64, path="/archive/v2.dcm"))

    with sessions() as session:
        instance = session.scalar(select(Instance))
        versions = [(version.version, version.path, version.sha256) for version in instance.versions]
    assert instance.path == "/archive/v2.dcm"
    assert instance.sha256 == "b" * 64
    assert versions == [(1, "/archive/v1.dcm", "a" * 64)]


def test_changed_resend_rereads_study(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        assert len(quiet(session)) == 1
        record_instance(session, received("1.2.3.1.1", sha256="b" * 64))

    with sessions.begin() as session:
        assert len(quiet(session)) == 1


def test_resends_audited(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        record_instance(session, received("1.2.3.1.1"))
        record_instance(session, received("1.2.3.1.1", sha256="b" * 64))

    with sessions() as session:
        events = [record.event for record in audit_records(session, sop_uid="1.2.3.1.1")]
        details = [record.detail for record in audit_records(session, events=[AuditEvent.NEW_VERSION])]
    assert events == [AuditEvent.RECEIVED, AuditEvent.DUPLICATE, AuditEvent.NEW_VERSION]
    assert "version 2" in details[0]
    assert "version 1" in details[0]


def test_sending_mark_survives_crash(sessions: sessionmaker[Session]) -> None:
    delivery_id = delivery_for(sessions)
    with sessions.begin() as session:
        mark_sending(session, [delivery_id])

    # A crash here: the response is never recorded.
    with sessions() as session:
        assert [delivery.id for delivery in interrupted_deliveries(session)] == [delivery_id]


def test_delivered_clears_sending_mark(sessions: sessionmaker[Session]) -> None:
    delivery_id = delivery_for(sessions)
    with sessions.begin() as session:
        mark_sending(session, [delivery_id])
        mark_delivered(session, session.get_one(Delivery, delivery_id))

    with sessions() as session:
        assert interrupted_deliveries(session) == []
        assert due_deliveries(session) == []


def test_lost_answer_stays_uncertain(sessions: sessionmaker[Session]) -> None:
    delivery_id = delivery_for(sessions)
    with sessions.begin() as session:
        mark_sending(session, [delivery_id])
        delivery = session.get_one(Delivery, delivery_id)
        mark_delivery_failed(session, delivery, "no answer", max_attempts=3, retry_in=0, uncertain=True)

    with sessions() as session:
        assert [delivery.id for delivery in interrupted_deliveries(session)] == [delivery_id]


def test_confirmed_delivery_audited(sessions: sessionmaker[Session]) -> None:
    delivery_id = delivery_for(sessions)
    with sessions.begin() as session:
        mark_delivered(session, session.get_one(Delivery, delivery_id), confirmed_by_query=True)

    with sessions() as session:
        records = audit_records(session, events=[AuditEvent.CONFIRMED])
    assert [record.peer for record in records] == [DESTINATION]
    assert "C-FIND" in records[0].detail


def test_retry_revives_dead_delivery(sessions: sessionmaker[Session]) -> None:
    delivery_id = delivery_for(sessions)
    with sessions.begin() as session:
        delivery = session.get_one(Delivery, delivery_id)
        assert mark_delivery_failed(session, delivery, "rejected", max_attempts=1, retry_in=60) is True

    with sessions.begin() as session:
        retried = retry_deliveries(session)
        assert [item.id for item in retried] == [delivery_id]

    with sessions() as session:
        delivery = session.get_one(Delivery, delivery_id)
        due = due_deliveries(session)
        events = [record.event for record in audit_records(session, peer=DESTINATION)]
    assert delivery.state == DeliveryState.PENDING
    assert delivery.attempts == 0
    assert [item.id for item in due] == [delivery_id]
    assert events == [AuditEvent.DEAD, AuditEvent.RETRIED]


def test_retry_leaves_pending_alone(sessions: sessionmaker[Session]) -> None:
    delivery_for(sessions)

    with sessions.begin() as session:
        assert retry_deliveries(session) == []


def test_attention_lists_failures(sessions: sessionmaker[Session]) -> None:
    delivery_id = delivery_for(sessions)
    with sessions.begin() as session:
        delivery = session.get_one(Delivery, delivery_id)
        mark_delivery_failed(session, delivery, "Calling AE title not recognised", max_attempts=5, retry_in=60)

    with sessions() as session:
        listed = deliveries_needing_attention(session)
        assert [(item.id, item.last_error) for item in listed] == [(delivery_id, "Calling AE title not recognised")]


def test_crash_looping_job_failed(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        quiet(session)
        claim_next_job(session)

    for _ in range(2):
        with sessions.begin() as session:
            assert fail_repeatedly_interrupted_jobs(session, max_attempts=3) == []
            requeue_interrupted_jobs(session)
            claim_next_job(session)

    with sessions.begin() as session:
        failed = fail_repeatedly_interrupted_jobs(session, max_attempts=3)
        assert [(job.state, job.attempts) for job in failed] == [(JobState.FAILED, 3)]
        assert requeue_interrupted_jobs(session) == []


def test_reported_audit_names_model(sessions: sessionmaker[Session]) -> None:
    from storage.repository import finish_job

    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        quiet(session)
        job = claim_next_job(session)
        job.model_identity = "pedfrac-demo 1.2.0"
        finish_job(session, job, JobState.DONE)

    with sessions() as session:
        records = audit_records(session, events=[AuditEvent.REPORTED])
    assert records[0].detail == "model pedfrac-demo 1.2.0"


def test_audit_filters_combine(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_instance(session, received("1.2.3.1.1"))
        record_instance(session, received("1.2.3.1.2"))

    with sessions() as session:
        assert len(audit_records(session, study_uid=STUDY)) == 2
        assert len(audit_records(session, study_uid=STUDY, sop_uid="1.2.3.1.2")) == 1
        assert audit_records(session, since=utcnow() + timedelta(minutes=1)) == []
        assert len(audit_records(session, limit=1)) == 1


def test_old_database_gains_columns(tmp_path: Path) -> None:
    database = tmp_path / "pedfrac.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE audit_trail (id INTEGER PRIMARY KEY, at DATETIME, event VARCHAR(16), "
                           "study_instance_uid VARCHAR(64), sop_instance_uid VARCHAR(64), job_id INTEGER, "
                           "peer VARCHAR(64), detail TEXT)")
        connection.execute("INSERT INTO audit_trail (at, event) VALUES ('2026-01-01 00:00:00', 'received')")

    sessions = open_database(sqlite_url(tmp_path))

    with sessions() as session:
        record = session.scalar(select(AuditRecord))
    assert record.peer_address is None
    assert record.event == AuditEvent.RECEIVED


def test_partial_files_removed(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")
    kept = archive.path_for("received", "1.2", "1.2.3", "1.2.3.4")
    archive.write(kept, b"DICM")
    (kept.parent / ".incoming-abc.part").write_bytes(b"half")

    assert archive.remove_partial_files() == 1
    assert [path.name for path in kept.parent.iterdir()] == [kept.name]


def test_versions_get_own_files(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")

    first = archive.path_for("received", "1.2", "1.2.3", "1.2.3.4", digest="a" * 64)
    second = archive.path_for("received", "1.2", "1.2.3", "1.2.3.4", digest="b" * 64)

    assert first != second
    assert first.name == f"1.2.3.4.{'a' * 16}.dcm"


def test_chunked_write_matches_digest(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")
    path = archive.path_for("received", "1.2", "1.2.3", "1.2.3.4")

    digest = archive.write(path, [b"DICM", memoryview(b"-body")])

    assert path.read_bytes() == b"DICM-body"
    assert digest == hashlib.sha256(b"DICM-body").hexdigest()
