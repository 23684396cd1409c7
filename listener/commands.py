"""Operator commands other than ``serve``: status, retry, audit, echo and check-models."""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy.orm import Session, sessionmaker

from inference.package import PackageError, verify_package
from listener.settings import BUNDLED_MODELS, Destination, Settings
from storage.database import open_database, sqlite_url
from storage.models import AuditEvent, AuditRecord, Delivery
from storage.repository import audit_records, deliveries_needing_attention, recent_studies, retry_deliveries


@dataclass(frozen=True)
class AuditFilters:
    """Filters of ``pedfrac audit``; unset fields match everything."""

    study_uid: str | None = None
    sop_uid: str | None = None
    events: list[AuditEvent] = field(default_factory=list)
    peer: str | None = None
    job_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000


def _open_existing(settings: Settings) -> sessionmaker[Session] | None:
    """Open the service database, or print why there is none and return None."""
    data_dir = settings.storage.data_dir
    if settings.storage.database_url is None and not (data_dir / "pedfrac.sqlite3").exists():
        print(f"no database in {data_dir}: the service has not run with this data folder", file=sys.stderr)
        return None
    return open_database(settings.storage.database_url or sqlite_url(data_dir))


def print_status(settings: Settings, limit: int) -> int:
    """Print recent studies (UID, state, instances, last job and deliveries), then failing deliveries."""
    sessions = _open_existing(settings)
    if sessions is None:
        return 1

    header = f"{'last received (UTC)':19}  {'state':9}  {'inst':>4}  {'job':>5}  {'deliveries':18}  study / reason"
    print(header)
    with sessions() as session:
        for study in recent_studies(session, limit):
            instances = sum(len(series.instances) for series in study.series)
            job = study.jobs[-1] if study.jobs else None
            deliveries = Counter(d.state.value for output in (job.outputs if job else []) for d in output.deliveries)
            summary = ", ".join(f"{count} {state}" for state, count in sorted(deliveries.items())) or "-"
            print(f"{study.last_received_at:%Y-%m-%d %H:%M:%S}  {study.state.value:9}  {instances:>4}  "
                  f"{job.id if job else '-':>5}  {summary:18}  {study.study_instance_uid}")
            if study.state_reason:
                print(f"{'':66}{study.state_reason}")
        _print_attention(deliveries_needing_attention(session))
    return 0


def _print_attention(deliveries: list[Delivery]) -> None:
    if not deliveries:
        return

    print()
    print("deliveries that failed (dead ones wait for `pedfrac retry`):")
    print(f"{'id':>6}  {'state':9}  {'tries':>5}  {'destination':32}  object / last error")
    for delivery in deliveries:
        output = delivery.output
        print(f"{delivery.id:>6}  {delivery.state.value:9}  {delivery.attempts:>5}  {delivery.destination:32}  "
              f"{output.kind} {output.sop_instance_uid}")
        print(f"{'':60}{delivery.last_error}")


def retry(settings: Settings, *, delivery_ids: list[int] | None = None, study_uid: str | None = None,
          destination: str | None = None, include_pending: bool = False) -> int:
    """Make dead (and with ``include_pending``, waiting) deliveries due now; print what was retried."""
    sessions = _open_existing(settings)
    if sessions is None:
        return 1

    with sessions.begin() as session:
        retried = retry_deliveries(session, delivery_ids=delivery_ids, study_uid=study_uid, destination=destination,
                                   include_pending=include_pending)
        lines = [f"delivery {delivery.id}: {delivery.output.kind} {delivery.output.sop_instance_uid} to "
                 f"{delivery.destination}" for delivery in retried]

    if not lines:
        print("no delivery matched: nothing to retry", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    print(f"{len(lines)} deliveries due now; the running service sends them on its next round")
    return 0


def print_audit(settings: Settings, filters: AuditFilters, *, output_format: str = "text") -> int:
    """Print the audit records that match ``filters``, oldest first, as text columns or JSON lines."""
    sessions = _open_existing(settings)
    if sessions is None:
        return 1

    with sessions() as session:
        records = audit_records(session, study_uid=filters.study_uid, sop_uid=filters.sop_uid,
                                events=filters.events or None, peer=filters.peer, since=filters.since,
                                until=filters.until, job_id=filters.job_id, limit=filters.limit)

    if output_format == "json":
        for record in records:
            print(json.dumps(_audit_dict(record), ensure_ascii=False))
        return 0

    print(f"{'time (UTC)':26}  {'event':11}  {'job':>5}  {'peer':24}  study / instance / detail")
    for record in records:
        peer = record.peer or "-"
        if record.peer_address:
            peer = f"{peer} ({record.peer_address})"
        print(f"{record.at:%Y-%m-%d %H:%M:%S.%f}  {record.event.value:11}  {record.job_id or '-':>5}  {peer:24}  "
              f"{record.study_instance_uid or '-'}")
        for extra in (record.sop_instance_uid, record.detail):
            if extra:
                print(f"{'':75}{extra}")
    return 0


def _audit_dict(record: AuditRecord) -> dict[str, object]:
    return {"at": record.at.isoformat(), "event": record.event.value, "study_instance_uid": record.study_instance_uid,
            "sop_instance_uid": record.sop_instance_uid, "job_id": record.job_id, "peer": record.peer,
            "peer_address": record.peer_address, "detail": record.detail}


def echo(node: Destination, calling_ae_title: str) -> int:
    ae = AE(ae_title=calling_ae_title)
    ae.add_requested_context(Verification)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        print(f"C-ECHO to {node.name} failed: association rejected, aborted or peer unreachable", file=sys.stderr)
        return 1

    status = assoc.send_c_echo()
    assoc.release()
    if status and status.Status == 0:
        print(f"C-ECHO to {node.name}: success")
        return 0
    print(f"C-ECHO to {node.name} failed: {status}", file=sys.stderr)
    return 1


def check_models(folder: Path | None) -> int:
    folder = folder or BUNDLED_MODELS
    try:
        manifest = verify_package(folder)
    except PackageError as error:
        print(f"pedfrac: {error}", file=sys.stderr)
        return 1

    print(f"{manifest.identity}: {len(manifest.members)} members, checksums match")
    print(f"intended use: {manifest.intended_use}")
    for member in manifest.members:
        print(f"  {member.name}: {member.kind} {member.architecture} {member.input_size} px, "
              f"{'/'.join(member.body_parts)} {'/'.join(member.views)}, weight {member.weight}")
    print("operating points: " + ", ".join(f"{point.body_part} {point.view} {point.threshold:.3f}"
                                           for point in manifest.operating_points))
    _print_test_metrics(manifest.metrics)
    return 0


def _print_test_metrics(metrics: dict[str, float | int | str]) -> None:
    """Print the package's test AUROC per view and per patient, and warn when one is at chance or below."""
    aurocs = {key.removeprefix("test_auroc_"): value for key, value in metrics.items()
              if key.startswith("test_auroc_") and not key.startswith(("test_auroc_lower", "test_auroc_upper"))}
    if not aurocs:
        print("test metrics: none in the manifest")
        return

    print("test AUROC: " + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in aurocs.items()))
    weak = [name.replace("_", " ") for name, value in aurocs.items() if isinstance(value, (int, float)) and value <= 0.5]
    if weak:
        print(f"warning: test AUROC at chance or below for {', '.join(weak)}")
