"""UIDs, equipment identity and series numbering of the DICOM objects that pedfrac creates.

pedfrac has no registered UID root, so every UID is a ``2.25`` UID derived from a UUID
(PS3.5 Annex B.2). Series numbers are fixed so that a PACS shows the AI series of a
study at the same place every time.
"""
from __future__ import annotations

import functools
import importlib.metadata
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from pydicom.uid import generate_uid

MANUFACTURER: Final = "pedfrac"
MANUFACTURER_MODEL_NAME: Final = "pedfrac fracture reader"

SC_SERIES_DESCRIPTION: Final = "AI fracture overlay (pedfrac)"
SR_SERIES_DESCRIPTION: Final = "AI fracture report (pedfrac)"

# Deterministic series numbers: every overlay of a study goes to series 9901 and the SR to
# 9902, whatever the numbers of the source series are. The high values keep the AI series
# after the acquired ones in a PACS series list sorted by number.
SC_SERIES_NUMBER: Final = 9901
SR_SERIES_NUMBER: Final = 9902

# Version string used when the pedfrac distribution is not installed (a source checkout).
UNKNOWN_VERSION: Final = "0+unknown"

# Namespace for name-based UIDs, derived once from the product name so that it never changes.
_UID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_DNS, "pedfrac.invalid")


def new_uid() -> str:
    """Return a new random ``2.25`` UID derived from a UUID (PS3.5 Annex B.2)."""
    return str(generate_uid(prefix=None))


def stable_uid(*parts: str) -> str:
    """Return a ``2.25`` UID derived from a name-based UUID (version 5) of ``parts``.

    The same parts always give the same UID, which suits identifiers of equipment such as
    the Device Observer UID of an algorithm version (TID 1004).
    """
    if not parts:
        raise ValueError("stable_uid needs at least one name part")

    name_based = uuid.uuid5(_UID_NAMESPACE, "\x1f".join(parts))
    return f"2.25.{name_based.int}"


@functools.cache
def software_version() -> str:
    """Return the installed pedfrac version for Software Versions (0018,1020).

    Returns ``UNKNOWN_VERSION`` when the distribution is not installed, for example when
    the code runs from a source checkout without ``pip install``.
    """
    try:
        return importlib.metadata.version("pedfrac")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


@contextmanager
def quiet_person_name_check() -> Iterator[None]:
    """Silence highdicom's warning about single-component person names.

    highdicom 0.28.2 warns when a Person Name has no ``^``, which is normal for Korean names
    such as ``김희중``, and the warning text quotes the name. Patient names must never reach
    logs, so the builders run highdicom constructors inside this context.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*unlikely to represent the intended person name", category=UserWarning)
        yield
