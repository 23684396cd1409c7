"""Checks on a received data set before it is stored: can it be decoded, and is it what it claims.

The C-STORE SCP calls :func:`check_dataset`; a problem carries the status to return (PS3.4 B.2.3)
and a reason that names attributes by tag and keyword but never quotes a value, because a value
may be a patient's name, id or birth date.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID

from inference.anatomy import RADIOGRAPH_CLASSES
from storage.archive import is_valid_uid

DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC210

MAX_SEQUENCE_DEPTH = 32
_UID_ATTRIBUTES = (
    ("StudyInstanceUID", "(0020,000D)"),
    ("SeriesInstanceUID", "(0020,000E)"),
    ("SOPInstanceUID", "(0008,0018)"),
    ("SOPClassUID", "(0008,0016)"),
)
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\"|b'[^']*')")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
# VRs that may have undefined length in explicit VR: sequences, encapsulated Pixel Data, and UN (PS3.5 7.1.2).
_UNDEFINED_ALLOWED = frozenset({b"SQ", b"OB", b"OW", b"UN"})
_ITEM, _ITEM_END, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)


@dataclass(frozen=True)
class DatasetProblem:
    """Why a data set is rejected, and the C-STORE status that reports it."""

    status: int
    reason: str


class _Undecodable(ValueError):
    pass


def describe_error(error: BaseException, limit: int = 200) -> str:
    """Describe an exception for logs and the audit trail, with quoted values withheld."""
    text = _QUOTED.sub("'…'", str(error))
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_structure(body: bytes | memoryview, syntax: UID) -> DatasetProblem | None:
    """Walk the element headers of an encoded data set and report a length that runs past its end.

    pydicom reads a truncated data set without an error (it keeps what it could read), so this
    walk is what tells a truncated or corrupt transfer from a complete one. It reads the top level
    and every sequence of undefined length, skipping values. Big endian and deflated data sets are
    left to the decoder.
    """
    if not syntax.is_little_endian or syntax.is_deflated:
        return None
    try:
        _Scanner(body, explicit=not syntax.is_implicit_VR).scan(0, len(body), depth=0, in_item=False)
    except _Undecodable as error:
        return DatasetProblem(CANNOT_UNDERSTAND, str(error))
    return None


class _Scanner:
    """Element-header walker for little endian data sets (PS3.5 7.1 and 7.5)."""

    def __init__(self, body: bytes | memoryview, *, explicit: bool) -> None:
        self.body = body
        self.explicit = explicit

    def scan(self, position: int, end: int, *, depth: int, in_item: bool, explicit: bool | None = None) -> int:
        """Walk elements from ``position``; inside an item of undefined length, stop after its delimiter."""
        explicit = self.explicit if explicit is None else explicit
        while position < end:
            tag, vr, length, header = self._header(position, end, explicit)
            position += header
            if in_item and tag == _ITEM_END:
                return position
            if tag[0] == 0xFFFE:
                raise _Undecodable(f"item tag {_name(tag)} found where a data element was expected")

            if length == _UNDEFINED_LENGTH:
                if explicit and vr not in _UNDEFINED_ALLOWED:
                    raise _Undecodable(f"element {_name(tag)} with VR {vr.decode('ascii', 'replace')} has undefined "
                                       "length, which only SQ, UN and encapsulated Pixel Data may have")
                # The content of UN with undefined length is implicit VR (PS3.5 6.2.2).
                position = self._items(position, end, depth=depth + 1, explicit=explicit and vr != b"UN")
            elif position + length > end:
                raise _Undecodable(f"element {_name(tag)} declares {length} bytes but the data set ends after "
                                   f"{end - position}: the transfer was truncated or the length is corrupt")
            else:
                position += length

        if in_item:
            raise _Undecodable("the data set ends inside a sequence item: the transfer was truncated")
        return position

    def _items(self, position: int, end: int, *, depth: int, explicit: bool) -> int:
        if depth > MAX_SEQUENCE_DEPTH:
            raise _Undecodable(f"sequences are nested deeper than {MAX_SEQUENCE_DEPTH} levels")

        while True:
            if end - position < 8:
                raise _Undecodable("the data set ends inside a sequence: the transfer was truncated")
            group, number, length = struct.unpack_from("<HHI", self.body, position)
            position += 8
            if (group, number) == _SEQUENCE_END:
                return position
            if (group, number) != _ITEM:
                raise _Undecodable(f"{_name((group, number))} found inside a sequence where an item was expected")

            if length == _UNDEFINED_LENGTH:
                position = self.scan(position, end, depth=depth + 1, in_item=True, explicit=explicit)
            elif position + length > end:
                raise _Undecodable(f"a sequence item declares {length} bytes but the data set ends after "
                                   f"{end - position}: the transfer was truncated or the length is corrupt")
            else:
                position += length

    def _header(self, position: int, end: int, explicit: bool) -> tuple[tuple[int, int], bytes, int, int]:
        """Return tag, VR (empty for implicit VR and items), value length and header size."""
        if end - position < 8:
            raise _Undecodable("the data set ends inside an element header: the transfer was truncated")
        group, number = struct.unpack_from("<HH", self.body, position)
        if not explicit or group == 0xFFFE:
            return (group, number), b"", struct.unpack_from("<I", self.body, position + 4)[0], 8

        vr = bytes(self.body[position + 4:position + 6])
        if vr not in _LONG_VRS:
            return (group, number), vr, struct.unpack_from("<H", self.body, position + 6)[0], 8
        if end - position < 12:
            raise _Undecodable("the data set ends inside an element header: the transfer was truncated")
        return (group, number), vr, struct.unpack_from("<I", self.body, position + 8)[0], 12


def _name(tag: tuple[int, int]) -> str:
    return f"({tag[0]:04X},{tag[1]:04X})"


def check_dataset(dataset: Dataset, request: object) -> DatasetProblem | None:
    """Return the first problem found in a received data set, or None when it may be stored.

    ``request`` is the C-STORE request primitive that carried the data set.

    Reads every public element (private ones may fail to decode and are kept as received),
    checks the Study, Series and SOP Instance UIDs and the SOP Class UID (PS3.5 9.1) and their
    match with the request's Affected SOP Class and Instance UIDs (PS3.7 9.1.1.1), and checks
    that native Pixel Data holds the bytes that Rows, Columns, Samples per Pixel, Bits Allocated
    and Number of Frames call for.
    """
    try:
        _decode_all(dataset, depth=0)
    except _Undecodable as error:
        return DatasetProblem(CANNOT_UNDERSTAND, str(error))

    for check in (_check_uids, _check_request_match, _check_pixel_data):
        problem = check(dataset, request)
        if problem is not None:
            return problem
    return None


def _decode_all(dataset: Dataset, *, depth: int) -> None:
    if depth > MAX_SEQUENCE_DEPTH:
        raise _Undecodable(f"sequences are nested deeper than {MAX_SEQUENCE_DEPTH} levels")

    for tag in list(dataset.keys()):
        try:
            element = dataset[tag]
        except Exception as error:  # noqa: BLE001 - pydicom raises many types for bad values
            if BaseTag(tag).is_private:
                continue
            raise _Undecodable(f"element {BaseTag(tag)} could not be decoded: {describe_error(error)}") from error

        if element.VR == "SQ" and element.value is not None:
            for item in element.value:
                _decode_all(item, depth=depth + 1)


def _check_uids(dataset: Dataset, _request: object) -> DatasetProblem | None:
    for keyword, tag in _UID_ATTRIBUTES:
        value = str(dataset.get(keyword, "") or "").strip()
        if not value:
            return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"{keyword} {tag} is missing or empty")
        if not is_valid_uid(value):
            return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS,
                                  f"{keyword} {tag} is not a valid UID ({len(value)} characters; a UID is at most 64 "
                                  "digits and dots); the sending system must correct it")
    return None


def _check_request_match(dataset: Dataset, request: object) -> DatasetProblem | None:
    pairs = (("SOPInstanceUID", "AffectedSOPInstanceUID"), ("SOPClassUID", "AffectedSOPClassUID"))
    for keyword, request_keyword in pairs:
        if str(dataset.get(keyword, "")).strip() != str(getattr(request, request_keyword, "") or "").strip():
            return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS,
                                  f"{keyword} of the data set differs from the request's {request_keyword}")
    return None


def _check_pixel_data(dataset: Dataset, _request: object) -> DatasetProblem | None:
    is_image = "Rows" in dataset or str(dataset.get("SOPClassUID", "")) in RADIOGRAPH_CLASSES
    if "PixelData" not in dataset:
        if is_image:
            return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Pixel Data (7FE0,0010) is missing from an image")
        return None

    file_meta = getattr(dataset, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is not None and syntax.is_encapsulated:
        # Compressed frames are decoded when the study is read, not on receipt.
        return None

    try:
        expected = _native_length(dataset)
    except (TypeError, ValueError) as error:
        return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"image attributes are invalid: {describe_error(error)}")

    problem = _check_photometric(dataset) or _check_finite(dataset)
    if problem is not None:
        return problem

    # PS3.5 8.1.1: exactly the bytes the attributes call for, padded to an even length. pydicom
    # reads surplus bytes as further frames, so a longer value is refused as well.
    found = len(dataset.PixelData)
    if found not in (expected, expected + expected % 2):
        return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS,
                              f"Pixel Data (7FE0,0010) holds {found} bytes but Rows, Columns, Samples per Pixel, "
                              f"Bits Allocated and Number of Frames call for {expected}")
    return None


def _check_finite(dataset: Dataset) -> DatasetProblem | None:
    """Rescale and window values must be finite numbers; DS allows no 'inf' or 'nan' (PS3.5 6.2)."""
    for keyword, tag in (("RescaleSlope", "(0028,1053)"), ("RescaleIntercept", "(0028,1052)"),
                         ("WindowCenter", "(0028,1050)"), ("WindowWidth", "(0028,1051)")):
        value = dataset.get(keyword)
        if value is None or value == "":
            continue
        values = list(value) if isinstance(value, MultiValue) else [value]
        try:
            numbers = [float(item) for item in values]
        except (TypeError, ValueError):
            return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"{keyword} {tag} is not a number")
        if not all(math.isfinite(number) for number in numbers):
            return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"{keyword} {tag} is not a finite number")
    return None


def _check_photometric(dataset: Dataset) -> DatasetProblem | None:
    """Samples per Pixel must be 1 for MONOCHROME1/2 and PALETTE COLOR, 3 for RGB and YBR (PS3.3 C.7.6.3.1.2)."""
    photometric = str(dataset.get("PhotometricInterpretation", "") or "").strip()
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if not photometric:
        return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS, "Photometric Interpretation (0028,0004) is missing "
                              "beside Pixel Data")

    required = 1 if photometric in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR") else 3
    if samples != required:
        return DatasetProblem(DATASET_DOES_NOT_MATCH_SOP_CLASS,
                              f"Photometric Interpretation (0028,0004) {photometric} needs Samples per Pixel "
                              f"(0028,0002) {required}, found {samples}")
    return None


def _native_length(dataset: Dataset) -> int:
    """Bytes of uncompressed Pixel Data that the Image Pixel module attributes call for (PS3.5 8.1.1)."""
    missing = [keyword for keyword in ("Rows", "Columns", "BitsAllocated") if dataset.get(keyword) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing beside Pixel Data")

    rows, columns, bits = int(dataset.Rows), int(dataset.Columns), int(dataset.BitsAllocated)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if min(rows, columns, bits, samples, frames) < 1:
        raise ValueError("Rows, Columns, Bits Allocated, Samples per Pixel and Number of Frames must be positive")

    total_bits = rows * columns * samples * frames * bits
    return (total_bits + 7) // 8
