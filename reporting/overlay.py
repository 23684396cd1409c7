"""Overlay rendering: Grad-CAM heat map, detector boxes and a caption burned into an RGB copy.

The overlay keeps the full resolution of the source image, so the Secondary Capture built from
it lines up pixel for pixel with the radiograph it annotates.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inference.findings import FAT_PAD, FRACTURE, Box, ImageFinding
from reporting.captions import box_label, caption_lines, check_language

logger = logging.getLogger(__name__)

DEFAULT_FONT_PATH: Final = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
FONT_PACKAGE: Final = "fonts-nanum"

BOX_COLOURS: Final = {FRACTURE: (255, 0, 0), FAT_PAD: (255, 255, 0)}
VERDICT_COLOURS: Final = {True: (255, 96, 96), False: (128, 255, 128)}
TEXT_COLOUR: Final = (255, 255, 255)

# Heat below HEATMAP_FLOOR is left undrawn, so only the regions the classifier relied on most
# are tinted. Above the floor the tint grows linearly up to HEATMAP_MAX_ALPHA at heat 1.0.
HEATMAP_FLOOR: Final = 0.5
HEATMAP_MAX_ALPHA: Final = 0.45

# Text height is the shorter image side divided by TEXT_SIZE_DIVISOR: about 56 px on a
# 2000 px radiograph and 14 px on a 500 px one, never below MIN_TEXT_PX.
TEXT_SIZE_DIVISOR: Final = 36
MIN_TEXT_PX: Final = 12
MIN_FITTING_TEXT_PX: Final = 8
CAPTION_BACKGROUND: Final = (0, 0, 0, 170)


def render_overlay(
    finding: ImageFinding,
    *,
    language: str,
    model_identity: str,
    font_path: Path | None = None,
) -> np.ndarray:
    """Render the heat map, boxes and caption of ``finding`` over its source image.

    Parameters
    ----------
    finding
        The ensemble's reading. ``finding.display`` is the source image as a 2-D uint8 grey
        array with bone bright. ``finding.heatmap``, when present, is a float array of the
        same shape with values in [0, 1].
    language
        Caption language, ``"ko"`` or ``"en"``.
    model_identity
        Model name and version written in the caption.
    font_path
        TrueType font with Hangul glyphs; defaults to Debian's NanumGothic.

    Returns
    -------
    numpy.ndarray
        RGB uint8 array of shape ``display.shape + (3,)``.

    Raises
    ------
    FileNotFoundError
        If the font file is missing.
    ValueError
        If the language, the display image, the heat map or a box label is invalid.
    """
    check_language(language)
    grey = _checked_display(finding.display)
    font_file = _checked_font(font_path or DEFAULT_FONT_PATH)

    rgb = np.repeat(grey[:, :, np.newaxis], 3, axis=2)
    if finding.heatmap is not None:
        rgb = _blend_heatmap(rgb, _checked_heatmap(finding.heatmap, grey.shape))

    image = Image.fromarray(rgb, mode="RGB").convert("RGBA")
    text_px = _text_size(grey.shape)
    image = _draw_boxes(image, finding.boxes, font_file=font_file, text_px=text_px, language=language)

    lines = caption_lines(finding, language=language, model_identity=model_identity)
    image = _draw_caption(image, lines, font_file=font_file, text_px=text_px, verdict_colour=VERDICT_COLOURS[finding.positive])

    logger.debug("rendered overlay for SOP instance %s with %d boxes", finding.sop_instance_uid, len(finding.boxes))
    return np.array(image.convert("RGB"))


def _checked_display(display: np.ndarray) -> np.ndarray:
    if display.ndim != 2 or display.dtype != np.uint8:
        raise ValueError(f"finding.display must be a 2-D uint8 grey image; found shape {display.shape} and dtype {display.dtype}")
    return display


def _checked_heatmap(heatmap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if heatmap.shape != shape:
        raise ValueError(f"finding.heatmap has shape {heatmap.shape}, but the display image has shape {shape}")

    heat = heatmap.astype(np.float32, copy=False)
    if not np.all(np.isfinite(heat)):
        raise ValueError("finding.heatmap contains NaN or infinite values")
    if heat.min() < -1e-6 or heat.max() > 1 + 1e-6:
        raise ValueError(f"finding.heatmap values must lie in [0, 1]; found [{heat.min():.3f}, {heat.max():.3f}]")
    return np.clip(heat, 0.0, 1.0)


def _checked_font(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"font {path} not found; install the Debian package {FONT_PACKAGE} "
            "or pass font_path to a TrueType font with Hangul glyphs"
        )
    return path


def _blend_heatmap(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Tint ``rgb`` with the JET colour map where the heat exceeds HEATMAP_FLOOR."""
    heat_u8 = np.rint(heat * 255.0).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat_u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)

    strength = np.clip((heat - HEATMAP_FLOOR) / (1.0 - HEATMAP_FLOOR), 0.0, 1.0)
    alpha = (HEATMAP_MAX_ALPHA * strength)[:, :, np.newaxis]

    blended = rgb.astype(np.float32) * (1.0 - alpha) + colour.astype(np.float32) * alpha
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _text_size(shape: tuple[int, ...]) -> int:
    return max(MIN_TEXT_PX, round(min(shape[:2]) / TEXT_SIZE_DIVISOR))


def _font(font_file: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_file), size)


def _draw_boxes(image: Image.Image, boxes: Sequence[Box], *, font_file: Path, text_px: int, language: str) -> Image.Image:
    """Draw each box as a rectangle in its label's colour with the label and confidence above it."""
    draw = ImageDraw.Draw(image)
    font = _font(font_file, max(MIN_TEXT_PX, round(text_px * 0.8)))
    line_width = max(2, text_px // 6)
    columns, rows = image.size

    for box in boxes:
        label = box_label(box, language=language)
        colour = BOX_COLOURS[box.label]
        x0, y0 = _clamp(box.x0, columns), _clamp(box.y0, rows)
        x1, y1 = _clamp(box.x1, columns), _clamp(box.y1, rows)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line_width)

        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        label_height = bottom - top + line_width * 2
        label_y = y0 - label_height if y0 - label_height >= 0 else min(y1, rows - label_height)
        draw.rectangle((x0, label_y, x0 + right - left + line_width * 2, label_y + label_height), fill=colour)
        draw.text((x0 + line_width - left, label_y + line_width - top), label, font=font, fill=(0, 0, 0))

    return image


def _clamp(value: float, size: int) -> int:
    return int(min(max(round(value), 0), size - 1))


def _draw_caption(
    image: Image.Image,
    lines: Sequence[str],
    *,
    font_file: Path,
    text_px: int,
    verdict_colour: tuple[int, int, int],
) -> Image.Image:
    """Write ``lines`` on a translucent dark block in the top-left corner, shrinking the font to fit."""
    columns = image.size[0]
    font = _fitting_font(lines, font_file=font_file, text_px=text_px, max_width=int(columns * 0.96))
    margin = max(2, font.size // 2)
    line_step = round(font.size * 1.3)

    widths = [_text_width(font, line) for line in lines]
    block = (0, 0, min(columns, max(widths) + 2 * margin), margin * 2 + line_step * len(lines))
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(block, fill=CAPTION_BACKGROUND)
    image = Image.alpha_composite(image, layer)

    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        colour = verdict_colour if index == 0 else TEXT_COLOUR
        draw.text((margin, margin + index * line_step), line, font=font, fill=colour)
    return image


def _fitting_font(lines: Sequence[str], *, font_file: Path, text_px: int, max_width: int) -> ImageFont.FreeTypeFont:
    size = text_px
    font = _font(font_file, size)
    while size > MIN_FITTING_TEXT_PX and max(_text_width(font, line) for line in lines) > max_width:
        size -= 1
        font = _font(font_file, size)
    return font


def _text_width(font: ImageFont.FreeTypeFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)
