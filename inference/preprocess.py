"""Model input from a display-ready radiograph: an optional mirror to the canonical side, CLAHE,
then an aspect-kept resize with padding.

Training and the service both call these functions, so a model sees the same pixels in both.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from inference.findings import ProcessingStep

CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILE_GRID = 8


@dataclass(frozen=True)
class Letterbox:
    """Geometry of an aspect-kept resize into a square canvas, to map boxes back to the source.

    ``flipped`` is True when the source was mirrored left to right before the resize;
    ``source_columns`` is then the source width, which the mirror needs.
    """

    scale: float
    pad_x: int
    pad_y: int
    size: int
    flipped: bool = False
    source_columns: int = 0

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        """Map a point of the model input back to source image pixels (column, row).

        Coordinates are continuous, with pixel ``i`` spanning ``[i, i + 1)``, so a mirror maps
        ``x`` to ``source_columns - x``.
        """
        column, row = (x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale
        if self.flipped:
            column = self.source_columns - column
        return column, row

    def box_to_source(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        """Map a box of the model input to source pixels, with x0 <= x1 and y0 <= y1 after a mirror."""
        left, top = self.to_source(x0, y0)
        right, bottom = self.to_source(x1, y1)
        return min(left, right), min(top, bottom), max(left, right), max(top, bottom)

    def map_to_source(self, grid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Crop the padding off a square map of the model input, resize it to ``shape`` and undo the mirror."""
        size = self.size
        if grid.shape != (size, size):
            grid = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)

        rows, columns = shape[:2]
        height = max(1, round(rows * self.scale))
        width = max(1, round(columns * self.scale))
        crop = grid[self.pad_y : self.pad_y + height, self.pad_x : self.pad_x + width]
        mapped = cv2.resize(crop, (columns, rows), interpolation=cv2.INTER_LINEAR)
        if self.flipped:
            mapped = mapped[:, ::-1]
        return np.ascontiguousarray(mapped)

    def step(self) -> ProcessingStep:
        """Return the resize and padding as a processing step."""
        return ProcessingStep.of("letterbox", size=self.size, scale=self.scale, pad_x=self.pad_x, pad_y=self.pad_y)


def apply_clahe(image: np.ndarray, *, clip_limit: float = CLAHE_CLIP_LIMIT, tile_grid: int = CLAHE_TILE_GRID) -> np.ndarray:
    """Equalise an 8-bit grey image by contrast-limited adaptive histogram equalisation."""
    if image.dtype != np.uint8:
        raise ValueError(f"CLAHE expects an 8-bit image, found dtype {image.dtype}")

    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    return clahe.apply(image)


def letterbox(image: np.ndarray, size: int, *, pad_value: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resize so the longer side is ``size`` and pad the shorter one evenly to a square."""
    rows, columns = image.shape[:2]
    scale = size / max(rows, columns)
    new_rows = max(1, round(rows * scale))
    new_columns = max(1, round(columns * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_columns, new_rows), interpolation=interpolation)

    pad_y = (size - new_rows) // 2
    pad_x = (size - new_columns) // 2
    canvas = np.full((size, size) + image.shape[2:], pad_value, dtype=image.dtype)
    canvas[pad_y : pad_y + new_rows, pad_x : pad_x + new_columns] = resized
    return canvas, Letterbox(scale=scale, pad_x=pad_x, pad_y=pad_y, size=size)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a display image with values in [0, 1] (0 is black) to 8 bits."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def model_input(image: np.ndarray, size: int, *, flip: bool = False) -> tuple[np.ndarray, Letterbox]:
    """Build the 8-bit square model input from a display image in [0, 1].

    Parameters
    ----------
    image
        2-D float array in [0, 1], bone bright (MONOCHROME2 orientation).
    size
        Side of the square input in pixels, from the model package manifest.
    flip
        Mirror the image left to right first, to show it on the model's canonical side.

    Returns
    -------
    The ``size`` x ``size`` uint8 input after the mirror, CLAHE and letterbox, and the geometry
    that maps the input back to the source.
    """
    if flip:
        image = image[:, ::-1]
    grey = apply_clahe(to_uint8(image))
    pixels, geometry = letterbox(grey, size)
    if flip:
        geometry = replace(geometry, flipped=True, source_columns=int(image.shape[1]))
    return pixels, geometry


def letterbox_geometry(shape: tuple[int, ...], size: int, *, flip: bool = False) -> Letterbox:
    """Return the geometry that :func:`model_input` gives an image of ``shape``, without its pixels."""
    rows, columns = shape[:2]
    scale = size / max(rows, columns)
    new_rows = max(1, round(rows * scale))
    new_columns = max(1, round(columns * scale))
    return Letterbox(scale=scale, pad_x=(size - new_columns) // 2, pad_y=(size - new_rows) // 2, size=size,
                     flipped=flip, source_columns=int(columns) if flip else 0)


def input_step(member: str, shape: tuple[int, ...], size: int, *, flip: bool) -> ProcessingStep:
    """Return what :func:`model_input` does to an image of ``shape`` for ``member``, as one step."""
    geometry = letterbox_geometry(shape, size, flip=flip)
    return ProcessingStep.of(f"input of {member}", mirrored=flip, to_8_bits="x255 rounded",
                             clahe_clip_limit=CLAHE_CLIP_LIMIT, clahe_tile_grid=CLAHE_TILE_GRID, size=size,
                             scale=geometry.scale, pad_x=geometry.pad_x, pad_y=geometry.pad_y)
