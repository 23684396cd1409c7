"""Display pixels from a DICOM radiograph, in the order PS3.3 C.11 sets for a grayscale pipeline.

Modality LUT (Rescale Slope/Intercept or the Modality LUT Sequence), then VOI LUT (the VOI LUT
Sequence, or the first Window Center/Width), then MONOCHROME1 inversion. Values stay float until
the caller turns them into model input.
"""
from __future__ import annotations

import logging

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut

logger = logging.getLogger(__name__)


class PixelError(ValueError):
    """The dataset has no pixels a radiograph reading can use; the message says why."""


def display_image(dataset: Dataset) -> np.ndarray:
    """Return the radiograph as float32 in [0, 1], bone bright, at the source resolution.

    Reads (0028,0002) SamplesPerPixel, (0028,0004) PhotometricInterpretation, (0028,0008)
    NumberOfFrames, (0028,1052)/(0028,1053) rescale or (0028,3000) Modality LUT Sequence, and
    (0028,1050)/(0028,1051) window or (0028,3010) VOI LUT Sequence.

    Raises
    ------
    PixelError
        When Pixel Data is missing, cannot be decoded, or has more than one frame.
    """
    if "PixelData" not in dataset:
        raise PixelError("Pixel Data (7FE0,0010) is missing")

    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise PixelError(f"Number of Frames (0028,0008) is {frames}; only single-frame radiographs are read")

    try:
        stored = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for codec failures
        syntax = dataset.file_meta.get("TransferSyntaxUID", "unknown") if "file_meta" in dataset else "unknown"
        raise PixelError(f"Pixel Data could not be decoded (transfer syntax {syntax}): {error}") from error

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return _colour_to_grey(stored, photometric)

    values = apply_modality_lut(stored, dataset).astype(np.float64)
    image = _apply_window(values, dataset)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32)


def _apply_window(values: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Apply the VOI transform and return values in [0, 1]."""
    if "VOILUTSequence" in dataset:
        return _apply_voi_lut_sequence(values, dataset)

    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        center = float(_first(dataset.WindowCenter))
        width = float(_first(dataset.WindowWidth))
        function = str(dataset.get("VOILUTFunction", "LINEAR")).strip() or "LINEAR"
        if width > 0:
            return _window(values, center, width, function)
        logger.warning("Window Width (0028,1051) %s is not positive; windowing by percentiles", width)

    return _percentile_window(values)


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window Center/Width as PS3.3 C.11.2.1.2 defines it, with the output range mapped to [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))

    if function == "LINEAR_EXACT":
        low, high = center - width / 2, center + width / 2
    else:
        if function != "LINEAR":
            logger.warning("VOI LUT Function (0028,1056) %r is unknown; applying LINEAR", function)
        if width < 1:
            raise PixelError(f"Window Width (0028,1051) {width} is below 1, which LINEAR does not allow")
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2

    if high <= low:
        return (values > low).astype(np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _apply_voi_lut_sequence(values: np.ndarray, dataset: Dataset) -> np.ndarray:
    item = dataset.VOILUTSequence[0]
    descriptor = [int(value) for value in item.LUTDescriptor]
    entries, first_mapped = descriptor[0] or 65536, descriptor[1]
    table = np.asarray(item.LUTData, dtype=np.float64).ravel()[:entries]

    # Inputs below the first mapped value take the first entry, above the last the last (C.11.2.1.1).
    index = np.clip(np.rint(values).astype(np.int64) - first_mapped, 0, len(table) - 1)
    mapped = table[index]
    top = float(2 ** descriptor[2] - 1) if descriptor[2] else float(table.max())
    return np.clip(mapped / max(top, 1.0), 0.0, 1.0)


def _percentile_window(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _first(value: object) -> object:
    """Return the first of a multi-valued element such as several Window Centers."""
    if isinstance(value, (MultiValue, list, tuple)):
        return value[0]
    return value


def _colour_to_grey(stored: np.ndarray, photometric: str) -> np.ndarray:
    # pydicom converts YBR to RGB by default when decoding, so both arrive as RGB here.
    if stored.ndim != 3 or stored.shape[-1] != 3:
        raise PixelError(f"Photometric Interpretation {photometric} with array shape {stored.shape} is not supported")

    weights = np.array([0.299, 0.587, 0.114])
    grey = stored.astype(np.float64) @ weights
    return (grey / max(float(grey.max()), 1.0)).astype(np.float32)
