"""Logging for the ``pedfrac`` command: one format, and no patient data from the libraries we call.

Our own log lines carry UIDs and job ids only. pydicom quotes the offending value when it warns
about an invalid one (a birth date written 2015-12-31, say). pynetdicom prints C-FIND identifiers.
Either could put a patient's name, id or birth date in the log, so both are muted here.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

from pynetdicom import _config as pynetdicom_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"
_QUOTED = re.compile(r"""b?'[^']*'|b?"[^"]*\"""")
_LIBRARY_LOGGERS = ("pydicom", "highdicom")


class WithholdQuotedValues(logging.Filter):
    """Replace quoted text with '…' in library messages and in the message lines of tracebacks.

    pydicom, highdicom and Python warnings quote data element values in their messages, and an
    exception raised on a bad value carries it into the traceback that the caller logs. The tag, the
    reason and the traceback's code lines remain.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "py.warnings" or record.name.split(".")[0] in _LIBRARY_LOGGERS:
            record.msg = _QUOTED.sub("'…'", record.getMessage())
            record.args = None

        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = "\n".join(line if line.startswith(" ") else _QUOTED.sub("'…'", line)
                                        for line in record.exc_text.splitlines())
        return True


def configure_logging(level: str | int, stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr by default) at ``level`` with the values that libraries quote withheld."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(WithholdQuotedValues())
    # Without effect when the root logger already has handlers (under pytest, for one).
    logging.basicConfig(level=level, handlers=[handler])

    # Python warnings (pydicom raises them beside its log lines) go through the same handler.
    logging.captureWarnings(True)
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False

    # highdicom logs one INFO line per module it copies into every output object.
    if logging.getLevelName(level) != "DEBUG" and level != logging.DEBUG:
        logging.getLogger("highdicom").setLevel(logging.WARNING)
