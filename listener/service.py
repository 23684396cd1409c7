"""The running service: the SCP, the job runner and the delivery loop, in one process."""
from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from inference.ensemble import Ensemble
from inference.offline import configure_ultralytics_offline
from listener.reading import StudyReader
from listener.scp import StoreSCP
from listener.scu import backoff_seconds, send_files
from listener.settings import Settings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import Delivery, DeliveryState
from storage.repository import (
    claim_next_job,
    due_deliveries,
    mark_delivered,
    mark_delivery_failed,
    queue_quiet_studies,
    requeue_interrupted_jobs,
)

logger = logging.getLogger(__name__)

MIN_FREE_BYTES = 1 << 30


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data folder owner-only: it holds patient images."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)


class Service:
    """Everything ``pedfrac serve`` runs; ``start`` returns once the SCP listens."""

    def __init__(self, settings: Settings, *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.settings = settings
        data_dir = settings.storage.data_dir
        prepare_data_dir(data_dir)

        self.sessions: sessionmaker[Session] = open_database(settings.storage.database_url or sqlite_url(data_dir))
        self.archive = Archive(settings.storage.archive_dir)
        configure_ultralytics_offline(data_dir / "ultralytics")
        self.ensemble = Ensemble(settings.inference.models, device=settings.inference.device,
                                 gradcam=settings.inference.gradcam)
        self.reader = StudyReader(settings, self.sessions, self.archive, self.ensemble)
        self.scp = StoreSCP(settings.dicom, self.sessions, self.archive, min_free_bytes=min_free_bytes)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        with self.sessions.begin() as session:
            for job in requeue_interrupted_jobs(session):
                logger.warning("job %d of study %s was interrupted; queued again", job.id, job.study.study_instance_uid)

        self.scp.start()
        for name, loop in (("jobs", self._job_loop), ("deliveries", self._delivery_loop)):
            thread = threading.Thread(target=loop, name=f"pedfrac-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("service started: data folder %s, model package %s", self.settings.storage.data_dir,
                    self.ensemble.manifest.identity)

    def stop(self) -> None:
        self._stop.set()
        self.scp.stop()
        for thread in self._threads:
            thread.join(timeout=120)
        logger.info("service stopped")

    def wait(self) -> None:
        self._stop.wait()

    def _job_loop(self) -> None:
        interval = self.settings.study.poll_interval
        while not self._stop.is_set():
            try:
                job_id = self._next_job()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                logger.exception("job queue check failed; retrying in %.1f s", interval)
                self._stop.wait(interval)
                continue

            if job_id is None:
                self._stop.wait(interval)
            else:
                self.reader.run(job_id)

    def _next_job(self) -> int | None:
        with self.sessions.begin() as session:
            for job in queue_quiet_studies(session, stable_after=self.settings.study.stable_after):
                logger.info("study %s quiet for %.0f s: job %d queued", job.study.study_instance_uid,
                            self.settings.study.stable_after, job.id)
            job = claim_next_job(session)
            return None if job is None else job.id

    def _delivery_loop(self) -> None:
        interval = self.settings.study.poll_interval
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                logger.exception("delivery round failed; retrying in %.1f s", interval)
            self._stop.wait(interval)

    def deliver_due(self) -> None:
        """Send every due delivery, one association per destination."""
        destinations = {destination.name: destination for destination in self.settings.delivery.destinations}
        with self.sessions() as session:
            batches: dict[str, list[tuple[int, Path]]] = defaultdict(list)
            for delivery in due_deliveries(session):
                batches[delivery.destination].append((delivery.id, Path(delivery.output.path)))

        for name, items in batches.items():
            destination = destinations.get(name)
            if destination is None:
                self._fail_all(items, f"destination {name} is no longer in the settings", final=True)
                continue

            outcomes = send_files(self.settings.dicom.ae_title, destination, [path for _, path in items],
                                  timeout=self.settings.delivery.timeout)
            self._record_outcomes([delivery_id for delivery_id, _ in items], [outcome.error for outcome in outcomes])

    def _record_outcomes(self, delivery_ids: list[int], errors: list[str | None]) -> None:
        settings = self.settings.delivery
        with self.sessions.begin() as session:
            for delivery_id, error in zip(delivery_ids, errors):
                delivery = session.get_one(Delivery, delivery_id)
                if error is None:
                    mark_delivered(session, delivery)
                    continue

                retry_in = backoff_seconds(delivery.attempts + 1, settings)
                dead = mark_delivery_failed(session, delivery, error, max_attempts=settings.max_attempts,
                                            retry_in=retry_in)
                sop_uid = delivery.output.sop_instance_uid
                if dead:
                    logger.error("delivery %d of %s to %s is dead after %d attempts: %s", delivery_id, sop_uid,
                                 delivery.destination, delivery.attempts, error)
                else:
                    logger.warning("delivery %d of %s to %s failed (attempt %d), retry in %.0f s: %s", delivery_id,
                                   sop_uid, delivery.destination, delivery.attempts, retry_in, error)

    def _fail_all(self, items: list[tuple[int, Path]], error: str, *, final: bool) -> None:
        with self.sessions.begin() as session:
            for delivery_id, _ in items:
                delivery = session.get_one(Delivery, delivery_id)
                delivery.last_error = error
                if final:
                    delivery.state = DeliveryState.DEAD
                logger.error("delivery %d of %s: %s", delivery_id, delivery.output.sop_instance_uid, error)
