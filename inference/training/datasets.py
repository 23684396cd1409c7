"""Index radiograph data sets into CSV manifests, split by patient.

Three indexers turn a data set into :class:`ImageRecord` rows, one per wrist or elbow image in an
AP or lateral view. :func:`index_grazpedwri` reads the GRAZPEDWRI-DX layout. :func:`index_dicom_folder`
reads a folder of DICOM files with a separate labels CSV, and :func:`index_csv` reads a plain CSV.
:func:`split_by_patient` draws the test patients first, stratified by the patient's label, then
splits the remaining patients 8:2 into train and validation. :func:`patient_folds` makes k folds
by patient for cross-validation. No patient is ever in two splits, and :func:`check_disjoint`
enforces it before anything is written.

:func:`write_manifests` writes one CSV per body part, view and split, such as ``wrist/AP_train.csv``
and ``elbow/LAT_val.csv``, with the columns :data:`CSV_COLUMNS`, plus an ``index.json`` summary.
:func:`read_manifests` reads them back. :func:`load_image` and :func:`load_boxes` read one record's
display image and ground-truth boxes for training and evaluation.

Logs contain counts and file names only. GRAZPEDWRI-DX file names carry that data set's public
patient numbers; DICOM patient ids are replaced by a pseudonym before they reach a record.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
import warnings
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from inference.anatomy import (
    BODY_PART_WORDS,
    LATERALITY_WORDS,
    OBLIQUE,
    OTHER,
    VIEW_WORDS,
    find_words,
    is_radiograph,
    resolve_anatomy,
)
from inference.package import BODY_PARTS, VIEWS
from inference.pixels import PixelError, display_image

logger = logging.getLogger(__name__)

Box = tuple[str, float, float, float, float]

SPLITS = ("train", "val", "test")
BOXES_FORMATS = ("yolo", "voc", "phantom-json", "")
BOXES_SUFFIXES = {".txt": "yolo", ".xml": "voc", ".json": "phantom-json"}
KEPT_BOX_LABELS = ("fracture", "fat_pad")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
INDEX_FILE = "index.json"
MANIFEST_FORMAT = "pedfrac image manifests"
MANIFEST_VERSION = 1

GRAZPEDWRI_SOURCE = "GRAZPEDWRI-DX"
# make-phantoms writes this as the device manufacturer (GRAZPEDWRI-DX layout) or Manufacturer (DICOM),
# so indexed phantoms are named as phantoms and never as the data set whose layout they borrow.
PHANTOM_MANUFACTURER = "pedfrac phantom generator"
PHANTOM_SOURCE = "pedfrac phantoms"
GRAZPEDWRI_COLUMNS = (
    "filestem", "patient_id", "study_number", "timehash", "gender", "age", "laterality", "projection",
    "initial_exam", "ao_classification", "cast", "diagnosis_uncertain", "osteopenia", "fracture_visible",
    "metal", "pixel_spacing", "device_manufacturer",
)
# Class ids of the GRAZPEDWRI-DX YOLO label files. Class 6 (pronator quadratus sign) is a wrist
# soft-tissue sign, not the elbow fat pad. Class 9 is this project's extension for the elbow fat
# pad, which the official data set does not have.
GRAZPEDWRI_CLASSES = (
    "boneanomaly", "bonelesion", "foreignbody", "fracture", "metal", "periostealreaction", "pronatorsign",
    "softtissue", "text",
)
FAT_PAD_CLASS_ID = 9
YOLO_CLASSES = {**dict(enumerate(GRAZPEDWRI_CLASSES)), FAT_PAD_CLASS_ID: "fat_pad"}
# <patient 4 digits>_<time hash>_<study nr>_<WRI|ELB>-<L|R><projection>_<M|F|O><age in years, 3 digits>.
# ELB is this project's extension for elbow images; the official data set has wrists only. A few
# official rows give the sex as O, which is read as unknown.
GRAZPEDWRI_STEM = re.compile(
    r"(?P<patient>\d{4})_(?P<timehash>\d+)_(?P<study>\d+)_(?P<region>WRI|ELB)-(?P<side>[LR])(?P<projection>[123])"
    r"_(?P<sex>[MFO])(?P<age>\d{3})"
)
GRAZPEDWRI_REGIONS = {"WRI": "wrist", "ELB": "elbow"}
GRAZPEDWRI_PROJECTIONS = {"1": "AP", "2": "LAT"}
GRAZPEDWRI_OBLIQUE = "3"

# Header names that index_csv accepts for each column, canonical name first. Matching ignores case.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "image_path": ("image_path", "image", "path", "file", "filename", "file_path"),
    "patient_id": ("patient_id", "patient", "patient_or_source_id", "subject_id"),
    "study_id": ("study_id", "study", "study_instance_uid"),
    "label": ("label", "fracture", "fracture_visible", "target"),
    "body_part": ("body_part", "bodypart", "region"),
    "view": ("view", "view_position"),
    "laterality": ("laterality", "side"),
    "age": ("age", "age_years"),
    "sex": ("sex", "gender"),
    "boxes_file": ("boxes_file", "label_file", "annotation_file"),
    "boxes_format": ("boxes_format", "label_format"),
    "source": ("source",),
}
REQUIRED_COLUMNS = ("image_path", "patient_id", "label", "body_part", "view")
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
    ground-truth boxes in ``boxes_format`` (see :func:`load_boxes`), or empty. ``source`` names
    the data set or file that the record was indexed from.
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
        _check_value("label", self.label, (0, 1))
        _check_value("body_part", self.body_part, BODY_PARTS)
        _check_value("view", self.view, VIEWS)
        _check_value("laterality", self.laterality, ("L", "R", ""))
        _check_value("sex", self.sex, ("M", "F", ""))
        _check_value("boxes_format", self.boxes_format, BOXES_FORMATS)
        if not self.image_path:
            raise ValueError("image_path is empty")
        if not self.patient_id:
            raise ValueError(f"patient_id is empty for {self.image_path}")
        if bool(self.boxes_file) != bool(self.boxes_format):
            raise ValueError(f"boxes_file and boxes_format must both be set or both be empty for {self.image_path}")
        if self.age is not None and not (math.isfinite(self.age) and self.age >= 0):
            raise ValueError(f"age must be a non-negative number of years, found {self.age!r} for {self.image_path}")


CSV_COLUMNS = tuple(field.name for field in fields(ImageRecord))


class Splits(dict[str, list[ImageRecord]]):
    """Records per split name, with the settings that drew them.

    A plain ``dict`` that also carries ``seed``, ``test_fraction`` and ``validation_fraction``, so
    that :func:`write_manifests` can record them in ``index.json``.
    """

    def __init__(self, splits: Mapping[str, list[ImageRecord]], *, seed: int | None,
                 test_fraction: float | None, validation_fraction: float | None) -> None:
        super().__init__(splits)
        self.seed = seed
        self.test_fraction = test_fraction
        self.validation_fraction = validation_fraction


class _SkippedRow(Exception):
    """A row or file that an indexer leaves out on purpose; the message is the reason, used as a count key."""


def _check_value(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, found {value!r}")


# ----------------------------------------------------------------------------------------------
# GRAZPEDWRI-DX.


def index_grazpedwri(root: Path) -> list[ImageRecord]:
    """Index a GRAZPEDWRI-DX folder: its ``dataset.csv``, images and YOLO or VOC label files.

    Images are found by file stem anywhere under ``root/images`` (``.png``), label files anywhere
    under ``root/labels`` (``.txt`` in YOLO format or ``.xml`` in Pascal VOC format). The label is
    the table's ``fracture_visible`` (1, or blank for none). The view comes from ``projection``
    (1 AP, 2 lateral). The body part comes from the file name: ``WRI`` is a wrist, and ``ELB``
    (this project's extension of the naming convention, used for elbow phantoms) is an elbow.
    Patient ids are the table's ``patient_id`` written with 4 digits, as in the file names.

    A folder without ``dataset.csv`` but with an ``index.csv`` (one row per image, read by
    :func:`index_csv` with its column aliases) is indexed from that file instead.

    Parameters
    ----------
    root
        The data set folder.

    Returns
    -------
    One record per AP or lateral image that is present, in table order. Oblique images
    (projection 3) and rows whose image is not found are skipped and counted in one log line.

    Raises
    ------
    FileNotFoundError
        When ``root`` contains neither ``dataset.csv`` nor ``index.csv``.
    ValueError
        When a file name does not follow the convention, a row's ``patient_id`` differs from the
        first field of its file name, or a value is invalid. The message gives the line number
        and names the file stem.
    """
    table = root / "dataset.csv"
    if not table.is_file():
        index = root / "index.csv"
        if index.is_file():
            return _index_grazpedwri_csv(index)
        raise FileNotFoundError(f"{table} not found; a GRAZPEDWRI-DX folder contains dataset.csv or index.csv")

    images = _files_by_stem(root / "images", (".png",))
    labels = _files_by_stem(root / "labels", (".txt", ".xml"))

    records: list[ImageRecord] = []
    oblique = absent = 0
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        _require_columns(reader.fieldnames, GRAZPEDWRI_COLUMNS, table)
        for row in reader:
            stem = (row["filestem"] or "").strip()
            if (row["projection"] or "").strip() == GRAZPEDWRI_OBLIQUE:
                oblique += 1
                continue
            if stem not in images:
                absent += 1
                continue
            try:
                records.append(_grazpedwri_record(row, stem, images[stem], labels.get(stem)))
            except ValueError as error:
                raise ValueError(f"{table} line {reader.line_num}: {error}") from error

    logger.info("indexed %d GRAZPEDWRI-DX images from %s; skipped %d oblique rows and %d rows whose image "
                "is not under images/", len(records), table, oblique, absent)
    return records


def _grazpedwri_record(row: Mapping[str, str], stem: str, image: Path, label_file: Path | None) -> ImageRecord:
    """Build the record of one ``dataset.csv`` row whose image was found."""
    name = _parse_grazpedwri_stem(stem)
    try:
        patient = int(row["patient_id"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{stem}: patient_id is not an integer") from error
    if patient != int(name["patient"]):
        raise ValueError(f"{stem}: patient_id does not match the first field of the file name")

    projection = (row["projection"] or "").strip()
    if projection not in GRAZPEDWRI_PROJECTIONS:
        raise ValueError(f"{stem}: projection {projection!r} is not 1 (AP), 2 (lateral) or 3")
    visible = (row["fracture_visible"] or "").strip()
    if visible not in ("1", "0", ""):
        raise ValueError(f"{stem}: fracture_visible {visible!r} is not 1 or blank")
    study = (row["study_number"] or "").strip() or name["study"]
    if not study.isdigit():
        raise ValueError(f"{stem}: study_number {study!r} is not an integer")
    age = (row["age"] or "").strip()
    try:
        years = float(age) if age else None
    except ValueError as error:
        raise ValueError(f"{stem}: age {age!r} is not a number of years") from error

    laterality = (row["laterality"] or "").strip().upper() or name["side"]
    sex = (row["gender"] or "").strip().upper()
    return ImageRecord(
        image_path=str(image.resolve()),
        patient_id=f"{patient:04d}",
        study_id=f"{patient:04d}_{int(study):02d}",
        label=int(visible == "1"),
        body_part=GRAZPEDWRI_REGIONS[name["region"]],
        view=GRAZPEDWRI_PROJECTIONS[projection],
        laterality=laterality if laterality in ("L", "R") else "",
        age=years,
        sex=sex if sex in ("M", "F") else "",
        boxes_file=str(label_file.resolve()) if label_file else "",
        boxes_format=BOXES_SUFFIXES[label_file.suffix.lower()] if label_file else "",
        source=PHANTOM_SOURCE if row.get("device_manufacturer") == PHANTOM_MANUFACTURER else GRAZPEDWRI_SOURCE,
    )


def _parse_grazpedwri_stem(stem: str) -> dict[str, str]:
    match = GRAZPEDWRI_STEM.fullmatch(stem)
    if match is None:
        raise ValueError(f"file name {stem} does not follow the GRAZPEDWRI-DX convention "
                         "<patient>_<hash>_<study>_<WRI|ELB>-<L|R><1|2|3>_<M|F|O><age>")
    return match.groupdict()


def _index_grazpedwri_csv(index: Path) -> list[ImageRecord]:
    """Index a GRAZPEDWRI-DX folder described by an ``index.csv``, checking each patient against its file name.

    The study id defaults to ``<patient>_<study nr>`` from the file name, as for ``dataset.csv``.
    """
    records = index_csv(index)
    checked = []
    for record in records:
        stem = Path(record.image_path).stem
        name = _parse_grazpedwri_stem(stem)
        if not record.patient_id.isdigit() or int(record.patient_id) != int(name["patient"]):
            raise ValueError(f"{index} row for {stem}: the patient id does not match the first field of the file name")
        study = record.study_id or f"{name['patient']}_{int(name['study']):02d}"
        checked.append(replace(record, patient_id=name["patient"], study_id=study, source=GRAZPEDWRI_SOURCE))
    return checked


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map file stem to path for files under ``folder`` (recursively); the first in sorted order wins."""
    found: dict[str, Path] = {}
    duplicates = 0
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in suffixes or not path.is_file():
                continue
            if path.stem in found:
                duplicates += 1
                continue
            found[path.stem] = path
    if duplicates:
        logger.warning("%d files under %s repeat the stem of an earlier file and are ignored", duplicates, folder)
    return found


def _require_columns(header: Sequence[str] | None, required: Iterable[str], path: Path) -> None:
    missing = [column for column in required if column not in (header or ())]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; its header is {list(header or ())}")


# ----------------------------------------------------------------------------------------------
# A folder of DICOM files.


def index_dicom_folder(root: Path, labels_csv: Path) -> list[ImageRecord]:
    """Index the DICOM radiographs under ``root``, labelled by ``labels_csv``.

    Each file's header is read with pydicom, without pixels. Body part, view and laterality come
    from :func:`inference.anatomy.resolve_anatomy`. (0010,1010) PatientAge such as ``011Y`` or
    ``006M`` gives the age, and (0010,0040) PatientSex the sex. The patient id of a record is the
    first 16 hex digits of the SHA-256 of (0010,0020) PatientID. When PatientID is empty, the
    pseudonym is made from (0020,000D) StudyInstanceUID, so each such study counts as its own patient.

    ``labels_csv`` has the columns ``key`` and ``label`` and optionally ``boxes_file`` and
    ``boxes_format`` (see :func:`load_boxes`). The box format defaults to the one that the file
    suffix implies (``.txt`` YOLO, ``.xml`` VOC, ``.json`` phantom-json). A key is a (0008,0018) SOPInstanceUID,
    which labels one image, or a (0020,000D) StudyInstanceUID, which labels every image of the
    study. An image key wins over its study's key. A box file given with a study key applies to
    every image of that study, so give boxes with image keys. Relative box file paths are read
    from the folder of ``labels_csv``. Labels may be written as in :func:`index_csv`.

    Parameters
    ----------
    root
        Folder searched recursively. Files that are not DICOM are skipped.
    labels_csv
        The labels.

    Returns
    -------
    One record per labelled wrist or elbow radiograph in an AP or lateral view, in sorted path
    order. Skipped files are counted by reason in one log line: not DICOM, not a projection
    radiograph, a repeated SOP Instance UID, body part or view not resolved, and no label.

    Raises
    ------
    ValueError
        When ``labels_csv`` has an invalid row; the message gives its line number.
    """
    labels = _read_dicom_labels(labels_csv)
    source = f"dicom:{root.name}"

    records: list[ImageRecord] = []
    skipped: Counter[str] = Counter()
    used_keys: set[str] = set()
    seen: set[str] = set()
    no_patient_id = 0
    for path in sorted(path for path in root.rglob("*") if path.is_file()):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, ValueError):
            skipped["not a DICOM file"] += 1
            continue

        try:
            record = _dicom_record(path, dataset, labels, seen, used_keys, source)
        except _SkippedRow as reason:
            skipped[str(reason)] += 1
            continue
        if not str(dataset.get("PatientID", "") or "").strip():
            no_patient_id += 1
        records.append(record)

    logger.info("indexed %d DICOM images under %s; skipped %s", len(records), root,
                ", ".join(f"{count} ({reason})" for reason, count in sorted(skipped.items())) or "none")
    if no_patient_id:
        logger.warning("%d indexed images have no Patient ID (0010,0020); each of their studies counts as one "
                       "patient", no_patient_id)
    unused = len(labels) - len(used_keys)
    if unused:
        logger.info("%d of %d keys in %s matched no indexed image", unused, len(labels), labels_csv)
    return records


def _dicom_record(path: Path, dataset: Dataset, labels: Mapping[str, tuple[int, str, str]], seen: set[str],
                  used_keys: set[str], source: str) -> ImageRecord:
    """Build the record of one DICOM file, or raise _SkippedRow with the reason."""
    if not is_radiograph(dataset):
        raise _SkippedRow("not a projection radiograph")
    sop = str(dataset.get("SOPInstanceUID", "") or "")
    study = str(dataset.get("StudyInstanceUID", "") or "")
    if sop in seen:
        raise _SkippedRow("repeated SOP Instance UID")

    anatomy = resolve_anatomy(dataset)
    if anatomy.body_part not in BODY_PARTS or anatomy.view not in VIEWS:
        raise _SkippedRow("body part or view not resolved to wrist or elbow, AP or LAT")
    if sop in labels:
        key = sop
    elif study in labels:
        key = study
    else:
        raise _SkippedRow("no label")

    seen.add(sop)
    used_keys.add(key)
    label, boxes_file, boxes_format = labels[key]
    patient = str(dataset.get("PatientID", "") or "").strip() or f"study:{study}"
    sex = str(dataset.get("PatientSex", "") or "").strip().upper()
    return ImageRecord(
        image_path=str(path.resolve()),
        patient_id=pseudonym(patient),
        study_id=study,
        label=label,
        body_part=anatomy.body_part,
        view=anatomy.view,
        laterality=anatomy.laterality if anatomy.laterality in ("L", "R") else "",
        age=dicom_age_years(str(dataset.get("PatientAge", "") or "")),
        sex=sex if sex in ("M", "F") else "",
        boxes_file=boxes_file,
        boxes_format=boxes_format,
        source=PHANTOM_SOURCE if str(dataset.get("Manufacturer", "")) == PHANTOM_MANUFACTURER else source,
    )


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


def _read_dicom_labels(path: Path) -> dict[str, tuple[int, str, str]]:
    """Read ``key,label[,boxes_file][,boxes_format]`` into key -> (label, boxes file, boxes format)."""
    labels: dict[str, tuple[int, str, str]] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().lower() for name in reader.fieldnames or ()]
        _require_columns(header, ("key", "label"), path)
        reader.fieldnames = header
        for row in reader:
            try:
                key = (row.get("key") or "").strip()
                if not key:
                    raise ValueError("key is empty")
                if key in labels:
                    raise ValueError(f"key {key} appears twice")
                boxes_file, boxes_format = _boxes_columns(row.get("boxes_file"), row.get("boxes_format"), path.parent)
                labels[key] = (parse_label(row.get("label")), boxes_file, boxes_format)
            except ValueError as error:
                raise ValueError(f"{path} line {reader.line_num}: {error}") from error
    return labels


# ----------------------------------------------------------------------------------------------
# A plain CSV.


def index_csv(path: Path) -> list[ImageRecord]:
    """Index the images listed in a CSV file.

    Required columns are ``image_path``, ``patient_id``, ``label``, ``body_part`` and ``view``.
    Optional ones are ``study_id``, ``laterality``, ``age`` (years), ``sex``, ``boxes_file``,
    ``boxes_format`` and ``source``. :data:`COLUMN_ALIASES` lists other accepted header names,
    such as ``file``, ``fracture`` and ``label_file``. Values are read as follows:

    * relative image and box file paths resolve against the CSV's folder, and both files must exist;
    * labels: 1/0, true/false, yes/no, fracture/normal, positive/negative (any case);
    * views: AP, PA and frontal are AP, and LAT and lateral are LAT (the words of
      :data:`inference.anatomy.VIEW_WORDS`); oblique rows are skipped and counted;
    * body parts: any text that names wrist or elbow alone, such as "wrist (distal forearm)"; rows
      that name another body part are skipped and counted;
    * the box format defaults to the box file's suffix (``.txt`` YOLO, ``.xml`` VOC, ``.json``
      phantom-json), and a text such as "Pascal VOC XML" is read as VOC;
    * ``source`` defaults to the CSV's file name.

    Patient ids are copied as written. Pseudonymise hospital ids before listing them here.

    Parameters
    ----------
    path
        The CSV file, UTF-8 (a byte order mark is allowed).

    Returns
    -------
    One record per row kept, in file order.

    Raises
    ------
    ValueError
        When a required column is missing, or a row has an invalid value or names a missing file;
        the message gives the line number.
    """
    folder = path.parent
    records: list[ImageRecord] = []
    skipped: Counter[str] = Counter()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = _canonical_columns(reader.fieldnames, path)
        for row in reader:
            values = {name: (row.get(header) or "").strip() for name, header in columns.items()}
            try:
                records.append(_csv_record(values, folder, default_source=path.name))
            except _SkippedRow as reason:
                skipped[str(reason)] += 1
            except ValueError as error:
                raise ValueError(f"{path} line {reader.line_num}: {error}") from error

    logger.info("indexed %d images from %s; skipped %s", len(records), path,
                ", ".join(f"{count} ({reason})" for reason, count in sorted(skipped.items())) or "none")
    return records


def _canonical_columns(header: Sequence[str] | None, path: Path) -> dict[str, str]:
    """Map each canonical column name to the header name that the CSV uses for it."""
    by_lower = {name.strip().lower(): name for name in header or ()}
    columns: dict[str, str] = {}
    for name, aliases in COLUMN_ALIASES.items():
        found = next((by_lower[alias] for alias in aliases if alias in by_lower), None)
        if found is not None:
            columns[name] = found

    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        accepted = "; ".join(f"{name}: {', '.join(COLUMN_ALIASES[name])}" for name in missing)
        raise ValueError(f"{path} lacks the columns {missing} (accepted names: {accepted}); "
                         f"its header is {list(header or ())}")
    return columns


def _csv_record(values: Mapping[str, str], folder: Path, *, default_source: str) -> ImageRecord:
    """Build the record of one CSV row from its stripped values, keyed by canonical column name."""
    image = _existing_file(values["image_path"], folder, "image_path")
    if not values["patient_id"]:
        raise ValueError("patient_id is empty")
    boxes_file, boxes_format = _boxes_columns(values.get("boxes_file"), values.get("boxes_format"), folder)

    return ImageRecord(
        image_path=image,
        patient_id=values["patient_id"],
        study_id=values.get("study_id", ""),
        label=parse_label(values["label"]),
        body_part=parse_body_part(values["body_part"]),
        view=parse_view(values["view"]),
        laterality=_parse_laterality(values.get("laterality", "")),
        age=_parse_age(values.get("age", "")),
        sex=_parse_sex(values.get("sex", "")),
        boxes_file=boxes_file,
        boxes_format=boxes_format,
        source=values.get("source") or default_source,
    )


def parse_label(text: str | None) -> int:
    """Read a fracture label written as 1/0, true/false, yes/no, fracture/normal or positive/negative."""
    value = (text or "").strip().lower()
    if value in POSITIVE_LABELS:
        return 1
    if value in NEGATIVE_LABELS:
        return 0
    raise ValueError(f"label {text!r} is not one of 1/0, true/false, yes/no, fracture/normal, positive/negative")


def parse_view(text: str) -> str:
    """Read a view as ``"AP"`` (AP, PA, frontal) or ``"LAT"`` (LAT, lateral); raise _SkippedRow for an oblique."""
    found = find_words(text, VIEW_WORDS)
    if len(found) == 1:
        (view,) = found
        if view == OBLIQUE:
            raise _SkippedRow("oblique view")
        return view
    raise ValueError(f"view {text!r} is not AP, PA, frontal, LAT or lateral")


def parse_body_part(text: str) -> str:
    """Read a body part that names wrist or elbow alone; raise _SkippedRow for another body part."""
    found = find_words(text, BODY_PART_WORDS)
    if len(found) == 1:
        (body_part,) = found
        if body_part == OTHER:
            raise _SkippedRow("body part other than wrist or elbow")
        return body_part
    raise ValueError(f"body part {text!r} does not name wrist or elbow alone")


def _parse_laterality(text: str) -> str:
    if not text:
        return ""
    found = find_words(text, LATERALITY_WORDS)
    if len(found) != 1:
        raise ValueError(f"laterality {text!r} is not L, R, left, right or empty")
    (side,) = found
    return side if side in ("L", "R") else ""


def _parse_sex(text: str) -> str:
    value = text.upper()
    if value in ("M", "MALE"):
        return "M"
    if value in ("F", "FEMALE"):
        return "F"
    if value in ("", "O", "OTHER", "U", "UNKNOWN"):
        return ""
    raise ValueError(f"sex {text!r} is not M, F, O or empty")


def _parse_age(text: str) -> float | None:
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


def _existing_file(text: str, folder: Path, column: str) -> str:
    """Resolve a path against ``folder`` and return it, absolute, when the file exists."""
    if not text:
        raise ValueError(f"{column} is empty")
    path = Path(text).expanduser()
    path = (path if path.is_absolute() else folder / path).resolve()
    if not path.is_file():
        raise ValueError(f"{column} {text} not found (looked for {path})")
    return str(path)


def _boxes_columns(boxes_file: str | None, boxes_format: str | None, folder: Path) -> tuple[str, str]:
    """Return the absolute box file and its format, ("", "") when no file is given."""
    text = (boxes_file or "").strip()
    if not text:
        return "", ""
    path = _existing_file(text, folder, "boxes_file")

    written = (boxes_format or "").strip().lower()
    if written in ("yolo", "voc", "phantom-json"):
        return path, written
    if written.startswith("yolo"):
        return path, "yolo"
    if "voc" in written:
        return path, "voc"
    suffix = Path(path).suffix.lower()
    if suffix not in BOXES_SUFFIXES:
        raise ValueError(f"boxes_format of {text} is unknown: give yolo, voc or phantom-json, or use a "
                         f".txt, .xml or .json file")
    return path, BOXES_SUFFIXES[suffix]


# ----------------------------------------------------------------------------------------------
# Splits by patient.


def split_by_patient(records: Sequence[ImageRecord], *, test_fraction: float = 0.2,
                     validation_fraction: float = 0.2, seed: int = 0) -> Splits:
    """Split records into train, validation and test sets by patient, stratified by body part and label.

    A patient is positive when any of their images is; their stratum is their body parts and that
    label, so each body part keeps its share of fractures in every split. Where a stratum is too
    small, the draw is stratified by label alone. The test patients are drawn first, as
    ``test_fraction`` of all patients, rounded up but leaving at least one patient in the rest.
    Then ``validation_fraction`` of the remaining patients form the validation set, so the default
    0.2 splits the rest 8:2. Each draw is stratified when every class has at least 2 patients and
    the draw and the rest can each take one patient of every class. Otherwise the draw is made
    without stratification and a warning is logged. A draw from fewer than 2 patients leaves all
    of them in the rest. For example, 4 patients give 2 train, 1 validation and 1 test patient, not
    stratified; 1 patient goes to train.

    Parameters
    ----------
    records
        The images to split; their order is kept within each split.
    test_fraction, validation_fraction
        Fractions in [0, 1); 0 draws no patients.
    seed
        Random state of both draws. The same records and seed give the same splits.

    Returns
    -------
    The keys ``"train"``, ``"val"`` and ``"test"``, with the seed and fractions as attributes.

    Raises
    ------
    ValueError
        When a fraction is outside [0, 1).
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("validation_fraction", validation_fraction)
    patients = _patient_strata(records)

    rest, test = _draw_patients(patients, test_fraction, seed, "test")
    train, validation = _draw_patients({patient: patients[patient] for patient in rest}, validation_fraction,
                                       seed, "validation")

    split_of = {patient: "train" for patient in train} | {patient: "val" for patient in validation}
    split_of |= {patient: "test" for patient in test}
    grouped: dict[str, list[ImageRecord]] = {name: [] for name in SPLITS}
    for record in records:
        grouped[split_of[record.patient_id]].append(record)

    splits = Splits(grouped, seed=seed, test_fraction=test_fraction, validation_fraction=validation_fraction)
    check_disjoint(splits)
    logger.info("split %d patients into %d train, %d validation and %d test patients (seed %d)", len(patients),
                len(train), len(validation), len(test), seed)
    return splits


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), found {value}")


def _patient_strata(records: Iterable[ImageRecord]) -> dict[str, str]:
    """Return each patient's stratum ``<body parts>:<label>``, keyed in sorted patient order.

    The label is 1 when any of the patient's images is positive.
    """
    labels = _patient_labels(records)
    parts: dict[str, set[str]] = defaultdict(set)
    for record in records:
        parts[record.patient_id].add(record.body_part)
    return {patient: f"{'+'.join(sorted(parts[patient]))}:{label}" for patient, label in labels.items()}


def _patient_labels(records: Iterable[ImageRecord]) -> dict[str, int]:
    """Return each patient's label (1 when any image is positive), keyed in sorted patient order."""
    labels: dict[str, int] = defaultdict(int)
    for record in records:
        labels[record.patient_id] = max(labels[record.patient_id], record.label)
    return dict(sorted(labels.items()))


def _draw_patients(patients: Mapping[str, str], fraction: float, seed: int, name: str) -> tuple[list[str], list[str]]:
    """Draw ``fraction`` of the patients; return (rest, drawn), each sorted."""
    ids = list(patients)
    if fraction == 0.0 or not ids:
        return ids, []
    if len(ids) < 2:
        logger.warning("1 patient is too few to draw a %s set; the patient stays in the rest", name)
        return ids, []

    drawn_count = min(math.ceil(fraction * len(ids)), len(ids) - 1)
    strata = [patients[patient] for patient in ids]
    labels = [stratum.rsplit(":", 1)[1] for stratum in strata]
    stratify = next((choice for choice in (strata, labels) if _can_stratify(choice, drawn_count)), None)
    if stratify is None:
        classes = Counter(labels)
        logger.warning("drawing the %s set without stratification: %d positive and %d negative patients are too "
                       "few to draw %d of %d with both classes", name, classes["1"], classes["0"], drawn_count, len(ids))
    elif stratify is labels:
        logger.info("drawing the %s set stratified by label only: some body part has too few patients", name)

    rest, drawn = train_test_split(ids, test_size=drawn_count, random_state=seed, shuffle=True, stratify=stratify)
    return sorted(rest), sorted(drawn)


def _can_stratify(strata: Sequence[str], drawn_count: int) -> bool:
    """True when every stratum has 2 patients and both the draw and the rest can hold one of each."""
    counts = Counter(strata)
    return min(counts.values()) >= 2 and drawn_count >= len(counts) and len(strata) - drawn_count >= len(counts)


def check_disjoint(splits: Mapping[str, Sequence[ImageRecord]]) -> None:
    """Check that no patient has images in two splits.

    Raises
    ------
    ValueError
        When patients appear in more than one split; the message gives their count, not their ids.
    """
    split_names: dict[str, set[str]] = defaultdict(set)
    for name, records in splits.items():
        for record in records:
            split_names[record.patient_id].add(name)

    shared = sum(1 for names in split_names.values() if len(names) > 1)
    if shared:
        raise ValueError(f"{shared} patients appear in more than one of the splits {sorted(splits)}; "
                         "split by patient with split_by_patient or patient_folds")


def patient_folds(records: Sequence[ImageRecord], *, folds: int = 5,
                  seed: int = 0) -> list[tuple[list[ImageRecord], list[ImageRecord]]]:
    """Make k folds by patient for cross-validation, stratified by the patient's label.

    Uses scikit-learn's ``StratifiedGroupKFold`` with shuffling, grouped by patient id. Each image
    carries its patient's label (1 when any of the patient's images is positive). Every patient is
    held out in exactly one fold. When a class has fewer patients than folds, scikit-learn's
    warning is logged and some folds lack that class.

    Parameters
    ----------
    records
        The images; their order is kept within each part.
    folds
        Number of folds, 2 or more and at most the number of patients.
    seed
        Random state of the shuffle.

    Returns
    -------
    One (train, held-out) pair per fold.

    Raises
    ------
    ValueError
        When ``folds`` is below 2 or above the number of patients.
    """
    patients = _patient_labels(records)
    if folds < 2:
        raise ValueError(f"folds must be 2 or more, found {folds}")
    if folds > len(patients):
        raise ValueError(f"{folds} folds need at least {folds} patients, found {len(patients)}")

    groups = [record.patient_id for record in records]
    labels = [str(patients[patient]) for patient in groups]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        indices = list(splitter.split(np.zeros(len(records)), labels, groups))
    for warning in caught:
        logger.warning("patient folds: %s", warning.message)

    result = []
    for train_indices, held_out_indices in indices:
        train = [records[index] for index in train_indices]
        held_out = [records[index] for index in held_out_indices]
        check_disjoint({"train": train, "held_out": held_out})
        result.append((train, held_out))
    return result


# ----------------------------------------------------------------------------------------------
# Manifest files.


def write_manifests(out_dir: Path, splits: Mapping[str, Sequence[ImageRecord]]) -> list[Path]:
    """Write one CSV per body part, view and split, and an ``index.json`` summary.

    Files are ``out_dir/<body_part>/<VIEW>_<split>.csv`` (for example ``wrist/AP_train.csv``), UTF-8,
    with the header :data:`CSV_COLUMNS`. A file is written for every split of each body part and
    view that occurs in any split, so an empty split gets a header-only file.

    ``index.json`` contains the keys ``format``, ``version``, ``columns``, ``seed``,
    ``test_fraction``, ``validation_fraction``, ``sources``, ``splits`` (the names), ``files``
    (relative paths), ``totals`` (per split) and ``counts`` (per split, body part and view). Each
    total and count gives ``images``, ``patients`` and ``positives`` (positive images). The seed
    and fractions are null unless ``splits`` is a :class:`Splits`. Each file is written to a
    temporary file and renamed. Manifest files listed by an earlier ``index.json``
    that this call does not write are removed.

    Parameters
    ----------
    out_dir
        Created when absent.
    splits
        Records per split name. Names may contain letters, digits, ``-`` and ``_``.

    Returns
    -------
    The CSV files written, then ``index.json``.

    Raises
    ------
    ValueError
        When a patient appears in two splits (see :func:`check_disjoint`) or a split name is invalid.
    """
    check_disjoint(splits)
    for name in splits:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"split name {name!r} is invalid: use letters, digits, '-' and '_'")
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = set(_read_index(out_dir)["files"]) if (out_dir / INDEX_FILE).is_file() else set()

    pairs = sorted({(record.body_part, record.view) for records in splits.values() for record in records},
                   key=lambda pair: (BODY_PARTS.index(pair[0]), VIEWS.index(pair[1])))
    written: list[Path] = []
    for body_part, view in pairs:
        for name, records in splits.items():
            selected = [record for record in records if (record.body_part, record.view) == (body_part, view)]
            path = out_dir / body_part / f"{view}_{name}.csv"
            _write_atomic(path, _csv_text(selected))
            written.append(path)

    relative = [path.relative_to(out_dir).as_posix() for path in written]
    for stale in sorted(earlier - set(relative)):
        if _is_manifest_name(stale):
            (out_dir / stale).unlink(missing_ok=True)

    index = out_dir / INDEX_FILE
    _write_atomic(index, json.dumps(_summary(splits, relative), indent=2) + "\n")
    logger.info("wrote %d manifest files to %s", len(written), out_dir)
    return [*written, index]


def read_manifests(folder: Path, split: str, *, body_part: str | None = None,
                   view: str | None = None) -> list[ImageRecord]:
    """Read the records of one split from manifests written by :func:`write_manifests`.

    Parameters
    ----------
    folder
        The ``out_dir`` of :func:`write_manifests`; its ``index.json`` lists the files to read.
    split
        Split name, such as ``"train"``.
    body_part, view
        When given, only that body part (``"wrist"``, ``"elbow"``) or view (``"AP"``, ``"LAT"``).

    Returns
    -------
    The records, file by file in the order of ``index.json`` (wrist before elbow, AP before LAT).

    Raises
    ------
    FileNotFoundError
        When ``index.json`` or a file it lists is missing.
    ValueError
        When the split is not in the index, a filter value is invalid, or a file has a different
        header or an invalid row (the message gives the line number).
    """
    if body_part is not None:
        _check_value("body_part", body_part, BODY_PARTS)
    if view is not None:
        _check_value("view", view, VIEWS)
    index = _read_index(folder)
    if split not in index["splits"]:
        raise ValueError(f"split {split!r} is not in {folder / INDEX_FILE}; it has {index['splits']}")

    records: list[ImageRecord] = []
    for relative in index["files"]:
        part, file_view, file_split = _manifest_parts(relative)
        if file_split != split or body_part not in (None, part) or view not in (None, file_view):
            continue
        records.extend(_read_manifest_csv(folder / relative))
    return records


def _read_index(folder: Path) -> dict:
    path = folder / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; write the manifests with pedfrac index first")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != MANIFEST_FORMAT or index.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path} is not a {MANIFEST_FORMAT!r} index of version {MANIFEST_VERSION}")
    return index


def _is_manifest_name(relative: str) -> bool:
    return re.fullmatch(r"(wrist|elbow)/(AP|LAT)_[A-Za-z0-9_-]+\.csv", relative) is not None


def _manifest_parts(relative: str) -> tuple[str, str, str]:
    """Split ``wrist/AP_train.csv`` into ("wrist", "AP", "train")."""
    if not _is_manifest_name(relative):
        raise ValueError(f"{relative} is not a manifest file name of the form <body_part>/<VIEW>_<split>.csv")
    path = Path(relative)
    view, split = path.stem.split("_", 1)
    return path.parent.name, view, split


def _csv_text(records: Iterable[ImageRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow([_cell(getattr(record, column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _read_manifest_csv(path: Path) -> list[ImageRecord]:
    records = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path} has the header {reader.fieldnames}, expected {list(CSV_COLUMNS)}")
        for row in reader:
            try:
                records.append(ImageRecord(
                    image_path=row["image_path"], patient_id=row["patient_id"], study_id=row["study_id"],
                    label=int(row["label"]), body_part=row["body_part"], view=row["view"],
                    laterality=row["laterality"], age=float(row["age"]) if row["age"] else None, sex=row["sex"],
                    boxes_file=row["boxes_file"], boxes_format=row["boxes_format"], source=row["source"],
                ))
            except ValueError as error:
                raise ValueError(f"{path} line {reader.line_num}: {error}") from error
    return records


def _summary(splits: Mapping[str, Sequence[ImageRecord]], files: list[str]) -> dict:
    """Build the content of ``index.json``."""
    totals: dict[str, dict[str, int]] = {}
    counts: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for name, records in splits.items():
        totals[name] = _counts(records)
        counts[name] = {}
        for body_part in BODY_PARTS:
            for view in VIEWS:
                selected = [record for record in records if (record.body_part, record.view) == (body_part, view)]
                if selected:
                    counts[name].setdefault(body_part, {})[view] = _counts(selected)

    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "columns": list(CSV_COLUMNS),
        "seed": getattr(splits, "seed", None),
        "test_fraction": getattr(splits, "test_fraction", None),
        "validation_fraction": getattr(splits, "validation_fraction", None),
        "sources": sorted({record.source for records in splits.values() for record in records}),
        "splits": list(splits),
        "files": files,
        "totals": totals,
        "counts": counts,
    }


def _counts(records: Sequence[ImageRecord]) -> dict[str, int]:
    return {
        "images": len(records),
        "patients": len({record.patient_id for record in records}),
        "positives": sum(record.label for record in records),
    }


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------
# Images and boxes.


def load_image(record: ImageRecord) -> np.ndarray:
    """Read a record's image as a 2-D float32 display image in [0, 1], bone bright.

    DICOM files go through :func:`inference.pixels.display_image` (Modality LUT, VOI LUT,
    MONOCHROME1 inversion). PNG and JPEG files are read with OpenCV: colour becomes grey, 8-bit
    values are divided by 255, and other depths (such as GRAZPEDWRI-DX's 16-bit PNGs) are windowed
    between their 0.5th and 99.5th percentiles. Files with a ``.png``, ``.jpg`` or ``.jpeg``
    suffix are read as images, and all others as DICOM.

    Raises
    ------
    ValueError
        When the file is missing or cannot be read or decoded; the message names the path.
    """
    path = Path(record.image_path)
    if not path.is_file():
        raise ValueError(f"image {path} not found")
    if path.suffix.lower() in RASTER_SUFFIXES:
        return _read_raster(path)
    return _read_dicom_image(path)


def _read_raster(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"image {path} could not be read by OpenCV; is it a valid PNG or JPEG file?")

    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if pixels.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        pixels = cv2.cvtColor(pixels, code)
    elif pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim != 2:
        raise ValueError(f"image {path} has the shape {pixels.shape}, expected a grey or colour image")

    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255.0)
    return _percentile_window(pixels.astype(np.float64))


def _percentile_window(values: np.ndarray) -> np.ndarray:
    """Map the 0.5th to 99.5th percentile of the values to [0, 1]; a flat image becomes zeros."""
    low, high = np.percentile(values, [0.5, 99.5])
    if not high > low:
        return np.zeros(values.shape, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _read_dicom_image(path: Path) -> np.ndarray:
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, ValueError) as error:
        raise ValueError(f"image {path} is not a readable DICOM file: {error}") from error
    try:
        return display_image(dataset)
    except PixelError as error:
        raise ValueError(f"image {path}: {error}") from error


def load_boxes(record: ImageRecord, shape: tuple[int, int]) -> list[Box]:
    """Read a record's fracture and fat pad boxes as (label, x0, y0, x1, y1) in image pixels.

    Formats, by ``record.boxes_format``:

    * ``"yolo"``: one ``class x_centre y_centre width height`` line per box, normalised to [0, 1].
      Class ids are GRAZPEDWRI-DX's (3 is fracture) plus 9 for the elbow fat pad. Only fracture
      and fat pad boxes are kept, so GRAZPEDWRI-DX's other classes (text, metal, periosteal
      reaction, pronator sign and so on) are dropped.
    * ``"voc"``: Pascal VOC XML with ``<object><name>`` and ``<bndbox>`` in absolute pixels;
      objects named ``fracture`` or ``fat_pad`` are kept.
    * ``"phantom-json"``: a JSON list of ``[label, x0, y0, x1, y1]`` in pixels, labels
      ``fracture`` or ``fat_pad``.

    Boxes are clipped to the image, and boxes with no area left are dropped.

    Parameters
    ----------
    record
        The image's record; an empty ``boxes_file`` gives no boxes.
    shape
        (rows, columns) of the image, used to scale YOLO boxes and to clip.

    Raises
    ------
    ValueError
        When the file is malformed or names an unknown class or label; the message names the file.
    """
    if not record.boxes_file:
        return []
    path = Path(record.boxes_file)
    if record.boxes_format == "yolo":
        boxes = _read_yolo(path, shape)
    elif record.boxes_format == "voc":
        boxes = _read_voc(path)
    elif record.boxes_format == "phantom-json":
        boxes = _read_phantom_json(path)
    else:
        raise ValueError(f"boxes format {record.boxes_format!r} of {path} is not yolo, voc or phantom-json")

    kept = [_clip(box, shape) for box in boxes if box[0] in KEPT_BOX_LABELS]
    return [box for box in kept if box[3] > box[1] and box[4] > box[2]]


def _read_yolo(path: Path, shape: tuple[int, int]) -> list[Box]:
    rows, columns = shape
    boxes: list[Box] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            class_id = int(parts[0])
            x, y, width, height = (float(part) for part in parts[1:])
        except ValueError as error:
            raise ValueError(f"{path} line {number}: expected 'class x_centre y_centre width height', "
                             f"found {line.strip()!r}") from error
        if class_id not in YOLO_CLASSES:
            raise ValueError(f"{path} line {number}: class {class_id} is not one of {sorted(YOLO_CLASSES)}")
        boxes.append((YOLO_CLASSES[class_id], (x - width / 2) * columns, (y - height / 2) * rows,
                      (x + width / 2) * columns, (y + height / 2) * rows))
    return boxes


def _read_voc(path: Path) -> list[Box]:
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"{path} is not valid XML: {error}") from error

    boxes: list[Box] = []
    for number, item in enumerate(root.iter("object"), start=1):
        name = (item.findtext("name") or "").strip()
        try:
            x0, y0, x1, y1 = (float((item.findtext(f"bndbox/{edge}") or "").strip())
                              for edge in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as error:
            raise ValueError(f"{path} object {number} ({name or 'no name'}): bndbox lacks a number in "
                             "xmin, ymin, xmax or ymax") from error
        boxes.append((name, x0, y0, x1, y1))
    return boxes


def _read_phantom_json(path: Path) -> list[Box]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(items, list):
        raise ValueError(f"{path} must contain a JSON list of [label, x0, y0, x1, y1]")

    boxes: list[Box] = []
    for number, item in enumerate(items, start=1):
        valid = (isinstance(item, list) and len(item) == 5 and item[0] in KEPT_BOX_LABELS
                 and all(isinstance(value, int | float) for value in item[1:]))
        if not valid:
            raise ValueError(f"{path} box {number} is {item!r}, expected [label, x0, y0, x1, y1] with label "
                             f"{' or '.join(KEPT_BOX_LABELS)}")
        boxes.append((item[0], float(item[1]), float(item[2]), float(item[3]), float(item[4])))
    return boxes


def _clip(box: Box, shape: tuple[int, int]) -> Box:
    rows, columns = shape
    label, x0, y0, x1, y1 = box
    return (label, min(max(x0, 0.0), columns), min(max(y0, 0.0), rows),
            min(max(x1, 0.0), columns), min(max(y1, 0.0), rows))
