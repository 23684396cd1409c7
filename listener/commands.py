"""Operator commands other than ``serve``: status, echo and check-models."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from inference.package import PackageError, verify_package
from listener.settings import BUNDLED_MODELS, Destination, Settings
from storage.database import open_database, sqlite_url
from storage.repository import recent_studies


def print_status(settings: Settings, limit: int) -> int:
    """Print recent studies: UID, state, instances, last job and deliveries."""
    data_dir = settings.storage.data_dir
    if settings.storage.database_url is None and not (data_dir / "pedfrac.sqlite3").exists():
        print(f"no database in {data_dir}: the service has not run with this data folder", file=sys.stderr)
        return 1

    sessions = open_database(settings.storage.database_url or sqlite_url(data_dir))
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
    return 0


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
    return 0
