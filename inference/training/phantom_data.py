"""Write synthetic phantoms to disk in the layouts that :mod:`inference.training.indexing` indexes.

:func:`write_grazpedwri_layout` writes 16-bit PNGs, YOLO label files and a ``dataset.csv`` with
the columns of GRAZPEDWRI-DX. :func:`write_dicom_folder` writes one DX DICOM file per phantom with
a labels CSV and a phantom-json boxes file per image. Both give the same labels, views, body parts
and boxes when indexed back, so tests and demonstrations can run the whole data path without
patient data.

Phantoms carry no age or sex. Both are derived from a hash of the patient id, so the two views of a
patient agree and every run writes the same values. Every identifier, including the DICOM UIDs, is
derived from the phantoms and their order, so the same phantoms give the same files.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from inference.phantoms import Phantom
from inference.training.images import FAT_PAD_CLASS_ID, GRAZPEDWRI_CLASSES
from inference.training.indexing import GRAZPEDWRI_COLUMNS
from inference.training.records import PHANTOM_MANUFACTURER

logger = logging.getLogger(__name__)

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
MANUFACTURER = PHANTOM_MANUFACTURER
YOLO_CLASS_IDS = {"fracture": GRAZPEDWRI_CLASSES.index("fracture"), "fat_pad": FAT_PAD_CLASS_ID}
REGION_CODES = {"wrist": "WRI", "elbow": "ELB"}
PROJECTIONS = {"AP": 1, "LAT": 2}
VIEW_NAMES = {"AP": "AP", "LAT": "LATERAL"}
MAX_PATIENTS = 9999
# Namespace of the name-based (version 5) UUIDs behind the phantom UIDs.
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:pedfrac:phantom-dicom")
# A fixed study date and time, so that the files do not depend on when they were written.
STUDY_DATE = "20260101"
STUDY_TIME = "120000"


# Above the highest patient number of GRAZPEDWRI-DX (6091), so phantoms never share a patient with it.
FIRST_PATIENT_NUMBER = 7000

@dataclass(frozen=True)
class _Patient:
    """Patient details written to the files: running number, age in years and sex."""

    number: int
    age: float
    sex: str


def write_grazpedwri_layout(phantoms: Sequence[Phantom], root: Path, *, first_number: int = FIRST_PATIENT_NUMBER) -> Path:
    """Write phantoms as a GRAZPEDWRI-DX folder that :func:`~inference.training.indexing.index_grazpedwri` reads.

    The folder gets ``images/<stem>.png`` (16-bit greyscale, the phantom image times 65535),
    ``labels/<stem>.txt`` (YOLO) and ``dataset.csv`` with the official columns. File stems follow
    the GRAZPEDWRI-DX convention ``<patient>_<time hash>_<study>_WRI-<L|R><1|2>_<M|F><age>``.
    The patient number has 4 digits and counts patients from ``first_number`` in order of first
    appearance; the default 7000 lies above GRAZPEDWRI-DX's highest patient number (6091), so
    phantoms indexed beside the real data set never share a patient with it. The
    time hash has 10 digits derived from the patient, view and list position. The study number is
    01, the projection is 1 for AP and 2 for lateral, and the age is in whole years with 3 digits.
    Elbow images use ``ELB`` in place of ``WRI``. That is this project's extension of the
    convention, because the official data set contains wrists only.

    YOLO label files contain class 3 (fracture, as in GRAZPEDWRI-DX) and class 9 (elbow fat pad, an
    id this project adds). A phantom without boxes gets an empty label file. ``fracture_visible``
    is 1 for every image of a fractured phantom study and blank otherwise. ``pixel_spacing`` is
    blank, because phantoms have no physical scale.

    Parameters
    ----------
    phantoms
        The phantoms, for example from :func:`inference.phantoms.generate_dataset`.
    root
        Created when absent. Existing files with the same names are replaced.

    Returns
    -------
    ``root``.

    Raises
    ------
    ValueError
        When there are more than 9999 patients or a box has a label other than fracture or fat_pad.
    """
    patients = _patients(phantoms, first_number)
    images = root / "images"
    labels = root / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)

    rows = []
    for position, phantom in enumerate(phantoms):
        patient = patients[phantom.patient_id]
        time_hash = _time_hash(phantom, position)
        stem = (f"{patient.number:04d}_{time_hash}_01_{REGION_CODES[phantom.body_part]}-{phantom.laterality}"
                f"{PROJECTIONS[phantom.view]}_{patient.sex}{int(patient.age):03d}")
        _write_png16(images / f"{stem}.png", phantom.image)
        (labels / f"{stem}.txt").write_text(_yolo_text(phantom), encoding="utf-8")
        rows.append(_dataset_row(stem, phantom, patient, time_hash))

    with (root / "dataset.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GRAZPEDWRI_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    logger.info("wrote %d phantom images of %d patients in the GRAZPEDWRI-DX layout under %s", len(rows),
                len(patients), root)
    return root


def write_dicom_folder(phantoms: Sequence[Phantom], root: Path) -> tuple[Path, Path]:
    """Write phantoms as DX DICOM files and a labels CSV, for :func:`~inference.training.indexing.index_dicom_folder`.

    Each phantom becomes ``root/dicom/<position>.dcm``, a DX For Presentation image with 16-bit
    MONOCHROME2 pixels (the phantom image times 65535) and a window over the full range, so the
    display image equals the phantom image to within 1/65535. Each patient gets one study, and each
    view one series. (0018,0015) BodyPartExamined is WRIST or ELBOW, (0018,5101) ViewPosition AP
    or LAT, and (0020,0062) ImageLaterality L or R. (0010,0020) PatientID is the phantom's
    patient id. (0010,1010) PatientAge and (0010,0040) PatientSex are derived from it.

    ``root/labels.csv`` has the columns ``key`` (the SOPInstanceUID), ``label`` (1 for a
    fractured study) and ``boxes_file``, a path relative to ``root`` of ``root/boxes/<position>.json``.
    That file contains the phantom's boxes as a phantom-json list of ``[label, x0, y0, x1, y1]``.

    Parameters
    ----------
    phantoms
        The phantoms.
    root
        Created when absent. Existing files with the same names are replaced.

    Returns
    -------
    The DICOM folder and the labels CSV.

    Raises
    ------
    ValueError
        When there are more than 9999 patients.
    """
    patients = _patients(phantoms)
    folder = root / "dicom"
    boxes_folder = root / "boxes"
    folder.mkdir(parents=True, exist_ok=True)
    boxes_folder.mkdir(parents=True, exist_ok=True)

    rows = []
    for position, phantom in enumerate(phantoms):
        dataset = _dx_dataset(phantom, patients[phantom.patient_id], position)
        dataset.save_as(folder / f"{position:05d}.dcm", enforce_file_format=True)

        boxes_file = boxes_folder / f"{position:05d}.json"
        boxes_file.write_text(json.dumps([list(box) for box in phantom.boxes]), encoding="utf-8")
        rows.append({"key": dataset.SOPInstanceUID, "label": int(phantom.fracture),
                     "boxes_file": boxes_file.relative_to(root).as_posix()})

    labels_csv = root / "labels.csv"
    with labels_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=("key", "label", "boxes_file"), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    logger.info("wrote %d phantom DICOM images of %d patients under %s", len(rows), len(patients), folder)
    return folder, labels_csv


def _patients(phantoms: Sequence[Phantom], first_number: int = 1) -> dict[str, _Patient]:
    """Number the patients from ``first_number`` in order of first appearance and derive each one's age and sex."""
    patients: dict[str, _Patient] = {}
    for phantom in phantoms:
        if phantom.patient_id in patients:
            continue
        number = len(patients) + first_number
        if not 1 <= number <= MAX_PATIENTS:
            raise ValueError(f"the GRAZPEDWRI-DX file names have 4 digits for the patient, so patient numbers run "
                             f"from 1 to {MAX_PATIENTS}; {len(patients) + 1} patients from {first_number} do not fit")

        digest = hashlib.sha256(phantom.patient_id.encode("utf-8")).digest()
        age = 3.0 + int.from_bytes(digest[:4], "big") % 120 / 10
        patients[phantom.patient_id] = _Patient(number=number, age=round(age, 1), sex="MF"[digest[4] % 2])
    return patients


def _time_hash(phantom: Phantom, position: int) -> str:
    """Return 10 decimal digits that stand in for GRAZPEDWRI-DX's masked acquisition time."""
    digest = hashlib.sha256(f"{phantom.patient_id}|{phantom.view}|{position}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**10:010d}"


def _write_png16(path: Path, image: np.ndarray) -> None:
    pixels = np.rint(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"OpenCV could not write {path}")


def _yolo_text(phantom: Phantom) -> str:
    """Return the phantom's boxes as YOLO lines: class id, then centre and size normalised to the image."""
    rows, columns = phantom.image.shape
    lines = []
    for label, x0, y0, x1, y1 in phantom.boxes:
        if label not in YOLO_CLASS_IDS:
            raise ValueError(f"box label {label!r} has no YOLO class id; expected one of {sorted(YOLO_CLASS_IDS)}")
        centre_x, centre_y = (x0 + x1) / 2 / columns, (y0 + y1) / 2 / rows
        width, height = (x1 - x0) / columns, (y1 - y0) / rows
        lines.append(f"{YOLO_CLASS_IDS[label]} {centre_x:.6f} {centre_y:.6f} {width:.6f} {height:.6f}\n")
    return "".join(lines)


def _dataset_row(stem: str, phantom: Phantom, patient: _Patient, time_hash: str) -> dict[str, str]:
    """Return the ``dataset.csv`` row of one image, written as the official table writes its values."""
    row = dict.fromkeys(GRAZPEDWRI_COLUMNS, "")
    row.update(
        filestem=stem,
        patient_id=str(patient.number),
        study_number="1",
        timehash=str(int(time_hash)),
        gender=patient.sex,
        age=str(patient.age),
        laterality=phantom.laterality,
        projection=str(PROJECTIONS[phantom.view]),
        initial_exam="1",
        fracture_visible="1" if phantom.fracture else "",
        device_manufacturer=MANUFACTURER,
    )
    return row


# ----------------------------------------------------------------------------------------------
# DICOM, one module of the DX image at a time.


def _dx_dataset(phantom: Phantom, patient: _Patient, position: int) -> Dataset:
    """Build the DX For Presentation image of one phantom."""
    dataset = Dataset()
    _add_patient(dataset, phantom, patient)
    _add_study(dataset, phantom)
    _add_series(dataset, phantom)
    dataset.Manufacturer = MANUFACTURER
    _add_image(dataset, phantom, position)

    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


def _add_patient(dataset: Dataset, phantom: Phantom, patient: _Patient) -> None:
    dataset.PatientName = f"Phantom^{patient.number:04d}"
    dataset.PatientID = phantom.patient_id
    dataset.PatientBirthDate = ""
    dataset.PatientSex = patient.sex
    dataset.PatientAge = f"{int(patient.age):03d}Y"


def _add_study(dataset: Dataset, phantom: Phantom) -> None:
    dataset.StudyInstanceUID = _uid("study", phantom.patient_id)
    dataset.StudyDate = STUDY_DATE
    dataset.StudyTime = STUDY_TIME
    dataset.AccessionNumber = ""
    dataset.ReferringPhysicianName = ""
    dataset.StudyID = "1"
    dataset.StudyDescription = f"{phantom.body_part.upper()} 2 VIEWS"


def _add_series(dataset: Dataset, phantom: Phantom) -> None:
    dataset.Modality = "DX"
    dataset.SeriesInstanceUID = _uid("series", phantom.patient_id, phantom.view)
    dataset.SeriesNumber = PROJECTIONS[phantom.view]
    dataset.SeriesDescription = f"{phantom.body_part.upper()} {VIEW_NAMES[phantom.view]}"
    dataset.BodyPartExamined = phantom.body_part.upper()
    # NOTE: LAT is not a Defined Term of View Position in PS3.3, which names lateral views by the
    # patient side (LL, RL). It is written because inference.anatomy reads LAT as a lateral view.
    dataset.ViewPosition = phantom.view
    dataset.Laterality = phantom.laterality
    dataset.PresentationIntentType = "FOR PRESENTATION"


def _add_image(dataset: Dataset, phantom: Phantom, position: int) -> None:
    dataset.SOPClassUID = DX_FOR_PRESENTATION
    dataset.SOPInstanceUID = _uid("image", phantom.patient_id, phantom.view, str(position))
    dataset.InstanceNumber = position + 1
    dataset.ImageType = ["DERIVED", "PRIMARY"]
    dataset.ImageLaterality = phantom.laterality
    dataset.BurnedInAnnotation = "YES"  # the side marker drawn into every phantom
    dataset.ContentDate = STUDY_DATE
    dataset.ContentTime = STUDY_TIME

    pixels = np.rint(np.clip(phantom.image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.RescaleIntercept = 0
    dataset.RescaleSlope = 1
    dataset.RescaleType = "US"
    # The LINEAR window with center 32768 and width 65536 maps 0 to 0 and 65535 to 1.
    dataset.WindowCenter = 32768
    dataset.WindowWidth = 65536
    dataset.PixelData = pixels.tobytes()


def _uid(*parts: str) -> UID:
    """Return a UID under 2.25 made from a name-based UUID of ``parts``, so the same parts give the same UID.

    pydicom 3.0.2's ``generate_uid(prefix=None)`` ignores its entropy sources and returns a random
    UUID, so it cannot make repeatable UIDs under 2.25.
    """
    return UID(f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(parts)).int}")
