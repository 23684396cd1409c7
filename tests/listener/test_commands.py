"""The operator commands on a prepared database: audit and retry."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from listener.cli import main
from storage.models import AuditEvent, Delivery
from storage.repository import mark_delivered, mark_delivery_failed
from tests.listener.harness import database, prepare_outputs

DESTINATION = "PACS@127.0.0.1:4242"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """One read study with two outputs: the first delivered, the second dead after a rejection."""
    prepare_outputs(tmp_path, [DESTINATION], 2)
    with database(tmp_path).begin() as session:
        first, second = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        mark_delivered(session, first)
        mark_delivery_failed(session, second, "association rejected by PACS: Calling AE title not recognised",
                             max_attempts=1, retry_in=0)
    return tmp_path


def test_audit_tells_the_story(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "--data-dir", str(data_dir)])

    out = capsys.readouterr().out
    assert code == 0
    for word in ("received", "queued", "reported", "delivered", "dead", "MODALITY", DESTINATION,
                 "model pedfrac-test 0.0.0", "Calling AE title not recognised"):
        assert word in out


def test_audit_json_filtered(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "--data-dir", str(data_dir), "--event", "delivered", "--format", "json"])

    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [record["event"] for record in records] == [AuditEvent.DELIVERED.value]
    assert records[0]["peer"] == DESTINATION


def test_audit_rejects_bad_time(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["audit", "--data-dir", str(data_dir), "--since", "yesterday"])

    assert raised.value.code == 2
    assert "'yesterday' is not an ISO 8601 time" in capsys.readouterr().err


def test_retry_by_destination(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["retry", "--data-dir", str(data_dir), "--destination", DESTINATION])

    assert code == 0
    assert "1 deliveries due now" in capsys.readouterr().out


def test_retry_without_match(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["retry", "--data-dir", str(data_dir), "--study", "1.2.3.4"])

    assert code == 1
    assert "no delivery matched" in capsys.readouterr().err


def test_audit_without_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "--data-dir", str(tmp_path)])

    assert code == 1
    assert "no database in" in capsys.readouterr().err
