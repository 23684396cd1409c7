"""Read one image record's display image and ground-truth boxes for training and evaluation.

:func:`load_image` reads a DICOM, PNG or JPEG file as a display image. :func:`load_boxes` reads
the record's fracture and fat pad boxes from a YOLO, Pascal VOC or phantom-json file.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from inference.pixels import PixelError, display_image
from inference.training.records import ImageRecord

Box = tuple[str, float, float, float, float]

KEPT_BOX_LABELS = ("fracture", "fat_pad")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
# Class ids of the GRAZPEDWRI-DX YOLO label files. Class 6 (pronator quadratus sign) is a wrist
# soft-tissue sign, not the elbow fat pad. Class 9 is this project's extension for the elbow fat
# pad, which the official data set does not have.
GRAZPEDWRI_CLASSES = (
    "boneanomaly", "bonelesion", "foreignbody", "fracture", "metal", "periostealreaction", "pronatorsign",
    "softtissue", "text",
)
FAT_PAD_CLASS_ID = 9
YOLO_CLASSES = {**dict(enumerate(GRAZPEDWRI_CLASSES)), FAT_PAD_CLASS_ID: "fat_pad"}


def load_image(record: ImageRecord) -> np.ndarray:
    """Read a record's image as a 2-D float32 display image in [0, 1], bone bright.

    DICOM files go through :func:`inference.pixels.display_image` (Modality LUT, VOI LUT,
    MONOCHROME1 inversion). PNG and JPEG files are read with OpenCV: colour becomes grey, 8-bit
    values are divided by 255, and other depths (such as GRAZPEDWRI-DX's 16-bit PNGs) are windowed
    between their 0.5th and 99.5th percentiles. Files with a ``.png``, ``.jpg`` or ``.jpeg``
    suffix are read as images, and all others as DICOM.

    Raises
    ------
    ValueError
        When the file is missing or cannot be read or decoded; the message names the path.
    """
    path = Path(record.image_path)
    if not path.is_file():
        raise ValueError(f"image {path} not found")
    if path.suffix.lower() in RASTER_SUFFIXES:
        return _read_raster(path)
    return _read_dicom_image(path)


def _read_raster(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"image {path} could not be read by OpenCV; is it a valid PNG or JPEG file?")

    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if pixels.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        pixels = cv2.cvtColor(pixels, code)
    elif pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim != 2:
        raise ValueError(f"image {path} has the shape {pixels.shape}, expected a grey or colour image")

    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255.0)
    return _percentile_window(pixels.astype(np.float64))


def _percentile_window(values: np.ndarray) -> np.ndarray:
    """Map the 0.5th to 99.5th percentile of the values to [0, 1]; a flat image becomes zeros."""
    low, high = np.percentile(values, [0.5, 99.5])
    if not high > low:
        return np.zeros(values.shape, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _read_dicom_image(path: Path) -> np.ndarray:
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, ValueError) as error:
        raise ValueError(f"image {path} is not a readable DICOM file: {error}") from error
    try:
        return display_image(dataset)
    except PixelError as error:
        raise ValueError(f"image {path}: {error}") from error


def load_boxes(record: ImageRecord, shape: tuple[int, int]) -> list[Box]:
    """Read a record's fracture and fat pad boxes as (label, x0, y0, x1, y1) in image pixels.

    Formats, by ``record.boxes_format``:

    * ``"yolo"``: one ``class x_centre y_centre width height`` line per box, normalised to [0, 1].
      Class ids are GRAZPEDWRI-DX's (3 is fracture) plus 9 for the elbow fat pad. Only fracture
      and fat pad boxes are kept, so GRAZPEDWRI-DX's other classes (text, metal, periosteal
      reaction, pronator sign and so on) are dropped.
    * ``"voc"``: Pascal VOC XML with ``<object><name>`` and ``<bndbox>`` in absolute pixels;
      objects named ``fracture`` or ``fat_pad`` are kept.
    * ``"phantom-json"``: a JSON list of ``[label, x0, y0, x1, y1]`` in pixels, labels
      ``fracture`` or ``fat_pad``.

    Boxes are clipped to the image, and boxes with no area left are dropped.

    Parameters
    ----------
    record
        The image's record; an empty ``boxes_file`` gives no boxes.
    shape
        (rows, columns) of the image, used to scale YOLO boxes and to clip.

    Raises
    ------
    ValueError
        When the file is malformed or names an unknown class or label; the message names the file.
    """
    if not record.boxes_file:
        return []
    path = Path(record.boxes_file)
    if record.boxes_format == "yolo":
        boxes = _read_yolo(path, shape)
    elif record.boxes_format == "voc":
        boxes = _read_voc(path)
    elif record.boxes_format == "phantom-json":
        boxes = _read_phantom_json(path)
    else:
        raise ValueError(f"boxes format {record.boxes_format!r} of {path} is not yolo, voc or phantom-json")

    kept = [_clip(box, shape) for box in boxes if box[0] in KEPT_BOX_LABELS]
    return [box for box in kept if box[3] > box[1] and box[4] > box[2]]


def _read_yolo(path: Path, shape: tuple[int, int]) -> list[Box]:
    rows, columns = shape
    boxes: list[Box] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            class_id = int(parts[0])
            x, y, width, height = (float(part) for part in parts[1:])
        except ValueError as error:
            raise ValueError(f"{path} line {number}: expected 'class x_centre y_centre width height', "
                             f"found {line.strip()!r}") from error
        if class_id not in YOLO_CLASSES:
            raise ValueError(f"{path} line {number}: class {class_id} is not one of {sorted(YOLO_CLASSES)}")
        boxes.append((YOLO_CLASSES[class_id], (x - width / 2) * columns, (y - height / 2) * rows,
                      (x + width / 2) * columns, (y + height / 2) * rows))
    return boxes


def _read_voc(path: Path) -> list[Box]:
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"{path} is not valid XML: {error}") from error

    boxes: list[Box] = []
    for number, item in enumerate(root.iter("object"), start=1):
        name = (item.findtext("name") or "").strip()
        try:
            x0, y0, x1, y1 = (float((item.findtext(f"bndbox/{edge}") or "").strip())
                              for edge in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as error:
            raise ValueError(f"{path} object {number} ({name or 'no name'}): bndbox lacks a number in "
                             "xmin, ymin, xmax or ymax") from error
        boxes.append((name, x0, y0, x1, y1))
    return boxes


def _read_phantom_json(path: Path) -> list[Box]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(items, list):
        raise ValueError(f"{path} must contain a JSON list of [label, x0, y0, x1, y1]")

    boxes: list[Box] = []
    for number, item in enumerate(items, start=1):
        valid = (isinstance(item, list) and len(item) == 5 and item[0] in KEPT_BOX_LABELS
                 and all(isinstance(value, int | float) for value in item[1:]))
        if not valid:
            raise ValueError(f"{path} box {number} is {item!r}, expected [label, x0, y0, x1, y1] with label "
                             f"{' or '.join(KEPT_BOX_LABELS)}")
        boxes.append((item[0], float(item[1]), float(item[2]), float(item[3]), float(item[4])))
    return boxes


def _clip(box: Box, shape: tuple[int, int]) -> Box:
    rows, columns = shape
    label, x0, y0, x1, y1 = box
    return (label, min(max(x0, 0.0), columns), min(max(y0, 0.0), rows),
            min(max(x1, 0.0), columns), min(max(y1, 0.0), rows))
