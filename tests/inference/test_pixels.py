"""Every DICOM file in ../shared/data/dicom through the pixel pipeline, with a checked outcome."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from inference.pixels import PixelError, display_image
from inference.preprocess import model_input
from tests.factories import dx_from_pixels, new_study, shared_file

DECODED = {
    "CR_MONO1_10bit_JPEGLossless_ModalityLUTSeq_UTF8_fodicom.dcm": (1576, 1976),
    "CR_chest_PA_MONO1_15bit_J2K_lossy_RG1_J2KI.dcm": (1955, 1841),
    "CR_cspine_MONO1_12bit_16x16_pydicom_CR1.dcm": (16, 16),
    "CR_cspine_MONO1_12bit_16x16_pydicom_CR2.dcm": (16, 16),
    "CR_extremity_AP_MONO1_10bit_J2K_lossy_RG3_J2KI.dcm": (1760, 1760),
    "OT_32x32_Japanese_ISO2022IR87_chrH31.dcm": (32, 32),
    "OT_8bit_VOILUTSequence_vlut_04.dcm": (512, 512),
}


@pytest.mark.parametrize("name", sorted(DECODED))
def test_shared_file_decodes(name: str) -> None:
    image = display_image(pydicom.dcmread(shared_file(f"dicom/{name}")))

    assert image.shape == DECODED[name]
    assert image.dtype == np.float32
    assert 0.0 <= float(image.min()) <= float(image.max()) <= 1.0


def test_missing_pixel_data_refused() -> None:
    dataset = pydicom.dcmread(shared_file("dicom/CR_chest_MONO1_Korean_ISO2022IR149_nopixels_chrKoreanMulti.dcm"))

    with pytest.raises(PixelError, match=r"Pixel Data \(7FE0,0010\) is missing"):
        display_image(dataset)


def test_monochrome1_extremity_bone_bright() -> None:
    # The lower leg CR: the tibial shaft lies at 45-50 % of the width, with open air at 29-32 %
    # inside the collimated field (the collimator edges are white by design).
    image = display_image(pydicom.dcmread(shared_file("dicom/CR_extremity_AP_MONO1_10bit_J2K_lossy_RG3_J2KI.dcm")))
    rows, columns = image.shape
    top = slice(rows // 20, rows // 5)

    tibia = image[top, int(columns * 0.45) : int(columns * 0.50)].mean()
    air = image[top, int(columns * 0.29) : int(columns * 0.32)].mean()
    assert tibia > air + 0.3


def test_monochrome1_inverts_monochrome2() -> None:
    pixels = np.tile(np.arange(256, dtype=np.uint16) * 16, (8, 1))
    normal = dx_from_pixels(pixels, new_study())
    inverted = dx_from_pixels(pixels, new_study())
    inverted.PhotometricInterpretation = "MONOCHROME1"

    assert np.allclose(display_image(inverted), 1.0 - display_image(normal), atol=1e-6)


def test_linear_window_matches_standard() -> None:
    # PS3.3 C.11.2.1.2.1: center 2048, width 4096 maps 0 to the bottom and 4095 to the top.
    pixels = np.array([[0, 2048, 4095]], dtype=np.uint16)
    dataset = dx_from_pixels(pixels, new_study())
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096

    image = display_image(dataset)

    assert image[0, 0] == pytest.approx(0.0)
    assert image[0, 1] == pytest.approx(0.5, abs=1e-3)
    assert image[0, 2] == pytest.approx(1.0)


def test_first_of_several_windows_used() -> None:
    pixels = np.array([[1000, 1500, 2000]], dtype=np.uint16)
    dataset = dx_from_pixels(pixels, new_study())
    dataset.WindowCenter = [1500, 0]
    dataset.WindowWidth = [1001, 10]

    image = display_image(dataset)

    assert image[0, 1] == pytest.approx(0.5, abs=1e-3)


def test_multiframe_refused() -> None:
    dataset = dx_from_pixels(np.zeros((8, 8), dtype=np.uint16), new_study())
    dataset.NumberOfFrames = 2

    with pytest.raises(PixelError, match=r"Number of Frames \(0028,0008\) is 2"):
        display_image(dataset)


def test_letterbox_keeps_aspect() -> None:
    image = np.zeros((100, 50), dtype=np.float32)
    image[:, :] = 1.0

    pixels, geometry = model_input(image, 64)

    assert pixels.shape == (64, 64)
    assert geometry.pad_x == 16
    assert pixels[:, :10].max() == 0
    assert pixels[:, 20:40].min() > 0
    assert geometry.to_source(16, 0) == (0.0, 0.0)
