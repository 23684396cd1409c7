"""Load: concurrent associations all stored; the quiet period holds while series keep arriving."""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from listener.scp import SUCCESS, StoreSCP
from listener.settings import DicomSettings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import Instance, Job
from storage.repository import ReceivedInstance, queue_quiet_studies, record_instance
from tests.factories import new_study
from tests.listener.harness import small_dx, store_all
from tests.peers import free_port

ASSOCIATIONS = 8
INSTANCES = 1000


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StoreSCP]:
    settings = DicomSettings(port=free_port(), max_associations=ASSOCIATIONS)
    server = StoreSCP(settings, open_database(sqlite_url(tmp_path)), Archive(tmp_path / "archive"), min_free_bytes=0)
    server.start()
    yield server
    server.stop()


def send_concurrently(port: int, shares: list[list]) -> list[dict[str, int | None]]:
    results: list[dict[str, int | None]] = [{} for _ in shares]

    def send(index: int) -> None:
        results[index] = store_all(port, shares[index])

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(shares))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return results


@pytest.mark.slow
def test_eight_associations_all_stored(scp: StoreSCP, figures) -> None:  # noqa: ANN001
    studies = [new_study() for _ in range(4)]
    datasets = [small_dx(studies[index % 4], seed=index, side=16) for index in range(INSTANCES)]
    shares = [datasets[index::ASSOCIATIONS] for index in range(ASSOCIATIONS)]

    started = time.monotonic()
    results = send_concurrently(scp.port, shares)
    elapsed = time.monotonic() - started

    statuses = [status for result in results for status in result.values()]
    with scp.sessions() as session:
        rows = session.scalar(select(func.count(Instance.id)))
        paths = [Path(path) for path in session.scalars(select(Instance.path))]
    missing_files = [path for path in paths if not path.is_file()]
    figures.record(associations=ASSOCIATIONS, sent=INSTANCES, acknowledged=statuses.count(SUCCESS), stored=rows,
                   lost=INSTANCES - rows, seconds=round(elapsed, 1), per_second=round(INSTANCES / elapsed))
    assert statuses.count(SUCCESS) == INSTANCES
    assert rows == INSTANCES
    assert missing_files == []


@pytest.mark.slow
def test_quiet_period_during_arrivals(scp: StoreSCP, figures) -> None:  # noqa: ANN001
    """Three studies keep receiving an instance every 0.3 s for 6 s; none is queued before it goes quiet."""
    stable_after = 1.0
    jobs: list[tuple[str, datetime]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with scp.sessions.begin() as session:
                for job in queue_quiet_studies(session, stable_after=stable_after):
                    jobs.append((job.study.study_instance_uid, job.created_at))
            stop.wait(0.1)

    studies = [new_study() for _ in range(3)]
    shares = [[small_dx(study, seed=index * 100 + step, side=16) for step in range(20)]
              for index, study in enumerate(studies)]
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = send_paced(scp.port, shares, interval=0.3)
        jobs_while_arriving = list(jobs)
        time.sleep(stable_after + 1.0)
    finally:
        stop.set()
        watcher.join(timeout=30)

    last_arrival = last_received(scp.sessions)
    queued = {uid: created for uid, created in jobs}
    gaps = [(queued[uid] - last_arrival[uid]).total_seconds() for uid in queued]
    figures.record(studies=len(studies), instances=sum(len(share) for share in shares),
                   jobs_while_arriving=len(jobs_while_arriving), jobs_after=len(jobs),
                   min_quiet_seconds=round(min(gaps), 2))
    assert all(status == SUCCESS for result in results for status in result.values())
    assert jobs_while_arriving == []
    assert sorted(queued) == sorted(str(study.StudyInstanceUID) for study in studies)
    assert len(jobs) == len(studies)
    assert min(gaps) >= stable_after


def send_paced(port: int, shares: list[list], *, interval: float) -> list[dict[str, int | None]]:
    """One association per share, each sending one instance every ``interval`` seconds."""
    results: list[dict[str, int | None]] = [{} for _ in shares]

    def send(index: int) -> None:
        for dataset in shares[index]:
            results[index].update(store_all(port, [dataset]))
            time.sleep(interval)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(shares))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def last_received(sessions: sessionmaker[Session]) -> dict[str, datetime]:
    with sessions() as session:
        instances = session.scalars(select(Instance)).all()
        return {instance.series.study.study_instance_uid: max(
            other.received_at for series in instance.series.study.series for other in series.instances)
            for instance in instances}


def test_quiet_period_over_minutes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures) -> None:  # noqa: ANN001
    """Twenty simulated minutes: study A receives every 5-29 s, study B goes quiet and gets a late series."""
    clock = [datetime(2027, 1, 4, 8, 0, 0)]
    monkeypatch.setattr("storage.repository.utcnow", lambda: clock[0])
    sessions = open_database(sqlite_url(tmp_path))
    rng = random.Random(11)
    arrivals = {"1.2.826.0.1.3680043.10.1187.5.1": [], "1.2.826.0.1.3680043.10.1187.5.2": []}

    second = 0
    while second < 600:
        second += rng.randint(5, 29)
        arrivals["1.2.826.0.1.3680043.10.1187.5.1"].append(second)
    arrivals["1.2.826.0.1.3680043.10.1187.5.2"] = [0, 10, 20, 400, 410]

    queued: list[tuple[str, int]] = []
    for tick in range(0, 1200):
        clock[0] = datetime(2027, 1, 4, 8, 0, 0) + timedelta(seconds=tick)
        with sessions.begin() as session:
            for study_uid, seconds in arrivals.items():
                if tick in seconds:
                    record_instance(session, arrival(study_uid, tick))
            for job in queue_quiet_studies(session, stable_after=30, now=clock[0]):
                queued.append((job.study.study_instance_uid, tick))

    with sessions() as session:
        jobs = session.scalar(select(func.count(Job.id)))
    a_last = max(arrivals["1.2.826.0.1.3680043.10.1187.5.1"])
    figures.record(simulated_seconds=1200, arrivals=sum(len(seconds) for seconds in arrivals.values()), jobs=jobs)
    assert queued == sorted([("1.2.826.0.1.3680043.10.1187.5.2", 50), ("1.2.826.0.1.3680043.10.1187.5.2", 440),
                             ("1.2.826.0.1.3680043.10.1187.5.1", a_last + 30)], key=lambda item: item[1])


def arrival(study_uid: str, second: int) -> ReceivedInstance:
    return ReceivedInstance(study_instance_uid=study_uid, series_instance_uid=f"{study_uid}.{second // 100}",
                            sop_instance_uid=f"{study_uid}.{second // 100}.{second}",
                            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                            modality="DX", path="/dev/null", size=0, sha256=f"{second:064d}",
                            calling_ae_title="MODALITY", own_output=False)
