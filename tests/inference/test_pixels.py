"""The pixel pipeline: every shared radiograph with a checked outcome, then reference values per step.

Known values at known positions come from the shared files (checked against pydicom 3.0.2's
``apply_modality_lut`` and ``apply_voi_lut``). Cases that no shared file covers are synthesized
with pydicom, as their docstrings state.
"""
from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGBaseline8Bit, JPEGLSLossless, generate_uid

from inference.pixels import PixelError, decode_stored, display_image, modality_values, voi_values
from inference.preprocess import model_input
from tests.factories import (
    WRIST_FRACTURE_PNG,
    WRIST_METAL_PNG,
    WRIST_NORMAL_PNGS,
    dx_from_pixels,
    new_study,
    shared_file,
    wrist_dx,
)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"

TEETH = "dicom/CR_MONO1_10bit_JPEGLossless_ModalityLUTSeq_UTF8_fodicom.dcm"
KOREAN = "dicom/CR_chest_MONO1_Korean_ISO2022IR149_nopixels_chrKoreanMulti.dcm"
CHEST = "dicom/CR_chest_PA_MONO1_15bit_J2K_lossy_RG1_J2KI.dcm"
CSPINE_LAT = "dicom/CR_cspine_MONO1_12bit_16x16_pydicom_CR1.dcm"
CSPINE_AP = "dicom/CR_cspine_MONO1_12bit_16x16_pydicom_CR2.dcm"
LOWER_LEG = "dicom/CR_extremity_AP_MONO1_10bit_J2K_lossy_RG3_J2KI.dcm"
JAPANESE = "dicom/OT_32x32_Japanese_ISO2022IR87_chrH31.dcm"
VOI_PATTERN = "dicom/OT_8bit_VOILUTSequence_vlut_04.dcm"

# Every shared DICOM file: the display shape, or the start of the reason it is rejected.
DICOM_OUTCOMES: dict[str, tuple[int, int] | str] = {
    TEETH: (1576, 1976),
    KOREAN: "Pixel Data (7FE0,0010) is missing",
    CHEST: (1955, 1841),
    CSPINE_LAT: (16, 16),
    CSPINE_AP: (16, 16),
    LOWER_LEG: (1760, 1760),
    JAPANESE: (32, 32),
    VOI_PATTERN: (512, 512),
}

# Bright and dark regions (row from, row to, column from, column to, as fractions of the image)
# that a correct grey-level orientation keeps in this order, by at least 0.2.
ORIENTATION = {
    TEETH: ((0.6, 0.72, 0.25, 0.75), (0.0, 0.3, 0.0, 1.0)),  # teeth and jaws, open air above the face
    CHEST: ((0.3, 0.5, 0.47, 0.53), (0.3, 0.5, 0.2, 0.3)),  # spine and mediastinum, right lung
    LOWER_LEG: ((0.05, 0.2, 0.45, 0.5), (0.05, 0.2, 0.29, 0.32)),  # tibial shaft, air inside the collimation
}
WRIST_PNGS = (WRIST_FRACTURE_PNG, WRIST_METAL_PNG, *WRIST_NORMAL_PNGS)


def region(image: np.ndarray, fractions: tuple[float, float, float, float]) -> float:
    rows, columns = image.shape
    r0, r1, c0, c1 = fractions
    return float(image[int(rows * r0) : int(rows * r1), int(columns * c0) : int(columns * c1)].mean())


def cr_dataset(pixels: np.ndarray, *, bits_stored: int = 12, signed: bool = False) -> Dataset:
    """A CR image around ``pixels`` (16 bits allocated), without window or LUT attributes."""
    dataset = Dataset()
    dataset.SOPClassUID = CR_IMAGE_STORAGE
    dataset.SOPInstanceUID = generate_uid(prefix=None)
    dataset.Modality = "CR"
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    dataset.BitsAllocated = 16
    dataset.BitsStored = bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 1 if signed else 0
    dataset.PixelData = np.ascontiguousarray(pixels.astype(np.int16 if signed else np.uint16)).tobytes()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    return dataset


# ----------------------------------------------------------------------------------------------
# Every shared file.


@pytest.mark.parametrize("name", sorted(DICOM_OUTCOMES))
def test_shared_dicom_outcome(name: str) -> None:
    dataset = pydicom.dcmread(shared_file(name))
    expected = DICOM_OUTCOMES[name]

    if isinstance(expected, str):
        with pytest.raises(PixelError, match=f"^{re.escape(expected)}"):
            display_image(dataset)
        return

    image = display_image(dataset)
    assert image.shape == expected
    assert image.dtype == np.float32
    assert 0.0 <= float(image.min()) <= float(image.max()) <= 1.0


@pytest.mark.parametrize("name", sorted(ORIENTATION))
def test_shared_monochrome1_bone_bright(name: str) -> None:
    image = display_image(pydicom.dcmread(shared_file(name)))
    bright, dark = ORIENTATION[name]

    assert region(image, bright) > region(image, dark) + 0.2


@pytest.mark.parametrize("relative", WRIST_PNGS)
def test_shared_wrist_png_outcome(relative: str) -> None:
    # The GRAZPEDWRI-DX PNGs are 16-bit MONOCHROME2 with bone bright; the forearm bones lie in the
    # lower middle, soft tissue or air at the side edges.
    dataset = wrist_dx(relative, new_study())

    image = display_image(dataset)

    assert image.shape == (dataset.Rows, dataset.Columns)
    bones = region(image, (0.6, 0.9, 0.3, 0.7))
    edges = (region(image, (0.6, 0.9, 0.0, 0.08)) + region(image, (0.6, 0.9, 0.92, 1.0))) / 2
    assert bones > edges + 0.1


@pytest.mark.parametrize("relative", WRIST_PNGS)
def test_shared_wrist_png_model_input(relative: str) -> None:
    image = display_image(wrist_dx(relative, new_study()))

    pixels, geometry = model_input(image, 384)

    assert pixels.shape == (384, 384)
    assert geometry.pad_y == 0
    assert geometry.pad_x > 0


# ----------------------------------------------------------------------------------------------
# Reference values per step, from shared files.


def test_rescale_values_cr1() -> None:
    # CR1: Rescale Slope 0.684, Intercept 200, window 1600/2800, MONOCHROME1.
    dataset = pydicom.dcmread(shared_file(CSPINE_LAT))
    stored = decode_stored(dataset)
    modality = modality_values(stored, dataset)
    voi = voi_values(modality, dataset)

    assert stored[0, 0] == 1994
    assert modality[0, 0] == pytest.approx(1994 * 0.684 + 200)
    assert voi[0, 0] == pytest.approx(0.48728, abs=1e-5)
    assert display_image(dataset)[0, 0] == pytest.approx(1 - 0.48728, abs=1e-5)


def test_modality_lut_sequence_values() -> None:
    # fo-dicom CR: a 1024-entry Modality LUT Sequence (OW data) beside Rescale 1/0; the sequence wins.
    dataset = pydicom.dcmread(shared_file(TEETH))
    stored = decode_stored(dataset)

    modality = modality_values(stored, dataset)

    assert (stored[788, 988], modality[788, 988]) == (345, 323.0)
    assert (stored[1000, 500], modality[1000, 500]) == (489, 521.0)
    assert np.array_equal(modality, pydicom.pixels.apply_modality_lut(stored, dataset))


def test_modality_lut_sequence_step_recorded() -> None:
    steps: list = []
    display_image(pydicom.dcmread(shared_file(TEETH)), steps=steps)

    names = [step.name for step in steps]
    assert names == ["decode", "modality LUT", "VOI LUT", "inversion"]
    assert steps[1].describe() == "modality LUT: source=ModalityLUTSequence, entries=1024, first_mapped=0, bits=16"
    assert steps[2].describe().startswith("VOI LUT: source=percentiles")


def test_voi_lut_sequence_values() -> None:
    # vlut_04: an 8-bit test pattern whose 256-entry, 16-bit VOI LUT maps v to v * 257.
    dataset = pydicom.dcmread(shared_file(VOI_PATTERN))
    stored = decode_stored(dataset)

    voi = voi_values(modality_values(stored, dataset), dataset)

    assert stored[0, 0] == 127
    assert voi[0, 0] == pytest.approx(127 * 257 / 65535)
    assert voi[256, 256] == pytest.approx(122 * 257 / 65535)
    assert voi[511, 511] == pytest.approx(1.0)


def test_window_values_lower_leg() -> None:
    # RG3: JPEG 2000 lossy, 10 of 16 bits, window 550/1024, MONOCHROME1.
    dataset = pydicom.dcmread(shared_file(LOWER_LEG))
    steps: list = []

    image = display_image(dataset, steps=steps)

    stored = decode_stored(dataset)
    assert stored[880, 880] == 306
    linear = (306 - (550 - 0.5 - 1023 / 2)) / 1023
    assert image[880, 880] == pytest.approx(1 - linear, abs=1e-6)
    assert steps[2].describe() == "VOI LUT: source=window, center=550, width=1024, function=LINEAR, item=1, items=1"


def test_japanese_ot_values_unchanged() -> None:
    # chrH31: 8-bit MONOCHROME2 without window; the percentile window spans 0 to 255 here.
    image = display_image(pydicom.dcmread(shared_file(JAPANESE)))

    assert image[0, 0] == pytest.approx(127 / 255)
    assert image[16, 16] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Windowing (PS3.3 C.11.2.1.2) on small synthesized DX images.


def test_linear_window_matches_standard() -> None:
    # PS3.3 C.11.2.1.2.1: center 2048, width 4096 maps 0 to the bottom and 4095 to the top.
    dataset = dx_from_pixels(np.array([[0, 2048, 4095]], dtype=np.uint16), new_study())
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096

    image = display_image(dataset)

    assert image[0, 0] == pytest.approx(0.0)
    assert image[0, 1] == pytest.approx(0.5, abs=1e-3)
    assert image[0, 2] == pytest.approx(1.0)


def test_linear_exact_window() -> None:
    dataset = dx_from_pixels(np.array([[1000, 1500, 2000]], dtype=np.uint16), new_study())
    dataset.WindowCenter, dataset.WindowWidth, dataset.VOILUTFunction = 1500, 1000, "LINEAR_EXACT"

    image = display_image(dataset)

    assert list(image[0]) == pytest.approx([0.0, 0.5, 1.0])


def test_sigmoid_window() -> None:
    # PS3.3 C.11.2.1.3.1: y = 1 / (1 + exp(-4 (x - c) / w)), scaled to the output range.
    dataset = dx_from_pixels(np.array([[1000, 1500, 2000]], dtype=np.uint16), new_study())
    dataset.WindowCenter, dataset.WindowWidth, dataset.VOILUTFunction = 1500, 1000, "SIGMOID"

    image = display_image(dataset)

    assert image[0, 0] == pytest.approx(1 / (1 + np.exp(2)), abs=1e-6)
    assert image[0, 1] == pytest.approx(0.5)
    assert image[0, 2] == pytest.approx(1 / (1 + np.exp(-2)), abs=1e-6)


def test_first_of_several_windows_used() -> None:
    dataset = dx_from_pixels(np.array([[1000, 1500, 2000]], dtype=np.uint16), new_study())
    dataset.WindowCenter = [1500, 0]
    dataset.WindowWidth = [1001, 10]

    image = display_image(dataset)

    assert image[0, 1] == pytest.approx(0.5, abs=1e-3)


def test_zero_window_width_falls_back() -> None:
    dataset = dx_from_pixels(np.array([[0, 100, 200, 300]], dtype=np.uint16), new_study())
    dataset.WindowCenter, dataset.WindowWidth = 100, 0
    steps: list = []

    image = display_image(dataset, steps=steps)

    assert steps[2].describe().startswith("VOI LUT: source=percentiles")
    assert image[0, 0] == pytest.approx(0.0)
    assert image[0, 3] == pytest.approx(1.0)


def test_monochrome1_inverts_monochrome2() -> None:
    pixels = np.tile(np.arange(256, dtype=np.uint16) * 16, (8, 1))
    normal = dx_from_pixels(pixels, new_study())
    inverted = dx_from_pixels(pixels, new_study())
    inverted.PhotometricInterpretation = "MONOCHROME1"

    assert np.allclose(display_image(inverted), 1.0 - display_image(normal), atol=1e-6)


def test_missing_photometric_read_as_monochrome2() -> None:
    dataset = dx_from_pixels(np.array([[0, 2048, 4095]], dtype=np.uint16), new_study())
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    del dataset.PhotometricInterpretation

    image = display_image(dataset)

    assert image[0, 2] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Synthesized cases that no shared file covers.


def test_voi_lut_sequence_on_12_bit_cr() -> None:
    """Synthesized: a 12-bit CR with rescale 2/-100 and a VOI LUT of 2048 entries from value 1024."""
    dataset = cr_dataset(np.array([[500, 612, 862, 4000]]))
    dataset.RescaleSlope, dataset.RescaleIntercept = 2, -100
    item = Dataset()
    item.LUTDescriptor = [2048, 1024, 12]
    item.LUTData = [min(2 * index, 4095) for index in range(2048)]
    dataset.VOILUTSequence = [item]

    image = display_image(dataset)

    # Modality values 900, 1124, 1624 and 7900: below the first mapped value, entries 100 and
    # 600, and beyond the last entry.
    assert image[0, 0] == pytest.approx(0.0)
    assert image[0, 1] == pytest.approx(200 / 4095)
    assert image[0, 2] == pytest.approx(1200 / 4095)
    assert image[0, 3] == pytest.approx(4094 / 4095)


def test_voi_lut_data_as_ow_bytes() -> None:
    """Synthesized: the same 12-bit CR whose LUT Data arrives as OW bytes, as implicit VR files give it."""
    dataset = cr_dataset(np.array([[1024, 1124]]))
    item = Dataset()
    item.LUTDescriptor = [2048, 1024, 12]
    item.add(DataElement(0x00283006, "OW", np.minimum(np.arange(2048) * 2, 4095).astype("<u2").tobytes()))
    dataset.VOILUTSequence = [item]

    image = display_image(dataset)

    assert image[0, 0] == pytest.approx(0.0)
    assert image[0, 1] == pytest.approx(200 / 4095)


def test_signed_16_bit_dx() -> None:
    """Synthesized: a signed 16-bit DX with window 0/2000, whose negative values are kept."""
    dataset = cr_dataset(np.array([[-1000, 0, 999, -32768]]), bits_stored=16, signed=True)
    dataset.WindowCenter, dataset.WindowWidth = 0, 2000

    stored = decode_stored(dataset)
    image = display_image(dataset)

    assert list(stored[0]) == [-1000, 0, 999, -32768]
    assert image[0, 0] == pytest.approx(0.0, abs=1e-3)
    assert image[0, 1] == pytest.approx(0.5, abs=1e-3)
    assert image[0, 2] == pytest.approx(1.0, abs=1e-3)
    assert image[0, 3] == pytest.approx(0.0)


def test_signed_12_bit_sign_extended() -> None:
    """Synthesized: a signed 12-bit image whose sign bit is bit 11, with the high bits clear."""
    dataset = cr_dataset(np.zeros((1, 2)), bits_stored=12, signed=True)
    dataset.PixelData = np.array([[0x0800, 0x07FF]], dtype=np.uint16).tobytes()

    assert list(decode_stored(dataset)[0]) == [-2048, 2047]


def test_unused_high_bits_masked() -> None:
    """Synthesized: a 12-bit image with junk in the four unused high bits (an overlay, say)."""
    dataset = cr_dataset(np.zeros((1, 2)))
    dataset.PixelData = np.array([[0xF123, 0x0FFF]], dtype=np.uint16).tobytes()

    assert list(decode_stored(dataset)[0]) == [0x123, 0xFFF]


def test_two_frame_image_read_by_frame() -> None:
    """Synthesized: a 2-frame image; each frame reads on its own, the whole is rejected without a frame."""
    frames = np.stack([np.full((4, 4), 100), np.full((4, 4), 3000)])
    dataset = cr_dataset(frames)
    dataset.NumberOfFrames = 2
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096

    first, second = display_image(dataset, frame=0), display_image(dataset, frame=1)

    assert first.shape == second.shape == (4, 4)
    assert float(first[0, 0]) < 0.1 < 0.7 < float(second[0, 0])
    with pytest.raises(PixelError, match=r"Number of Frames \(0028,0008\) is 2"):
        display_image(dataset)


def test_missing_frame_rejected() -> None:
    """Synthesized: a 2-frame image asked for its third frame."""
    dataset = cr_dataset(np.zeros((2, 4, 4)))
    dataset.NumberOfFrames = 2

    with pytest.raises(PixelError, match=r"frame 2 does not exist: Number of Frames \(0028,0008\) is 2"):
        display_image(dataset, frame=2)


def ycbcr_jpeg_secondary_capture(rgb: np.ndarray) -> Dataset:
    """Synthesized: a scanned-film style Secondary Capture, JPEG baseline with 4:2:2 YCbCr (YBR_FULL_422)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=95, subsampling=1)

    dataset = Dataset()
    dataset.SOPClassUID = SECONDARY_CAPTURE
    dataset.SOPInstanceUID = generate_uid(prefix=None)
    dataset.Modality = "OT"
    dataset.SamplesPerPixel = 3
    dataset.PhotometricInterpretation = "YBR_FULL_422"
    dataset.PlanarConfiguration = 0
    dataset.Rows, dataset.Columns = rgb.shape[:2]
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = encapsulate([buffer.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return dataset


def test_ybr_full_422_jpeg_to_grey() -> None:
    grey = np.tile(np.linspace(20, 235, 64).astype(np.uint8), (48, 1))
    dataset = ycbcr_jpeg_secondary_capture(np.repeat(grey[..., None], 3, axis=2))
    steps: list = []

    image = display_image(dataset, steps=steps)

    assert image.shape == (48, 64)
    assert np.abs(image * 255 - grey).mean() < 2.0
    assert steps[-1].name == "colour to grey"


def test_rgb_to_grey_luma() -> None:
    """Synthesized: a native RGB Secondary Capture with pure red, green and blue pixels."""
    dataset = ycbcr_jpeg_secondary_capture(np.zeros((2, 3, 3), dtype=np.uint8))
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.PhotometricInterpretation = "RGB"
    dataset.PixelData = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]] * 2, dtype=np.uint8).tobytes()

    image = display_image(dataset)

    assert list(image[0]) == pytest.approx([0.299, 0.587, 0.114], abs=1e-6)


def test_signed_rgb_stays_in_range() -> None:
    """Synthesized: RGB with Pixel Representation 1, which PS3.3 does not allow but modalities send."""
    dataset = ycbcr_jpeg_secondary_capture(np.zeros((1, 2, 3), dtype=np.uint8))
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.PhotometricInterpretation = "RGB"
    dataset.PixelRepresentation = 1
    dataset.PixelData = np.array([[[-128] * 3, [127] * 3]], dtype=np.int8).tobytes()

    image = display_image(dataset)

    assert list(image[0]) == pytest.approx([0.0, 1.0])


def test_palette_colour_to_grey() -> None:
    """Synthesized: PALETTE COLOR with a 4-entry, 16-bit grey palette."""
    dataset = cr_dataset(np.array([[0, 1, 2, 3]]), bits_stored=16)
    dataset.PhotometricInterpretation = "PALETTE COLOR"
    ramp = [0, 21845, 43690, 65535]
    for colour in ("Red", "Green", "Blue"):
        setattr(dataset, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 16])
        setattr(dataset, f"{colour}PaletteColorLookupTableData", np.array(ramp, dtype="<u2").tobytes())

    image = display_image(dataset)

    assert list(image[0]) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0], abs=1e-4)


def test_missing_pixel_data_rejected() -> None:
    dataset = pydicom.dcmread(shared_file(KOREAN))

    with pytest.raises(PixelError, match=r"Pixel Data \(7FE0,0010\) is missing"):
        display_image(dataset)


def test_float_pixel_data_rejected() -> None:
    """Synthesized: an image whose pixels are in Float Pixel Data (7FE0,0008)."""
    dataset = cr_dataset(np.zeros((2, 2)))
    del dataset.PixelData
    dataset.FloatPixelData = np.zeros(4, dtype=np.float32).tobytes()

    with pytest.raises(PixelError, match=r"FloatPixelData contains the image"):
        display_image(dataset)


def test_unknown_transfer_syntax_named() -> None:
    dataset = cr_dataset(np.zeros((2, 2)))
    dataset.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.10.1187.99.7"

    with pytest.raises(PixelError, match=r"transfer syntax 1\.2\.826\.0\.1\.3680043\.10\.1187\.99\.7 cannot be "
                                         r"decoded: pydicom has no decoder"):
        display_image(dataset)


def test_missing_codec_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Synthesized: JPEG-LS data while no JPEG-LS plugin is installed (the plugins are hidden)."""
    dataset = cr_dataset(np.zeros((2, 2)))
    dataset.file_meta.TransferSyntaxUID = JPEGLSLossless
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    monkeypatch.setattr(get_decoder(JPEGLSLossless), "_available", {})

    with pytest.raises(PixelError, match=r"JPEG-LS Lossless Image Compression \(1\.2\.840\.10008\.1\.2\.4\.80\) "
                                         r"cannot be decoded: no decoder is installed"):
        display_image(dataset)


def test_corrupt_codestream_named() -> None:
    """Synthesized: JPEG 2000 transfer syntax with bytes that are no codestream."""
    dataset = cr_dataset(np.zeros((8, 8)))
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    dataset.PixelData = encapsulate([b"not a codestream"])

    with pytest.raises(PixelError, match=r"could not be decoded \(transfer syntax JPEG 2000 Image Compression "
                                         r"\(Lossless Only\)"):
        display_image(dataset)


def test_steps_name_each_transform() -> None:
    dataset = pydicom.dcmread(shared_file(CSPINE_LAT))
    steps: list = []

    display_image(dataset, steps=steps)

    assert steps[0].describe() == ("decode: transfer_syntax=1.2.840.10008.1.2.1, rows=16, columns=16, "
                                   "bits_allocated=16, bits_stored=12, pixel_representation=0, "
                                   "photometric=MONOCHROME1, frames=1")
    assert steps[1].describe() == "modality LUT: source=rescale, slope=0.684, intercept=200"
    assert steps[3].describe() == "inversion: reason=MONOCHROME1: minimum value is white"


def test_letterbox_keeps_aspect() -> None:
    image = np.ones((100, 50), dtype=np.float32)

    pixels, geometry = model_input(image, 64)

    assert pixels.shape == (64, 64)
    assert geometry.pad_x == 16
    assert pixels[:, :10].max() == 0
    assert pixels[:, 20:40].min() > 0
    assert geometry.to_source(16, 0) == (0.0, 0.0)
