"""The image record: one image of a data set, as one row of a manifest CSV.

:class:`ImageRecord` checks its own values when it is built, and :data:`CSV_COLUMNS` names its
fields in manifest order. The parsers read the values that data sets write in many spellings
(labels, views, body parts, laterality, sex and ages, including DICOM Age Strings).
:func:`parse_view` and :func:`parse_body_part` raise :class:`SkippedRow` for an image that an
indexer leaves out on purpose. :func:`pseudonym` makes the patient id that DICOM records carry.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

from inference.anatomy import BODY_PART_WORDS, LATERALITY_WORDS, OBLIQUE, OTHER, VIEW_WORDS, find_words
from inference.package import BODY_PARTS, VIEWS

BOXES_FORMATS = ("yolo", "voc", "phantom-json", "")

GRAZPEDWRI_SOURCE = "GRAZPEDWRI-DX"
# make-phantoms writes this as the device manufacturer (GRAZPEDWRI-DX layout) or Manufacturer (DICOM),
# so indexed phantoms are named as phantoms and never as the data set whose layout they borrow.
PHANTOM_MANUFACTURER = "pedfrac phantom generator"
PHANTOM_SOURCE = "pedfrac phantoms"
POSITIVE_LABELS = frozenset({"1", "1.0", "true", "yes", "y", "fracture", "fractured", "positive", "abnormal"})
NEGATIVE_LABELS = frozenset({"0", "0.0", "false", "no", "n", "normal", "negative", "no fracture"})
DICOM_AGE = re.compile(r"(\d{3})([DWMY])")
DICOM_AGE_UNITS_PER_YEAR = {"D": 365.25, "W": 365.25 / 7, "M": 12.0, "Y": 1.0}


@dataclass(frozen=True)
class ImageRecord:
    """One image of a data set: one row of a manifest CSV.

    ``image_path`` is absolute. ``patient_id`` groups images for splitting; for DICOM sources it is
    a pseudonym (the first 16 hex digits of the SHA-256 of (0010,0020) PatientID). ``label`` is 1
    when the image's study shows a fracture. ``age`` is in years. ``boxes_file`` is the file of
    ground-truth boxes in ``boxes_format`` (see :func:`~inference.training.images.load_boxes`), or
    empty. ``source`` names the data set or file that the record was indexed from.
    """

    image_path: str
    patient_id: str
    study_id: str
    label: int
    body_part: str
    view: str
    laterality: str = ""
    age: float | None = None
    sex: str = ""
    boxes_file: str = ""
    boxes_format: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        # A bool label (such as a phantom's ``fracture``) is stored as int, so that the CSV contains 1, not True.
        if isinstance(self.label, bool):
            object.__setattr__(self, "label", int(self.label))
        if isinstance(self.age, int):
            object.__setattr__(self, "age", float(self.age))
        check_value("label", self.label, (0, 1))
        check_value("body_part", self.body_part, BODY_PARTS)
        check_value("view", self.view, VIEWS)
        check_value("laterality", self.laterality, ("L", "R", ""))
        check_value("sex", self.sex, ("M", "F", ""))
        check_value("boxes_format", self.boxes_format, BOXES_FORMATS)
        if not self.image_path:
            raise ValueError("image_path is empty")
        if not self.patient_id:
            raise ValueError(f"patient_id is empty for {self.image_path}")
        if bool(self.boxes_file) != bool(self.boxes_format):
            raise ValueError(f"boxes_file and boxes_format must both be set or both be empty for {self.image_path}")
        if self.age is not None and not (math.isfinite(self.age) and self.age >= 0):
            raise ValueError(f"age must be a non-negative number of years, found {self.age!r} for {self.image_path}")


CSV_COLUMNS = tuple(field.name for field in fields(ImageRecord))


class SkippedRow(Exception):
    """A row or file that an indexer leaves out on purpose; the message is the reason, used as a count key."""


def check_value(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raise ValueError, naming ``name``, when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, found {value!r}")


def parse_label(text: str | None) -> int:
    """Read a fracture label written as 1/0, true/false, yes/no, fracture/normal or positive/negative."""
    value = (text or "").strip().lower()
    if value in POSITIVE_LABELS:
        return 1
    if value in NEGATIVE_LABELS:
        return 0
    raise ValueError(f"label {text!r} is not one of 1/0, true/false, yes/no, fracture/normal, positive/negative")


def parse_view(text: str) -> str:
    """Read a view as ``"AP"`` (AP, PA, frontal) or ``"LAT"`` (LAT, lateral); raise SkippedRow for an oblique."""
    found = find_words(text, VIEW_WORDS)
    if len(found) == 1:
        (view,) = found
        if view == OBLIQUE:
            raise SkippedRow("oblique view")
        return view
    raise ValueError(f"view {text!r} is not AP, PA, frontal, LAT or lateral")


def parse_body_part(text: str) -> str:
    """Read a body part that names wrist or elbow alone; raise SkippedRow for another body part."""
    found = find_words(text, BODY_PART_WORDS)
    if len(found) == 1:
        (body_part,) = found
        if body_part == OTHER:
            raise SkippedRow("body part other than wrist or elbow")
        return body_part
    raise ValueError(f"body part {text!r} does not name wrist or elbow alone")


def parse_laterality(text: str) -> str:
    """Read a laterality such as L, R, left or right as ``"L"`` or ``"R"``. Bilateral or empty text gives ``""``."""
    if not text:
        return ""
    found = find_words(text, LATERALITY_WORDS)
    if len(found) != 1:
        raise ValueError(f"laterality {text!r} is not L, R, left, right or empty")
    (side,) = found
    return side if side in ("L", "R") else ""


def parse_sex(text: str) -> str:
    """Read a sex written as M, male, F or female, in any case. O, other, U, unknown or empty text gives ``""``."""
    value = text.upper()
    if value in ("M", "MALE"):
        return "M"
    if value in ("F", "FEMALE"):
        return "F"
    if value in ("", "O", "OTHER", "U", "UNKNOWN"):
        return ""
    raise ValueError(f"sex {text!r} is not M, F, O or empty")


def parse_age(text: str) -> float | None:
    """Read an age in years or as a DICOM Age String such as ``011Y``. Empty text gives None."""
    if not text:
        return None
    if DICOM_AGE.fullmatch(text.upper()):
        return dicom_age_years(text)
    try:
        age = float(text)
    except ValueError as error:
        raise ValueError(f"age {text!r} is not a number of years") from error
    if not (math.isfinite(age) and age >= 0):
        raise ValueError(f"age {text!r} is not a non-negative number of years")
    return age


def pseudonym(patient_id: str) -> str:
    """Return the first 16 hex digits of the SHA-256 of a patient id, the id that DICOM records carry."""
    return hashlib.sha256(patient_id.encode("utf-8")).hexdigest()[:16]


def dicom_age_years(value: str) -> float | None:
    """Convert an Age String (AS, PS3.5 6.2) such as ``011Y`` or ``006M`` to years; None when invalid or empty."""
    match = DICOM_AGE.fullmatch(value.strip().upper())
    if match is None:
        return None
    number, unit = match.groups()
    return round(int(number) / DICOM_AGE_UNITS_PER_YEAR[unit], 3)
