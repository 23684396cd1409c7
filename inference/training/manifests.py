"""Manifest files: the CSVs of image records per body part, view and split, with an index.

:func:`write_manifests` writes one CSV per body part, view and split, such as ``wrist/AP_train.csv``
and ``elbow/LAT_val.csv``, with the columns :data:`~inference.training.records.CSV_COLUMNS`, plus
an ``index.json`` summary. :func:`read_manifests` reads them back.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from inference.package import BODY_PARTS, VIEWS
from inference.training.records import CSV_COLUMNS, ImageRecord, check_value
from inference.training.splits import check_disjoint

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
MANIFEST_FORMAT = "pedfrac image manifests"
MANIFEST_VERSION = 1


def write_manifests(out_dir: Path, splits: Mapping[str, Sequence[ImageRecord]]) -> list[Path]:
    """Write one CSV per body part, view and split, and an ``index.json`` summary.

    Files are ``out_dir/<body_part>/<VIEW>_<split>.csv`` (for example ``wrist/AP_train.csv``), UTF-8,
    with the header :data:`~inference.training.records.CSV_COLUMNS`. A file is written for every
    split of each body part and view that occurs in any split, so an empty split gets a header-only
    file.

    ``index.json`` contains the keys ``format``, ``version``, ``columns``, ``seed``,
    ``test_fraction``, ``validation_fraction``, ``sources``, ``splits`` (the names), ``files``
    (relative paths), ``totals`` (per split) and ``counts`` (per split, body part and view). Each
    total and count gives ``images``, ``patients`` and ``positives`` (positive images). The seed
    and fractions are null unless ``splits`` is a :class:`~inference.training.splits.Splits`. Each
    file is written to a temporary file and renamed. Manifest files listed by an earlier ``index.json``
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
        When a patient appears in two splits (see :func:`~inference.training.splits.check_disjoint`)
        or a split name is invalid.
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
        check_value("body_part", body_part, BODY_PARTS)
    if view is not None:
        check_value("view", view, VIEWS)
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
