"""A real wrist radiograph encoded in every transfer syntax a PACS sends, decoded by the pixel pipeline.

The source is the GRAZPEDWRI-DX fracture radiograph, reduced to 256 rows and to 12 bits (8 bits
for JPEG baseline). The encoded files are synthesized here: pydicom's own encoders write RLE,
JPEG-LS and JPEG 2000, and dcmtk's ``dcmcjpeg`` writes the JPEG processes pydicom cannot encode
(those cases are skipped where dcmtk is not installed). Lossless syntaxes must give back the
stored values exactly; lossy ones within a small error.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from inference.pixels import decode_stored, display_image
from tests.factories import WRIST_FRACTURE_PNG, dx_from_pixels, new_study, read_png16, shared_file

ROWS = 256
# Largest mean absolute error a lossy syntax may leave, as a fraction of the stored range.
LOSSY_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def wrist_12_bit() -> np.ndarray:
    pixels = read_png16(shared_file(WRIST_FRACTURE_PNG))
    columns = round(pixels.shape[1] * ROWS / pixels.shape[0])
    small = cv2.resize(pixels, (columns, ROWS), interpolation=cv2.INTER_AREA)
    return (small >> 4).astype(np.uint16)


def source_dataset(pixels: np.ndarray) -> Dataset:
    dataset = dx_from_pixels(pixels, new_study(), view_position="AP", laterality="R")
    if pixels.dtype == np.uint16:
        dataset.BitsStored, dataset.HighBit = 12, 11
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    return dataset


def write_read(dataset: Dataset, path: Path) -> Dataset:
    dataset.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def dcmcjpeg(source: Dataset, option: str, folder: Path, *extra: str) -> Dataset:
    """Encode ``source`` with dcmtk's dcmcjpeg ``option`` and read the result back."""
    tool = shutil.which("dcmcjpeg")
    if tool is None:
        pytest.skip("dcmcjpeg is not installed; install the Debian package dcmtk")
    plain, encoded = folder / "plain.dcm", folder / "encoded.dcm"
    source.save_as(plain, enforce_file_format=True)
    subprocess.run([tool, option, *extra, str(plain), str(encoded)], check=True, capture_output=True, timeout=60)
    return pydicom.dcmread(encoded)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian],
                         ids=lambda uid: uid.name)
def test_uncompressed_syntax_exact(syntax: pydicom.uid.UID, wrist_12_bit: np.ndarray, tmp_path: Path) -> None:
    dataset = source_dataset(wrist_12_bit)
    dataset.file_meta.TransferSyntaxUID = syntax

    read = write_read(dataset, tmp_path / "image.dcm")

    assert read.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(decode_stored(read), wrist_12_bit)


def test_big_endian_exact(wrist_12_bit: np.ndarray, tmp_path: Path) -> None:
    dataset = source_dataset(wrist_12_bit)
    dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    dataset.PixelData = wrist_12_bit.astype(">u2").tobytes()

    read = write_read(dataset, tmp_path / "image.dcm")

    assert np.array_equal(decode_stored(read), wrist_12_bit)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda uid: uid.name)
def test_lossless_pydicom_encoded_exact(syntax: pydicom.uid.UID, wrist_12_bit: np.ndarray, tmp_path: Path) -> None:
    dataset = source_dataset(wrist_12_bit)
    dataset.compress(syntax)

    read = write_read(dataset, tmp_path / "image.dcm")

    assert read.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(decode_stored(read), wrist_12_bit)


@pytest.mark.parametrize(("syntax", "options"), [(JPEGLSNearLossless, {"jls_error": 3}),
                                                 (JPEG2000, {"j2k_cr": [15]})], ids=["JPEG-LS near", "JPEG 2000"])
def test_lossy_pydicom_encoded_close(syntax: pydicom.uid.UID, options: dict, wrist_12_bit: np.ndarray,
                                     tmp_path: Path) -> None:
    dataset = source_dataset(wrist_12_bit)
    dataset.compress(syntax, **options)

    read = write_read(dataset, tmp_path / "image.dcm")
    error = np.abs(decode_stored(read).astype(np.int32) - wrist_12_bit)

    assert read.file_meta.TransferSyntaxUID == syntax
    assert error.mean() < LOSSY_TOLERANCE * 4095
    assert display_image(read).shape == wrist_12_bit.shape


@pytest.mark.parametrize(("option", "syntax"), [("+e1", JPEGLosslessSV1), ("+el", JPEGLossless)],
                         ids=["process 14 SV1", "process 14 SV6"])
def test_jpeg_lossless_exact(option: str, syntax: pydicom.uid.UID, wrist_12_bit: np.ndarray, tmp_path: Path) -> None:
    read = dcmcjpeg(source_dataset(wrist_12_bit), option, tmp_path)

    assert read.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(decode_stored(read), wrist_12_bit)


def test_jpeg_extended_12_bit_close(wrist_12_bit: np.ndarray, tmp_path: Path) -> None:
    read = dcmcjpeg(source_dataset(wrist_12_bit), "+ee", tmp_path)
    error = np.abs(decode_stored(read).astype(np.int32) - wrist_12_bit)

    assert read.file_meta.TransferSyntaxUID == JPEGExtended12Bit
    assert error.mean() < LOSSY_TOLERANCE * 4095


def test_jpeg_baseline_8_bit_close(wrist_12_bit: np.ndarray, tmp_path: Path) -> None:
    pixels = (wrist_12_bit >> 4).astype(np.uint8)
    source = source_dataset(pixels)
    source.WindowCenter, source.WindowWidth = 128, 256

    read = dcmcjpeg(source, "+eb", tmp_path)
    error = np.abs(decode_stored(read).astype(np.int32) - pixels)

    assert read.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert error.mean() < LOSSY_TOLERANCE * 255
    assert display_image(read).shape == pixels.shape
