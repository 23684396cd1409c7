"""The delivery rounds: send due outputs to each destination and record every response as it comes.

Each delivery is marked "sending" and committed before its C-STORE goes out, and each response is
committed before the next object is sent. After a crash, a delivery still marked "sending" is
uncertain: the destination may hold the object. It is checked with C-FIND before it is sent again.
"""
from __future__ import annotations

import logging
import ssl
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from listener.scu import QueryKey, SendItem, SendOutcome, backoff_seconds, find_present, send_files
from listener.settings import Destination, Settings
from listener.tls import client_context
from storage.models import Delivery
from storage.repository import due_deliveries, mark_delivered, mark_delivery_failed, mark_sending

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Due:
    """A delivery to attempt now; ``uncertain`` when an earlier C-STORE of it got no response."""

    delivery_id: int
    path: Path
    uncertain: bool
    key: QueryKey


class DeliveryRunner:
    """Runs delivery rounds against the destinations in the settings."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        needs_tls = any(destination.tls for destination in settings.delivery.destinations)
        self._client_tls: ssl.SSLContext | None = (client_context(settings.dicom, settings.delivery)
                                                   if needs_tls else None)

    def deliver_due(self) -> None:
        """Send every due delivery, one association per destination, committing each response."""
        destinations = {destination.name: destination for destination in self.settings.delivery.destinations}
        batches: dict[str, list[_Due]] = defaultdict(list)
        with self.sessions() as session:
            for delivery in due_deliveries(session):
                batches[delivery.destination].append(_due(delivery))

        for name, items in batches.items():
            destination = destinations.get(name)
            if destination is None:
                self._fail_all(items, f"destination {name} is no longer in the settings")
                continue

            items = self._skip_confirmed(destination, items)
            if not items:
                continue
            with self.sessions.begin() as session:
                mark_sending(session, [item.delivery_id for item in items])
            send_files(self.settings.dicom.ae_title, destination,
                       [SendItem(item.delivery_id, item.path) for item in items],
                       timeout=self.settings.delivery.timeout, ssl_context=self._client_tls,
                       on_outcome=self._record_outcome)

    def _skip_confirmed(self, destination: Destination, items: list[_Due]) -> list[_Due]:
        """Close the uncertain deliveries that the destination reports holding; return the rest.

        An uncertain delivery is one whose C-STORE was sent but whose response was never recorded
        (a crash, or a lost response). Sending it again would give the destination a second copy.
        """
        uncertain = [item for item in items if item.uncertain]
        if not uncertain:
            return items

        found: set[str] | None = None
        if destination.confirm_with_find:
            found = find_present(self.settings.dicom.ae_title, destination, [item.key for item in uncertain],
                                 timeout=self.settings.delivery.timeout, ssl_context=self._client_tls)
        if found is None:
            for item in uncertain:
                # NOTE: without a C-FIND answer there is no way to know whether the destination
                # stored the object, so it is sent again: same SOP Instance UID, same bytes.
                logger.warning("delivery %d of %s to %s is sent again without confirmation; the destination may "
                               "receive it twice", item.delivery_id, item.key.sop_instance_uid, destination.name)
            return items

        with self.sessions.begin() as session:
            for item in uncertain:
                if item.key.sop_instance_uid in found:
                    mark_delivered(session, session.get_one(Delivery, item.delivery_id), confirmed_by_query=True)
                    logger.info("delivery %d of %s to %s confirmed by C-FIND; not sent again", item.delivery_id,
                                item.key.sop_instance_uid, destination.name)
        return [item for item in items if item.key.sop_instance_uid not in found]

    def _record_outcome(self, outcome: SendOutcome) -> None:
        settings = self.settings.delivery
        with self.sessions.begin() as session:
            delivery = session.get_one(Delivery, outcome.delivery_id)
            if outcome.error is None:
                mark_delivered(session, delivery)
                return

            retry_in = backoff_seconds(delivery.attempts + 1, settings)
            dead = mark_delivery_failed(session, delivery, outcome.error, max_attempts=settings.max_attempts,
                                        retry_in=retry_in, uncertain=outcome.uncertain)
            sop_uid = delivery.output.sop_instance_uid
            if dead:
                logger.error("delivery %d of %s to %s is dead after %d attempts: %s; `pedfrac retry` sends it again",
                             delivery.id, sop_uid, delivery.destination, delivery.attempts, outcome.error)
            else:
                logger.warning("delivery %d of %s to %s failed (attempt %d), retry in %.0f s: %s", delivery.id,
                               sop_uid, delivery.destination, delivery.attempts, retry_in, outcome.error)

    def _fail_all(self, items: list[_Due], error: str) -> None:
        with self.sessions.begin() as session:
            for item in items:
                delivery = session.get_one(Delivery, item.delivery_id)
                mark_delivery_failed(session, delivery, error, max_attempts=0, retry_in=0)
                logger.error("delivery %d of %s is dead: %s", item.delivery_id, item.key.sop_instance_uid, error)


def _due(delivery: Delivery) -> _Due:
    output = delivery.output
    key = QueryKey(study_instance_uid=output.job.study.study_instance_uid,
                   series_instance_uid=output.series_instance_uid, sop_instance_uid=output.sop_instance_uid)
    return _Due(delivery.id, Path(output.path), delivery.sending_since is not None, key)
