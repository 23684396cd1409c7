"""Index radiograph data sets into :class:`~inference.training.records.ImageRecord` rows.

Three indexers return one record per wrist or elbow image in an AP or lateral view.
:func:`index_grazpedwri` reads the GRAZPEDWRI-DX layout. :func:`index_dicom_folder` reads a folder
of DICOM files with a separate labels CSV, and :func:`index_csv` reads a plain CSV.

Logs contain counts and file names only. GRAZPEDWRI-DX file names carry that data set's public
patient numbers; DICOM patient ids are replaced by a pseudonym before they reach a record.
"""
from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from inference.anatomy import is_radiograph, resolve_anatomy
from inference.package import BODY_PARTS, VIEWS
from inference.training.records import (
    GRAZPEDWRI_SOURCE,
    PHANTOM_MANUFACTURER,
    PHANTOM_SOURCE,
    ImageRecord,
    SkippedRow,
    dicom_age_years,
    parse_age,
    parse_body_part,
    parse_label,
    parse_laterality,
    parse_sex,
    parse_view,
    pseudonym,
)

logger = logging.getLogger(__name__)

BOXES_SUFFIXES = {".txt": "yolo", ".xml": "voc", ".json": "phantom-json"}
GRAZPEDWRI_COLUMNS = (
    "filestem", "patient_id", "study_number", "timehash", "gender", "age", "laterality", "projection",
    "initial_exam", "ao_classification", "cast", "diagnosis_uncertain", "osteopenia", "fracture_visible",
    "metal", "pixel_spacing", "device_manufacturer",
)
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
    ``boxes_format`` (see :func:`~inference.training.images.load_boxes`). The box format defaults
    to the one that the file suffix implies (``.txt`` YOLO, ``.xml`` VOC, ``.json`` phantom-json).
    A key is a (0008,0018) SOPInstanceUID, which labels one image, or a (0020,000D)
    StudyInstanceUID, which labels every image of the study. An image key wins over its study's
    key. A box file given with a study key applies to every image of that study, so give boxes with
    image keys. Relative box file paths are read from the folder of ``labels_csv``. Labels may be
    written as in :func:`index_csv`.

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
        except SkippedRow as reason:
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
    """Build the record of one DICOM file, or raise SkippedRow with the reason."""
    if not is_radiograph(dataset):
        raise SkippedRow("not a projection radiograph")
    sop = str(dataset.get("SOPInstanceUID", "") or "")
    study = str(dataset.get("StudyInstanceUID", "") or "")
    if sop in seen:
        raise SkippedRow("repeated SOP Instance UID")

    anatomy = resolve_anatomy(dataset)
    if anatomy.body_part not in BODY_PARTS or anatomy.view not in VIEWS:
        raise SkippedRow("body part or view not resolved to wrist or elbow, AP or LAT")
    if sop in labels:
        key = sop
    elif study in labels:
        key = study
    else:
        raise SkippedRow("no label")

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
            except SkippedRow as reason:
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
        laterality=parse_laterality(values.get("laterality", "")),
        age=parse_age(values.get("age", "")),
        sex=parse_sex(values.get("sex", "")),
        boxes_file=boxes_file,
        boxes_format=boxes_format,
        source=values.get("source") or default_source,
    )

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
