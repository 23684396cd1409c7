"""The C-STORE SCU that delivers our outputs to the PACS, one association per destination and round."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE

from listener.settings import DeliverySettings, Destination

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendOutcome:
    """Result of sending one file: ``error`` is None on success."""

    path: Path
    error: str | None


def backoff_seconds(attempts: int, settings: DeliverySettings, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter: half the capped delay fixed, half drawn at random."""
    cap = min(settings.backoff_max, settings.backoff_initial * 2 ** max(attempts - 1, 0))
    return cap / 2 + (rng or random).uniform(0, cap / 2)


def send_files(calling_ae_title: str, destination: Destination, paths: list[Path], *,
               timeout: float) -> list[SendOutcome]:
    """C-STORE every file to ``destination`` over one association and return one outcome per file.

    A file is reported delivered only when the peer answered with status 0x0000 or a warning
    (0xB000-0xBFFF), which PS3.4 B.2.3 counts as stored.
    """
    datasets = [dcmread(path) for path in paths]
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, syntax in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}):
        ae.add_requested_context(sop_class, syntax)

    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        reason = _association_failure(assoc)
        logger.warning("delivery to %s failed: %s", destination.name, reason)
        return [SendOutcome(path, reason) for path in paths]

    try:
        return [_send_one(assoc, path, dataset, destination) for path, dataset in zip(paths, datasets)]
    finally:
        assoc.release()


def _send_one(assoc, path: Path, dataset, destination: Destination) -> SendOutcome:  # noqa: ANN001 - pynetdicom types
    sop_uid = str(dataset.SOPInstanceUID)
    status = assoc.send_c_store(dataset)
    if not status or "Status" not in status:
        return SendOutcome(path, f"no C-STORE response from {destination.name} (connection lost or timed out)")

    code = int(status.Status)
    if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
        logger.info("delivered %s to %s (status 0x%04X)", sop_uid, destination.name, code)
        return SendOutcome(path, None)
    return SendOutcome(path, f"{destination.name} answered C-STORE of {sop_uid} with status 0x{code:04X}")


def _association_failure(assoc) -> str:  # noqa: ANN001 - pynetdicom Association
    if assoc.is_rejected:
        return "association rejected by the peer (check our AE title in its configuration)"
    if assoc.is_aborted:
        return "association aborted by the peer"
    return "peer unreachable or no association response"
