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
from listener.delivery import DeliveryRunner
from listener.reading import StudyReader
from listener.scp import StoreSCP
from listener.settings import Settings
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.repository import (
    claim_next_job,
    fail_repeatedly_interrupted_jobs,
    interrupted_deliveries,
    queue_quiet_studies,
    requeue_interrupted_jobs,
)

logger = logging.getLogger(__name__)

# A job started this many times without finishing is failed instead of started again.
MAX_JOB_ATTEMPTS = 3


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data folder owner-only, because it contains patient images."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)


class Service:
    """Everything ``pedfrac serve`` runs; ``start`` returns once the SCP listens.

    ``min_free_bytes`` overrides ``[storage] min_free_bytes``.
    """

    def __init__(self, settings: Settings, *, min_free_bytes: int | None = None) -> None:
        self.settings = settings
        data_dir = settings.storage.data_dir
        prepare_data_dir(data_dir)

        self.sessions: sessionmaker[Session] = open_database(settings.storage.database_url or sqlite_url(data_dir))
        self.archive = Archive(settings.storage.archive_dir)
        configure_ultralytics_offline(data_dir / "ultralytics", threads=settings.inference.threads or None)
        self.ensemble = Ensemble(settings.inference.models, device=settings.inference.device,
                                 gradcam=settings.inference.gradcam)
        self.reader = StudyReader(settings, self.sessions, self.archive, self.ensemble)
        floor = settings.storage.min_free_bytes if min_free_bytes is None else min_free_bytes
        self.scp = StoreSCP(settings.dicom, self.sessions, self.archive, min_free_bytes=floor,
                            quarantine=settings.storage.quarantine_dir)
        self.deliveries = DeliveryRunner(settings, self.sessions)
        self._stop = threading.Event()
        # Set when a job has written outputs, so the delivery loop sends them without waiting a poll interval.
        self._outputs_ready = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._recover()
        self.scp.start()
        for name, loop in (("jobs", self._job_loop), ("deliveries", self._delivery_loop)):
            thread = threading.Thread(target=loop, name=f"pedfrac-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("service started: data folder %s, model package %s", self.settings.storage.data_dir,
                    self.ensemble.manifest.identity)

    def _recover(self) -> None:
        """Undo what a crash left half done: partial files, running jobs, unanswered deliveries."""
        self.archive.remove_partial_files()
        with self.sessions.begin() as session:
            for job in fail_repeatedly_interrupted_jobs(session, max_attempts=MAX_JOB_ATTEMPTS):
                logger.error("job %d of study %s was interrupted %d times; marked failed", job.id,
                             job.study.study_instance_uid, job.attempts)
            for job in requeue_interrupted_jobs(session):
                logger.warning("job %d of study %s was interrupted; queued again", job.id, job.study.study_instance_uid)
            for delivery in interrupted_deliveries(session):
                logger.warning("delivery %d of %s to %s was interrupted before its response was recorded; it is "
                               "checked before being sent again", delivery.id, delivery.output.sop_instance_uid,
                               delivery.destination)

    def stop(self) -> None:
        self._stop.set()
        self._outputs_ready.set()
        self.scp.stop()
        for thread in self._threads:
            thread.join(timeout=120)
        logger.info("service stopped")

    def wait(self) -> None:
        self._stop.wait()

    def _job_loop(self) -> None:
        self._warm_up()
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
                # NOTE: one study per job. Ensemble.read_studies can batch the members across
                # studies, which a GPU needs for throughput, but this loop does not claim several
                # queued jobs at once yet.
                self.reader.run(job_id)
                self._outputs_ready.set()

    def _warm_up(self) -> None:
        """Run the models once before the first job, which would otherwise wait for their one-time setup.

        The first job still pays for one-time setup in reporting: highdicom reads its tables of
        the standard on first use (0.7 s before the first Secondary Capture on a 2-core EPYC).
        """
        try:
            self.ensemble.warm_up()
        except Exception:  # noqa: BLE001 - the first job then pays the setup, but the loop must run
            logger.exception("warm-up of the models failed; the first job will take longer")

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
            # Cleared before the round, so outputs written during it start the next round at once.
            self._outputs_ready.clear()
            try:
                self.deliver_due()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                logger.exception("delivery round failed; retrying in %.1f s", interval)
            self._outputs_ready.wait(interval)

    def deliver_due(self) -> None:
        """Send every due delivery now (the delivery loop calls this each poll interval)."""
        self.deliveries.deliver_due()
