"""Model input from a display-ready radiograph: CLAHE, then an aspect-kept resize with padding.

Training and the service both call these functions, so a model sees the same pixels in both.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """Geometry of an aspect-kept resize into a square canvas, to map boxes back to the source."""

    scale: float
    pad_x: int
    pad_y: int
    size: int

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        """Map a point of the model input back to source image pixels (column, row)."""
        return (x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale


def apply_clahe(image: np.ndarray, *, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
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


def model_input(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Build the 8-bit square model input from a display image in [0, 1].

    Parameters
    ----------
    image
        2-D float array in [0, 1], bone bright (MONOCHROME2 orientation).
    size
        Side of the square input in pixels, from the model package manifest.

    Returns
    -------
    The ``size`` x ``size`` uint8 input after CLAHE, and the letterbox geometry.
    """
    grey = apply_clahe(to_uint8(image))
    return letterbox(grey, size)
