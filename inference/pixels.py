"""Display pixels from a DICOM radiograph, in the order PS3.3 C.11 sets for a grayscale pipeline.

Modality LUT (Rescale Slope/Intercept or the Modality LUT Sequence), then VOI LUT (the VOI LUT
Sequence, or the first Window Center/Width), then MONOCHROME1 inversion. Colour images (RGB, YBR,
PALETTE COLOR) are converted to grey instead, because PS3.3 defines no VOI for them. Values stay
float until the caller turns them into model input. Every transform applied is recorded as a
:class:`~inference.findings.ProcessingStep` when the caller passes a list for them.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, get_decoder, pixel_array
from pydicom.uid import UID

from inference.findings import ProcessingStep

logger = logging.getLogger(__name__)

GREY = ("MONOCHROME1", "MONOCHROME2")
# Photometric Interpretations that pydicom 3.0.2 returns as RGB: YBR_FULL and YBR_FULL_422 are
# converted while decoding, and the JPEG 2000 decoders undo YBR_ICT and YBR_RCT themselves.
RGB_LIKE = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
# ITU-R BT.601 luma weights, the Y of DICOM's YBR_FULL (PS3.3 C.7.6.3.1.2).
LUMA = np.array([0.299, 0.587, 0.114])


class PixelError(ValueError):
    """The dataset has no pixels a radiograph reading can use; the message gives the reason."""


def number_of_frames(dataset: Dataset) -> int:
    """Return (0028,0008) NumberOfFrames, 1 when absent or empty.

    Raises
    ------
    PixelError
        When the value is not a positive integer.
    """
    value = dataset.get("NumberOfFrames", 1)
    try:
        frames = int(value if value not in (None, "") else 1)
    except (TypeError, ValueError) as error:
        raise PixelError(f"Number of Frames (0028,0008) {value!r} is not an integer") from error
    if frames < 1:
        raise PixelError(f"Number of Frames (0028,0008) is {frames}, expected 1 or more")
    return frames


def display_image(dataset: Dataset, *, frame: int | None = None,
                  steps: list[ProcessingStep] | None = None) -> np.ndarray:
    """Return one frame of the radiograph as float32 in [0, 1], bone bright, at the source resolution.

    Reads (7FE0,0010) PixelData, (0002,0010) TransferSyntaxUID, (0028,0002) SamplesPerPixel,
    (0028,0004) PhotometricInterpretation, (0028,0008) NumberOfFrames, (0028,0100) BitsAllocated,
    (0028,0101) BitsStored, (0028,0103) PixelRepresentation, (0028,1052) RescaleIntercept,
    (0028,1053) RescaleSlope, (0028,3000) ModalityLUTSequence, (0028,1050) WindowCenter,
    (0028,1051) WindowWidth, (0028,1056) VOILUTFunction, (0028,3010) VOILUTSequence and, for
    PALETTE COLOR, the palette colour lookup tables.

    Parameters
    ----------
    dataset
        The image. It is not changed.
    frame
        0-based frame to read. None reads a single-frame image and rejects a multi-frame one.
    steps
        When given, one :class:`~inference.findings.ProcessingStep` per transform is appended,
        with the parameters that reproduce it.

    Raises
    ------
    PixelError
        When Pixel Data is missing or cannot be decoded (the message names the transfer syntax and
        what to install), the frame does not exist, or the Photometric Interpretation is not one
        this pipeline converts.
    """
    record = steps if steps is not None else []
    stored = decode_stored(dataset, frame, record)

    photometric = _photometric(dataset)
    if photometric not in GREY:
        image = _colour_to_grey(stored, dataset, photometric, record)
        return image.astype(np.float32)

    values = modality_values(stored, dataset, record)
    image = voi_values(values, dataset, record)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
        record.append(ProcessingStep.of("inversion", reason="MONOCHROME1: minimum value is white"))
    return image.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Decoding.


def decode_stored(dataset: Dataset, frame: int | None = None, record: list[ProcessingStep] | None = None) -> np.ndarray:
    """Decode one frame of (7FE0,0010) PixelData into stored values.

    pydicom masks the unused high bits above (0028,0101) BitsStored and sign-extends values when
    (0028,0103) PixelRepresentation is 1. A missing (0028,0004) PhotometricInterpretation is read
    as MONOCHROME2 for one sample per pixel and RGB for three.

    Raises
    ------
    PixelError
        As :func:`display_image` does.
    """
    record = [] if record is None else record
    if "PixelData" not in dataset:
        other = next((keyword for keyword in ("FloatPixelData", "DoubleFloatPixelData") if keyword in dataset), None)
        if other is not None:
            raise PixelError(f"{other} contains the image, but only integer Pixel Data (7FE0,0010) is read")
        raise PixelError("Pixel Data (7FE0,0010) is missing")

    frames = number_of_frames(dataset)
    if frame is None and frames != 1:
        raise PixelError(f"Number of Frames (0028,0008) is {frames}; only single-frame radiographs are read "
                         "unless a frame is chosen")
    if frame is not None and not 0 <= frame < frames:
        raise PixelError(f"frame {frame} does not exist: Number of Frames (0028,0008) is {frames}")

    syntax = _transfer_syntax(dataset)
    _check_decoder(syntax)
    options = {} if "PhotometricInterpretation" in dataset else {"photometric_interpretation": _photometric(dataset)}
    try:
        stored = pixel_array(dataset, index=frame if frames > 1 else None, **options)
    except Exception as error:  # noqa: BLE001 - pydicom's decoders raise many types for bad data
        raise PixelError(f"Pixel Data (7FE0,0010) could not be decoded (transfer syntax {_name(syntax)}): "
                         f"{type(error).__name__}: {error}") from error

    record.append(ProcessingStep.of(
        "decode", transfer_syntax=str(syntax), rows=int(stored.shape[0]), columns=int(stored.shape[1]),
        bits_allocated=_int(dataset, "BitsAllocated"), bits_stored=_int(dataset, "BitsStored"),
        pixel_representation=_int(dataset, "PixelRepresentation"), photometric=_photometric(dataset),
        frame=frame if frames > 1 else None, frames=frames,
    ))
    return stored


def _transfer_syntax(dataset: Dataset) -> UID:
    file_meta = getattr(dataset, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is None:
        raise PixelError("Transfer Syntax UID (0002,0010) is missing from the file meta information, so the "
                         "Pixel Data encoding is unknown")
    return UID(str(syntax))


def _check_decoder(syntax: UID) -> None:
    """Raise a PixelError naming the transfer syntax when no installed package decodes it."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise PixelError(f"Pixel Data (7FE0,0010) in transfer syntax {_name(syntax)} cannot be decoded: "
                         "pydicom has no decoder for it") from error

    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise PixelError(f"Pixel Data (7FE0,0010) in transfer syntax {_name(syntax)} cannot be decoded: no decoder "
                         f"is installed ({missing}); install pylibjpeg with its libjpeg and openjpeg plugins, "
                         "pyjpegls or python-gdcm")


def _name(syntax: UID) -> str:
    return f"{syntax.name} ({syntax})" if syntax.is_transfer_syntax else str(syntax)


def _photometric(dataset: Dataset) -> str:
    """Return (0028,0004) PhotometricInterpretation, or the one a missing value most likely means."""
    value = str(dataset.get("PhotometricInterpretation", "") or "").strip().upper()
    if value:
        return value
    return "MONOCHROME2" if _int(dataset, "SamplesPerPixel", 1) == 1 else "RGB"


def _int(dataset: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = dataset.get(keyword, default)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


# ----------------------------------------------------------------------------------------------
# Modality LUT, PS3.3 C.11.1.


def modality_values(stored: np.ndarray, dataset: Dataset, record: list[ProcessingStep] | None = None) -> np.ndarray:
    """Map stored values to modality values (PS3.3 C.11.1), as float64.

    Reads (0028,3000) ModalityLUTSequence, else (0028,1053) RescaleSlope and (0028,1052)
    RescaleIntercept (slope 1 and intercept 0 when absent, and slope 1 when it is 0 or not a
    number). PS3.3 allows only one of the two; when a file has both, the sequence is applied, as
    pydicom 3.0.2's ``apply_modality_lut`` does.
    """
    record = [] if record is None else record
    values = stored.astype(np.float64)
    sequence = dataset.get("ModalityLUTSequence")
    if sequence:
        table = _LookupTable.read(sequence[0], dataset, signed_input=_int(dataset, "PixelRepresentation", 0) == 1)
        record.append(ProcessingStep.of("modality LUT", source="ModalityLUTSequence", **table.parameters()))
        return table.apply(values)

    slope = _number(dataset, "RescaleSlope", 1.0)
    intercept = _number(dataset, "RescaleIntercept", 0.0)
    if slope == 0.0:
        logger.warning("Rescale Slope (0028,1053) is 0 in %s; applying slope 1", dataset.get("SOPInstanceUID"))
        slope = 1.0
    record.append(ProcessingStep.of("modality LUT", source="rescale", slope=slope, intercept=intercept))
    return values * slope + intercept


def _number(dataset: Dataset, keyword: str, default: float) -> float:
    """Return a finite number from a DS/IS attribute (the first of several), else ``default``."""
    value = _first(dataset.get(keyword, default))
    try:
        number = float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


class _LookupTable:
    """A Modality or VOI LUT item: (0028,3002) LUTDescriptor and (0028,3006) LUTData (PS3.3 C.11.1.1)."""

    def __init__(self, table: np.ndarray, first_mapped: int, bits: int) -> None:
        self.table = table
        self.first_mapped = first_mapped
        self.bits = bits

    @classmethod
    def read(cls, item: Dataset, dataset: Dataset, *, signed_input: bool) -> _LookupTable:
        descriptor = [int(value) for value in item.get("LUTDescriptor", [])]
        if len(descriptor) != 3 or "LUTData" not in item:
            raise PixelError("LUT Descriptor (0028,3002) with 3 values and LUT Data (0028,3006) are required in a "
                             f"LUT item, found a descriptor of {len(descriptor)} values")

        entries = descriptor[0] or 65536
        # The first value mapped is US or SS like the pixel data, so a signed image stores it as SS.
        first_mapped = descriptor[1] - 65536 if signed_input and descriptor[1] > 32767 else descriptor[1]
        table = _lut_data(item, dataset)[:entries]
        if table.size == 0:
            raise PixelError("LUT Data (0028,3006) is empty")
        return cls(table.astype(np.float64), first_mapped, descriptor[2])

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Look values up; inputs below the first mapped value take the first entry, above the last the last."""
        index = np.clip(np.floor(values).astype(np.int64) - self.first_mapped, 0, len(self.table) - 1)
        return self.table[index]

    @property
    def top(self) -> float:
        """The largest output value: 2**bits - 1, or the largest entry when an entry exceeds that."""
        declared = float(2**self.bits - 1) if 1 <= self.bits <= 16 else 0.0
        return max(declared, float(self.table.max()), 1.0)

    def parameters(self) -> dict[str, int]:
        return {"entries": len(self.table), "first_mapped": self.first_mapped, "bits": self.bits}


def _lut_data(item: Dataset, dataset: Dataset) -> np.ndarray:
    """Return (0028,3006) LUTData as integers; OW data arrives as bytes in the dataset's byte order."""
    value = item.LUTData
    if isinstance(value, bytes | bytearray):
        little = True
        file_meta = getattr(dataset, "file_meta", None)
        syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
        if syntax is not None and UID(str(syntax)).is_transfer_syntax:
            little = UID(str(syntax)).is_little_endian
        return np.frombuffer(bytes(value)[: len(value) // 2 * 2], dtype="<u2" if little else ">u2").astype(np.int64)
    if isinstance(value, int):
        return np.array([value], dtype=np.int64)
    return np.asarray(list(value), dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# VOI LUT, PS3.3 C.11.2.


def voi_values(values: np.ndarray, dataset: Dataset, record: list[ProcessingStep] | None = None) -> np.ndarray:
    """Apply the VOI transform (PS3.3 C.11.2) to modality values and return them in [0, 1].

    Reads the first item of (0028,3010) VOILUTSequence, else the first (0028,1050) WindowCenter and
    (0028,1051) WindowWidth with (0028,1056) VOILUTFunction (LINEAR, LINEAR_EXACT or SIGMOID;
    another function is applied as LINEAR). Without a usable VOI the values are windowed between
    their 0.5th and 99.5th percentiles. 0 is the minimum displayed value; MONOCHROME1 inversion
    comes after this step.
    """
    record = [] if record is None else record
    sequence = dataset.get("VOILUTSequence")
    if sequence:
        table = _LookupTable.read(sequence[0], dataset, signed_input=bool(values.min() < 0))
        record.append(ProcessingStep.of("VOI LUT", source="VOILUTSequence", item=1, items=len(sequence),
                                        **table.parameters()))
        return np.clip(table.apply(values) / table.top, 0.0, 1.0)

    centers, widths = _values(dataset, "WindowCenter"), _values(dataset, "WindowWidth")
    if centers and widths:
        center, width = centers[0], widths[0]
        function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            logger.warning("VOI LUT Function (0028,1056) %r is unknown in %s; applying LINEAR", function,
                           dataset.get("SOPInstanceUID"))
            function = "LINEAR"
        valid = math.isfinite(width) and (width >= 1 if function == "LINEAR" else width > 0)
        if math.isfinite(center) and valid:
            record.append(ProcessingStep.of("VOI LUT", source="window", center=center, width=width, function=function,
                                            item=1, items=min(len(centers), len(widths))))
            return _window(values, center, width, function)
        logger.warning("Window Width (0028,1051) %s is invalid for %s in %s; windowing by percentiles", width,
                       function, dataset.get("SOPInstanceUID"))

    return _percentile_window(values, record)


def _values(dataset: Dataset, keyword: str) -> list[float]:
    """Return the numbers of a multi-valued DS attribute such as Window Center; empty when absent or invalid."""
    value = dataset.get(keyword)
    if value in (None, ""):
        return []
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        return [float(item) for item in items]
    except (TypeError, ValueError):
        return []


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window Center/Width as PS3.3 C.11.2.1.2 defines it, with the output range mapped to [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - center) / width, -700.0, 700.0)))

    if function == "LINEAR_EXACT":
        low, high = center - width / 2, center + width / 2
    else:
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2

    if high <= low:
        return (values > low).astype(np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _percentile_window(values: np.ndarray, record: list[ProcessingStep]) -> np.ndarray:
    """Window between the 0.5th and 99.5th percentiles, for images without a usable VOI."""
    finite = values[np.isfinite(values)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 0.0)
    record.append(ProcessingStep.of("VOI LUT", source="percentiles 0.5 and 99.5", low=float(low), high=float(high)))
    if not high > low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip(np.nan_to_num((values - low) / (high - low), nan=0.0), 0.0, 1.0)


def _first(value: object) -> object:
    """Return the first of a multi-valued element such as several Window Centers."""
    if isinstance(value, MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


# ----------------------------------------------------------------------------------------------
# Colour images.


def _colour_to_grey(stored: np.ndarray, dataset: Dataset, photometric: str, record: list[ProcessingStep]) -> np.ndarray:
    """Convert RGB, YBR or PALETTE COLOR pixels to grey in [0, 1] by their luma (BT.601)."""
    if photometric == "PALETTE COLOR":
        if stored.ndim != 2:
            raise PixelError(f"PALETTE COLOR image has array shape {stored.shape}; expected one sample per pixel")
        try:
            colours = apply_color_lut(stored, dataset)
        except (AttributeError, ValueError, KeyError) as error:
            raise PixelError(f"PALETTE COLOR lookup tables (0028,1101)-(0028,1203) could not be applied: {error}") from error
        top = 255.0 if colours.dtype == np.uint8 else 65535.0
        grey = colours.astype(np.float64) @ LUMA / top
        record.append(ProcessingStep.of("colour to grey", photometric=photometric, weights="BT.601", full_scale=top))
        return np.clip(grey, 0.0, 1.0)

    if photometric not in RGB_LIKE or stored.ndim != 3 or stored.shape[-1] != 3:
        raise PixelError(f"Photometric Interpretation (0028,0004) {photometric} with array shape {stored.shape} is "
                         f"not converted to grey; expected MONOCHROME1, MONOCHROME2, PALETTE COLOR or one of "
                         f"{', '.join(RGB_LIKE)} with 3 samples per pixel")

    bits = _int(dataset, "BitsStored") or stored.dtype.itemsize * 8
    bits = min(max(bits, 1), stored.dtype.itemsize * 8)
    # Colour pixels are unsigned in PS3.3; a signed array is shifted so its range starts at 0.
    offset = 2.0 ** (bits - 1) if np.issubdtype(stored.dtype, np.signedinteger) else 0.0
    top = 2.0**bits - 1
    grey = (stored.astype(np.float64) + offset) @ LUMA / top
    record.append(ProcessingStep.of("colour to grey", photometric=photometric, weights="BT.601", full_scale=top,
                                    offset=offset))
    return np.clip(grey, 0.0, 1.0)
