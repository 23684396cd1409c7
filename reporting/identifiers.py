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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import highdicom as hd
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

MANUFACTURER: Final = "pedfrac"
MANUFACTURER_MODEL_NAME: Final = "pedfrac fracture reader"

SC_SERIES_DESCRIPTION: Final = "AI fracture overlay (pedfrac)"
SR_SERIES_DESCRIPTION: Final = "AI fracture report (pedfrac)"
PR_SERIES_DESCRIPTION: Final = "AI fracture marks (pedfrac)"
KO_SERIES_DESCRIPTION: Final = "AI fracture key images (pedfrac)"

# Deterministic series numbers: every overlay of a study goes to series 9901, the SR to 9902,
# the presentation states to 9903 and the key object selection to 9904, whatever the numbers
# of the source series are. The high values keep the AI series after the acquired ones in a
# PACS series list sorted by number. A new reading of the study makes new series with the
# same numbers.
SC_SERIES_NUMBER: Final = 9901
SR_SERIES_NUMBER: Final = 9902
PR_SERIES_NUMBER: Final = 9903
KO_SERIES_NUMBER: Final = 9904

# Laterality (0020,0060) takes only R or L (PS3.3 C.7.3.1). It is Type 2C and required for a
# paired body part such as the wrist or elbow, so an unknown side is written as an empty value.
SERIES_LATERALITIES: Final = ("R", "L")

# Character set for objects whose text the source's Specific Character Set cannot encode.
UTF8_CHARACTER_SET: Final = "ISO_IR 192"

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


def algorithm_equipment(model_identity: str) -> hd.ContributingEquipment:
    """Build the Contributing Equipment item (PS3.3 C.12.1.1.5) of the model package that read the images.

    IHE AI Results lists each algorithm in the Contributing Equipment Sequence (0018,A001) with
    the purpose "Processing Algorithm". CID 7005 "Contributing Equipment Purposes of Reference",
    as pydicom 3.0.2 lists it, has no such concept, so the item uses (109102, DCM, "Processing
    Equipment") and names the model package in Manufacturer's Model Name.
    """
    # NOTE: a viewer that looks for IHE's own "Processing Algorithm" code will not match 109102.
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.cid7005.ProcessingEquipment,
        manufacturer_model_name=model_identity[:64],
        software_versions=software_version(),
        contribution_description=f"Processing algorithm: AI fracture detection by model package {model_identity}",
    )


def series_laterality(source: Dataset) -> str | None:
    """Return R or L from the source's Laterality (0020,0060) or Image Laterality (0020,0062), else None."""
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(source.get(keyword, "") or "").upper()
        if value in SERIES_LATERALITIES:
            return value
    return None


def character_set_for(source: Dataset, texts: Iterable[str]) -> str | list[str] | None:
    """Return the Specific Character Set (0008,0005) for an object derived from ``source``.

    The source's value is kept when its character repertoires encode every character of
    ``texts``, so patient names keep their bytes. Otherwise, for example Korean labels next to
    a Latin-1 source, the result is UTF-8 (ISO_IR 192, PS3.3 C.12.1.1.2), which encodes both
    the labels and the names.
    """
    charset = source.get("SpecificCharacterSet")
    values = [charset] if isinstance(charset, str) else list(charset or [])
    extended = [value for value in values if value not in ("", "ISO_IR 6", "ISO 2022 IR 6")]
    python_codecs = ["ascii", *convert_encodings(extended)] if extended else ["ascii"]

    if all(_encodable(character, python_codecs) for text in texts for character in text):
        return charset
    return UTF8_CHARACTER_SET


def _encodable(character: str, python_codecs: Sequence[str]) -> bool:
    for codec in python_codecs:
        try:
            character.encode(codec)
        except (UnicodeEncodeError, LookupError):
            continue
        return True
    return False
