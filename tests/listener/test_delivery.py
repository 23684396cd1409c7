"""Delivery under faults: rejection reasons, back-off, dead letters, retry, and lost C-STORE responses."""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from listener.cli import main
from listener.delivery import DeliveryRunner
from listener.scu import QueryKey, backoff_seconds, find_present
from listener.settings import DeliverySettings, Destination, Settings, load_settings
from storage.models import AuditEvent, AuditRecord, Delivery, DeliveryState
from tests.listener.harness import CountingPACS, database, delivery_states, prepare_outputs, small_dx
from tests.peers import free_port

DELIVERED = DeliveryState.DELIVERED


def runner_for(data_dir: Path, destinations: list[dict], **delivery: object) -> DeliveryRunner:
    settings: Settings = load_settings(environ={}, overrides={
        "storage": {"data_dir": str(data_dir)},
        "delivery": {"destinations": destinations, "backoff_initial": 0.05, "backoff_max": 0.2, "timeout": 5.0,
                     **delivery},
    })
    return DeliveryRunner(settings, database(data_dir))


def destination(pacs: CountingPACS, **options: object) -> dict:
    return {"ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.port, **options}


def audit_events(data_dir: Path, event: AuditEvent) -> list[AuditRecord]:
    with database(data_dir)() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.event == event)))


def test_backoff_doubles_with_jitter() -> None:
    settings = DeliverySettings(backoff_initial=5, backoff_max=600)
    rng = random.Random(7)

    delays = [backoff_seconds(attempt, settings, rng) for attempt in range(1, 10)]

    caps = [min(600, 5 * 2 ** (attempt - 1)) for attempt in range(1, 10)]
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps))
    assert len({round(delay / cap, 6) for delay, cap in zip(delays, caps)}) == len(delays)


def test_calling_ae_rejection_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    pacs = CountingPACS(allowed_calling=["SOMEONE"]).start()
    try:
        prepare_outputs(tmp_path, [pacs.name], 1)
        caplog.set_level(logging.WARNING)
        runner_for(tmp_path, [destination(pacs)]).deliver_due()
    finally:
        pacs.stop()

    with database(tmp_path)() as session:
        error = session.scalar(select(Delivery.last_error))
    code = main(["status", "--data-dir", str(tmp_path)])
    shown = capsys.readouterr().out
    assert "Calling AE title not recognised" in error
    assert "add our AE title PEDFRAC" in error
    assert "Calling AE title not recognised" in caplog.text
    assert code == 0
    assert "Calling AE title not recognised" in shown


def test_dead_letter_then_retry(tmp_path: Path, capsys: pytest.CaptureFixture[str], figures) -> None:  # noqa: ANN001
    port = free_port()
    name = f"PACS@127.0.0.1:{port}"
    outputs = prepare_outputs(tmp_path, [name], 2)
    runner = runner_for(tmp_path, [{"ae_title": "PACS", "host": "127.0.0.1", "port": port}], max_attempts=3)

    rounds = 0
    while rounds < 40 and any(state != DeliveryState.DEAD for state, _ in delivery_states(tmp_path).values()):
        runner.deliver_due()
        rounds += 1
        time.sleep(0.1)
    dead = delivery_states(tmp_path)

    pacs = CountingPACS(port=port).start()
    try:
        code = main(["retry", "--data-dir", str(tmp_path)])
        runner.deliver_due()
    finally:
        pacs.stop()

    final = delivery_states(tmp_path)
    figures.record(objects=len(outputs), attempts_before_dead=3, delivered=sum(state == DELIVERED for state, _ in
                   final.values()), duplicated=sum(pacs.count(uid) > 1 for uid in outputs))
    assert set(dead.values()) == {(DeliveryState.DEAD, 3)}
    assert code == 0
    assert "2 deliveries due now" in capsys.readouterr().out
    assert set(final.values()) == {(DELIVERED, 0)}
    assert [pacs.count(uid) for uid in outputs] == [1, 1]
    assert len(audit_events(tmp_path, AuditEvent.RETRIED)) == 2


def test_answer_committed_before_next(tmp_path: Path) -> None:
    seen: list[dict] = []

    def look(_uid: str, _count: int) -> None:
        seen.append({uid: state for uid, (state, _) in delivery_states(tmp_path).items()})

    pacs = CountingPACS(on_store=look).start()
    try:
        outputs = prepare_outputs(tmp_path, [pacs.name], 3)
        runner_for(tmp_path, [destination(pacs)]).deliver_due()
    finally:
        pacs.stop()

    delivered_before = [sum(state == DELIVERED for state in snapshot.values()) for snapshot in seen]
    assert delivered_before == [0, 1, 2]
    assert set(delivery_states(tmp_path)[uid][0] for uid in outputs) == {DELIVERED}


@pytest.mark.parametrize("confirm", [True, False], ids=["c-find", "no-c-find"])
def test_lost_answer(tmp_path: Path, confirm: bool, figures) -> None:  # noqa: ANN001
    """The first C-STORE is stored but its response comes after our timeout: the delivery is uncertain."""
    def stall(_uid: str, count: int) -> None:
        if pacs.total() == 1 and count == 1:
            time.sleep(2.5)

    pacs = CountingPACS(on_store=stall).start()
    try:
        outputs = prepare_outputs(tmp_path, [pacs.name], 3)
        runner = runner_for(tmp_path, [destination(pacs, confirm_with_find=confirm)], timeout=1.0)
        runner.deliver_due()
        after_loss = delivery_states(tmp_path)
        time.sleep(3)
        for _ in range(3):
            runner.deliver_due()
            time.sleep(0.3)
    finally:
        pacs.stop()

    final = delivery_states(tmp_path)
    duplicated = sum(pacs.count(uid) - 1 for uid in outputs if pacs.count(uid) > 1)
    figures.record(objects=len(outputs), transmissions=pacs.total(), delivered=sum(
        state == DELIVERED for state, _ in final.values()), duplicated=duplicated, c_find_queries=pacs.finds)
    assert after_loss[outputs[0]] == (DeliveryState.PENDING, 1)
    assert set(state for state, _ in final.values()) == {DELIVERED}
    if confirm:
        assert duplicated == 0
        assert len(audit_events(tmp_path, AuditEvent.CONFIRMED)) == 1
    else:
        # Without C-FIND the lost response leaves no way to know: the object is sent once more.
        assert duplicated == 1


def test_removed_destination_dead(tmp_path: Path) -> None:
    prepare_outputs(tmp_path, ["GONE@127.0.0.1:1"], 1)

    runner_for(tmp_path, []).deliver_due()

    with database(tmp_path)() as session:
        delivery = session.scalar(select(Delivery))
    assert delivery.state == DeliveryState.DEAD
    assert "no longer in the settings" in delivery.last_error


@pytest.mark.integration
def test_find_confirms_at_orthanc(tmp_path: Path, orthanc_factory) -> None:  # noqa: ANN001
    """The C-FIND that settles an uncertain delivery works against a real PACS."""
    orthanc = orthanc_factory({"pedfrac": ("PEDFRAC", "127.0.0.1", free_port())})
    stored, absent = small_dx(), small_dx()
    path = tmp_path / "stored.dcm"
    stored.save_as(path, enforce_file_format=True)
    orthanc.upload(path.read_bytes())
    keys = [QueryKey(str(dataset.StudyInstanceUID), str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID))
            for dataset in (stored, absent)]

    found = find_present("PEDFRAC", Destination(ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port),
                         keys, timeout=10)

    assert found == {str(stored.SOPInstanceUID)}
