"""Test inputs built from the real images in ../shared/data, read in place and never copied."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

WRIST_FRACTURE_PNG = "grazpedwri_dx_fractures/images/0003_0662359226_01_WRI-R1_M011.png"
WRIST_METAL_PNG = "grazpedwri_dx_fractures/images/3799_0949300875_03_WRI-L1_M010.png"
WRIST_NORMAL_PNGS = (
    "grazpedwri_dx_sample/images/0001_1297860395_01_WRI-L1_M014.png",
    "grazpedwri_dx_sample/images/0004_0542630449_01_WRI-L1_M003.png",
)
CHEST_CR = "dicom/CR_chest_PA_MONO1_15bit_J2K_lossy_RG1_J2KI.dcm"


def shared_data_dir() -> Path:
    """Locate ../shared/data beside the checkout, or skip (fail in CI, where it must exist)."""
    configured = os.environ.get("PEDFRAC_SHARED_DATA")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"
    if folder.is_dir():
        return folder

    if os.environ.get("CI") == "true":
        pytest.fail(f"shared data folder {folder} not found, and CI must run the tests that need it")
    pytest.skip(f"shared data folder {folder} not found; set PEDFRAC_SHARED_DATA to run this test")


def shared_file(relative: str) -> Path:
    return shared_data_dir() / relative


def read_png16(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return pixels


def new_study(*, patient_name: str = "Test^Wrist", patient_id: str = "PF0001", charset: str | list[str] = "ISO_IR 192") -> Dataset:
    """Patient and study attributes shared by every image of one test study."""
    study = Dataset()
    study.SpecificCharacterSet = charset
    study.PatientName = patient_name
    study.PatientID = patient_id
    study.PatientBirthDate = "20140101"
    study.PatientSex = "M"
    study.StudyInstanceUID = generate_uid(prefix=None)
    study.StudyDate = "20261204"
    study.StudyTime = "101500"
    study.AccessionNumber = "ACC0001"
    study.ReferringPhysicianName = ""
    study.StudyID = "1"
    study.StudyDescription = "WRIST 2 VIEWS"
    return study


def dx_from_pixels(
    pixels: np.ndarray,
    study: Dataset,
    *,
    body_part: str = "WRIST",
    view_position: str = "AP",
    laterality: str = "R",
    series_description: str = "",
    series_number: int = 1,
) -> Dataset:
    """Wrap a 16-bit (or 8-bit) grey array as a DX For Presentation image of ``study``."""
    if pixels.ndim != 2:
        raise ValueError(f"expected a grey image, found shape {pixels.shape}")

    ds = Dataset()
    ds.update(study)
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = generate_uid(prefix=None)
    ds.Modality = "DX"
    ds.SeriesInstanceUID = generate_uid(prefix=None)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description or f"{body_part} {view_position}"
    ds.InstanceNumber = 1
    ds.Manufacturer = "pedfrac test factory"
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view_position
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.PatientOrientation = ["A", "R"] if laterality == "R" else ["P", "L"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"

    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = float(np.percentile(pixels, 50))
    ds.WindowWidth = float(max(1.0, np.percentile(pixels, 99.5) - np.percentile(pixels, 0.5)))
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def wrist_dx(relative_png: str, study: Dataset, **tags: str | int) -> Dataset:
    """A real GRAZPEDWRI-DX radiograph from ../shared/data as a DX image of ``study``."""
    return dx_from_pixels(read_png16(shared_file(relative_png)), study, **tags)


def ct_slice(study: Dataset) -> Dataset:
    """A small CT image of ``study``: an object the service must store but never read."""
    ds = Dataset()
    ds.update(study)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid(prefix=None)
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid(prefix=None)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "HEAD"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = np.zeros((64, 64), dtype=np.int16).tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def phantom_dx(study: Dataset, *, body_part: str, view: str, laterality: str, fracture: bool, seed: int) -> Dataset:
    """A synthetic radiograph from the project's phantom generator, as a 12-bit DX image of ``study``."""
    from inference.phantoms import generate_phantom

    phantom = generate_phantom(np.random.default_rng(seed), body_part=body_part, view=view,
                               laterality=laterality, fracture=fracture)
    pixels = np.rint(phantom.image * 4095).astype(np.uint16)
    dicom_view = "AP" if view == "AP" else "LATERAL"
    dataset = dx_from_pixels(pixels, study, body_part=body_part.upper(), view_position="AP" if view == "AP" else "",
                             laterality=laterality, series_description=f"{body_part.upper()} {dicom_view}")
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.Manufacturer = "pedfrac phantom generator"
    return dataset
