"""A corpus of malformed DICOM files, written byte by byte, and the status the SCP must return.

Each file has valid File Meta Information, so pynetdicom can send its data set unchanged with
``STORE_SEND_CHUNKED_DATASET``; the faults are in the data set that follows.
"""
from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit

from listener.scp import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    SUCCESS,
)

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
ROOT = "1.2.826.0.1.3680043.10.1187"  # test UIDs only; never sent beyond 127.0.0.1
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF

Element = tuple[int, int, bytes, bytes, int | None]


@dataclass(frozen=True)
class Case:
    """One malformed file and the C-STORE status it must get."""

    name: str
    path: Path
    expected: int
    why: str
    sop_instance_uid: str


def element(group: int, number: int, vr: str, value: bytes | str, length: int | None = None) -> Element:
    """One explicit VR little endian element; ``length`` overrides the length field."""
    raw = value.encode("ascii") if isinstance(value, str) else value
    return group, number, vr.encode("ascii"), raw, length


def encode(elements: list[Element]) -> bytes:
    out = bytearray()
    for group, number, vr, value, length in elements:
        size = len(value) if length is None else length
        if vr in _LONG_VRS:
            out += struct.pack("<HH2sHI", group, number, vr, 0, size)
        else:
            out += struct.pack("<HH2sH", group, number, vr, size)
        out += value
    return bytes(out)


def padded(text: str, pad: bytes = b" ") -> bytes:
    raw = text.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def uid(text: str) -> bytes:
    return padded(text, b"\0")


def us(value: int) -> bytes:
    return struct.pack("<H", value)


@dataclass
class Identity:
    """The UIDs of one corpus file."""

    study: str
    series: str
    sop: str
    sop_class: str = DX_FOR_PRESENTATION


def dx_elements(identity: Identity, *, rows: int = 16, columns: int = 16, pixels: bytes | None = None) -> list[Element]:
    """A small valid DX For Presentation data set, element by element in tag order."""
    data = pixels if pixels is not None else bytes(rows * columns * 2)
    return [
        element(0x0008, 0x0016, "UI", uid(identity.sop_class)),
        element(0x0008, 0x0018, "UI", uid(identity.sop)),
        element(0x0008, 0x0060, "CS", padded("DX")),
        element(0x0008, 0x0070, "LO", padded("pedfrac corpus")),
        element(0x0008, 0x103E, "LO", padded("WRIST AP")),
        element(0x0010, 0x0010, "PN", padded("Corpus^Case")),
        element(0x0010, 0x0020, "LO", padded("CORPUS01")),
        element(0x0018, 0x0015, "CS", padded("WRIST")),
        element(0x0018, 0x5101, "CS", padded("AP")),
        element(0x0020, 0x000D, "UI", uid(identity.study)),
        element(0x0020, 0x000E, "UI", uid(identity.series)),
        element(0x0028, 0x0002, "US", us(1)),
        element(0x0028, 0x0004, "CS", padded("MONOCHROME2")),
        element(0x0028, 0x0010, "US", us(rows)),
        element(0x0028, 0x0011, "US", us(columns)),
        element(0x0028, 0x0100, "US", us(16)),
        element(0x0028, 0x0101, "US", us(12)),
        element(0x0028, 0x0102, "US", us(11)),
        element(0x0028, 0x0103, "US", us(0)),
        element(0x7FE0, 0x0010, "OW", data),
    ]


def replace(elements: list[Element], group: int, number: int, new: Element | None) -> list[Element]:
    """Swap (or with None, drop) the element with this tag."""
    result = []
    for item in elements:
        if item[:2] == (group, number):
            if new is not None:
                result.append(new)
        else:
            result.append(item)
    return result


def write_file(path: Path, identity: Identity, body: bytes | Callable[[object], None], *,
               syntax: UID = ExplicitVRLittleEndian, meta_sop: str | None = None) -> Path:
    """Write preamble, File Meta Information and ``body`` (bytes, or a function that streams it)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = identity.sop_class
    meta.MediaStorageSOPInstanceUID = meta_sop or identity.sop
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = f"{ROOT}.1"

    with path.open("wb") as stream:
        stream.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(stream, meta, enforce_standard=True)
        if callable(body):
            body(stream)
        else:
            stream.write(body)
    return path


def nested_sequences(depth: int) -> bytes:
    """A public sequence (Referenced Image Sequence) nested ``depth`` levels, each of defined length."""
    inner = encode([element(0x0008, 0x1150, "UI", uid(DX_FOR_PRESENTATION))])
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        inner = encode([element(0x0008, 0x1140, "SQ", item)])
    return inner


def encapsulated(fragment: bytes) -> bytes:
    """Encapsulated Pixel Data: an empty Basic Offset Table and one fragment."""
    items = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    items += struct.pack("<HHI", 0xFFFE, 0xE000, len(fragment)) + fragment
    items += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, UNDEFINED) + items


class Corpus:
    """Builds every case into ``folder``; identities are seeded so runs are repeatable."""

    def __init__(self, folder: Path, seed: int = 1187) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.random = random.Random(seed)
        self.study = f"{ROOT}.2.{seed}"
        self.count = 0

    def identity(self) -> Identity:
        self.count += 1
        series = f"{self.study}.{self.count}"
        return Identity(study=self.study, series=series, sop=f"{series}.1")

    def case(self, name: str, expected: int, why: str, build: Callable[[Identity, Path], Path]) -> Case:
        identity = self.identity()
        path = build(identity, self.folder / f"{name}.dcm")
        return Case(name, path, expected, why, identity.sop)

    def small_cases(self) -> Iterator[Case]:
        """Every case except the 300 MB image."""
        yield self.case("valid", SUCCESS, "control: a well-formed DX image",
                        lambda ident, path: write_file(path, ident, encode(dx_elements(ident))))
        yield from self._encoding_cases()
        yield from self._uid_cases()
        yield from self._image_cases()

    def _encoding_cases(self) -> Iterator[Case]:
        def odd_length(ident: Identity, path: Path) -> Path:
            elements = replace(dx_elements(ident), 0x0008, 0x103E, element(0x0008, 0x103E, "LO", b"WRIST"))
            return write_file(path, ident, encode(elements))

        def wrong_vr_name(ident: Identity, path: Path) -> Path:
            elements = replace(dx_elements(ident), 0x0010, 0x0010, element(0x0010, 0x0010, "US", us(7) + us(9)))
            return write_file(path, ident, encode(elements))

        def length_past_end(ident: Identity, path: Path) -> Path:
            elements = replace(dx_elements(ident), 0x0008, 0x0070,
                               element(0x0008, 0x0070, "LO", padded("pedfrac corpus"), length=0xFFF0))
            return write_file(path, ident, encode(elements))

        def truncated_pixels(ident: Identity, path: Path) -> Path:
            return write_file(path, ident, encode(dx_elements(ident))[:-300])

        def truncated_header(ident: Identity, path: Path) -> Path:
            return write_file(path, ident, encode(dx_elements(ident))[:61])

        def garbage(ident: Identity, path: Path) -> Path:
            return write_file(path, ident, self.random.randbytes(4096))

        def undefined_text(ident: Identity, path: Path) -> Path:
            elements = dx_elements(ident)
            elements.insert(4, element(0x0008, 0x0081, "UT", padded("Somewhere"), length=UNDEFINED))
            return write_file(path, ident, encode(elements))

        def deep_nesting(ident: Identity, path: Path) -> Path:
            elements = dx_elements(ident)
            # (0008,1140) sorts after (0008,103E), the fifth element, and before Patient Name.
            return write_file(path, ident, encode(elements[:5]) + nested_sequences(200) + encode(elements[5:]))

        def deflate_garbage(ident: Identity, path: Path) -> Path:
            return write_file(path, ident, self.random.randbytes(2048), syntax=DeflatedExplicitVRLittleEndian)

        def private_garbage(ident: Identity, path: Path) -> Path:
            elements = dx_elements(ident)
            creator = element(0x0009, 0x0010, "LO", padded("PEDFRAC CORPUS"))
            junk = element(0x0009, 0x1001, "SQ", self.random.randbytes(64))
            return write_file(path, ident, encode(elements[:10] + [creator, junk] + elements[10:]))

        yield self.case("odd-length-value", SUCCESS, "odd length is non-conformant but readable; stored as received",
                        odd_length)
        yield self.case("wrong-vr-patient-name", SUCCESS, "a wrong VR outside the image attributes is readable",
                        wrong_vr_name)
        yield self.case("length-past-end", CANNOT_UNDERSTAND, "an element longer than the data set", length_past_end)
        yield self.case("truncated-pixel-data", CANNOT_UNDERSTAND, "the file ends inside Pixel Data",
                        truncated_pixels)
        yield self.case("truncated-header", CANNOT_UNDERSTAND, "the file ends inside an element header",
                        truncated_header)
        yield self.case("random-bytes", CANNOT_UNDERSTAND, "4 KiB of random bytes after the file meta", garbage)
        yield self.case("undefined-length-text", CANNOT_UNDERSTAND, "UT with undefined length (only SQ and "
                        "encapsulated data may have it)", undefined_text)
        yield self.case("nested-200-deep", CANNOT_UNDERSTAND, "sequences nested 200 levels deep", deep_nesting)
        yield self.case("deflate-not-deflated", CANNOT_UNDERSTAND, "deflated syntax over bytes that are not deflated",
                        deflate_garbage)
        yield self.case("private-sequence-garbage", SUCCESS, "an undecodable private element is kept as received",
                        private_garbage)

    def _uid_cases(self) -> Iterator[Case]:
        def with_sop(sop: str) -> Callable[[Identity, Path], Path]:
            def build(ident: Identity, path: Path) -> Path:
                ident.sop = sop
                return write_file(path, ident, encode(dx_elements(ident)))
            return build

        def mismatch(ident: Identity, path: Path) -> Path:
            return write_file(path, ident, encode(dx_elements(ident)), meta_sop=f"{ident.sop}.9")

        def without(group: int, number: int) -> Callable[[Identity, Path], Path]:
            def build(ident: Identity, path: Path) -> Path:
                return write_file(path, ident, encode(replace(dx_elements(ident), group, number, None)))
            return build

        yield self.case("uid-with-letters", DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID with letters",
                        with_sop(f"{self.study}.77.abc"))
        yield self.case("uid-trailing-dot", DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID ending in a dot",
                        with_sop(f"{self.study}.78."))
        yield self.case("uid-mismatch", DATASET_DOES_NOT_MATCH_SOP_CLASS,
                        "data set SOP Instance UID differs from the request's", mismatch)
        yield self.case("missing-study-uid", DATASET_DOES_NOT_MATCH_SOP_CLASS, "no Study Instance UID",
                        without(0x0020, 0x000D))
        yield self.case("missing-sop-uid", DATASET_DOES_NOT_MATCH_SOP_CLASS, "no SOP Instance UID in the data set",
                        without(0x0008, 0x0018))

    def _image_cases(self) -> Iterator[Case]:
        def no_pixels(ident: Identity, path: Path) -> Path:
            return write_file(path, ident, encode(replace(dx_elements(ident), 0x7FE0, 0x0010, None)))

        def huge_dimensions(ident: Identity, path: Path) -> Path:
            elements = dx_elements(ident)
            elements = replace(elements, 0x0028, 0x0010, element(0x0028, 0x0010, "US", us(65535)))
            elements = replace(elements, 0x0028, 0x0011, element(0x0028, 0x0011, "US", us(65535)))
            return write_file(path, ident, encode(elements))

        def rows_as_date(ident: Identity, path: Path) -> Path:
            elements = replace(dx_elements(ident), 0x0028, 0x0010, element(0x0028, 0x0010, "DA", padded("20240101")))
            return write_file(path, ident, encode(elements))

        def jpeg_garbage(ident: Identity, path: Path) -> Path:
            head = encode(dx_elements(ident)[:-1])
            return write_file(path, ident, head + encapsulated(self.random.randbytes(512)), syntax=JPEGBaseline8Bit)

        yield self.case("missing-pixel-data", DATASET_DOES_NOT_MATCH_SOP_CLASS, "a DX image without Pixel Data",
                        no_pixels)
        yield self.case("huge-rows-columns", DATASET_DOES_NOT_MATCH_SOP_CLASS,
                        "Rows and Columns 65535 over 512 bytes of pixels", huge_dimensions)
        yield self.case("rows-as-date", DATASET_DOES_NOT_MATCH_SOP_CLASS, "Rows encoded with VR DA", rows_as_date)
        yield self.case("jpeg-fragment-garbage", SUCCESS, "compressed frames are decoded when read, not on receipt",
                        jpeg_garbage)

    def large_image(self, side: int = 12288) -> Case:
        """A consistent 16-bit image of ``side`` × ``side`` pixels (302 MB at 12288), streamed to disk."""
        def build(ident: Identity, path: Path) -> Path:
            elements = dx_elements(ident, rows=side, columns=side, pixels=b"")
            head = encode(elements[:-1])
            pixel_bytes = side * side * 2

            def stream(out: object) -> None:
                out.write(head)  # type: ignore[attr-defined]
                out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes))  # type: ignore[attr-defined]
                row = bytes(range(256)) * (side * 2 // 256)
                for _ in range(side):
                    out.write(row)  # type: ignore[attr-defined]

            return write_file(path, ident, stream)

        return self.case(f"image-{side}x{side}", SUCCESS, "a large but consistent image is stored", build)
