"""The log configuration of the ``pedfrac`` command withholds values that libraries quote."""
from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest
from pydicom.misc import warn_and_log
from pynetdicom import _config as pynetdicom_config

from listener.logs import configure_logging

VALUE = "2015-12-31"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Apply configure_logging to a stream, then give pytest its root handlers back."""
    handlers, level = logging.root.handlers[:], logging.root.level
    monkeypatch.setattr(pynetdicom_config, "LOG_REQUEST_IDENTIFIERS", True)
    monkeypatch.setattr(pynetdicom_config, "LOG_RESPONSE_IDENTIFIERS", True)
    stream = io.StringIO()
    logging.root.handlers[:] = []
    configure_logging("INFO", stream)
    yield stream
    logging.captureWarnings(False)
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def test_pydicom_value_withheld(configured: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warn_and_log(f"Invalid value for VR DA: '{VALUE}'.")

    err = configured.getvalue()
    assert "Invalid value for VR DA: '…'" in err
    assert VALUE not in err


def test_traceback_message_withheld(configured: io.StringIO) -> None:
    try:
        raise ValueError(f"Unable to convert '{VALUE}' to 'DA' object")
    except ValueError:
        logging.getLogger("listener.reading").exception("job 7 failed: study 1.2.3")

    err = configured.getvalue()
    assert "job 7 failed: study 1.2.3" in err
    assert "ValueError: Unable to convert '…'" in err
    assert VALUE not in err


def test_own_lines_untouched(configured: io.StringIO) -> None:
    logging.getLogger("listener.scp").warning("association from 'MODALITY' rejected")

    assert "association from 'MODALITY' rejected" in configured.getvalue()


def test_identifier_dumps_off(configured: io.StringIO) -> None:
    assert pynetdicom_config.LOG_REQUEST_IDENTIFIERS is False
    assert pynetdicom_config.LOG_RESPONSE_IDENTIFIERS is False
