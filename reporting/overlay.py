"""Overlay rendering: Grad-CAM heat map, detector boxes and a caption burned into an RGB copy.

The overlay keeps the full resolution of the source image, so the Secondary Capture built from
it lines up pixel for pixel with the radiograph it annotates. Boxes at the high-specificity
operating point are drawn solid and boxes that reach only the high-sensitivity operating point
are drawn dotted, the convention of commercial fracture detectors.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inference.findings import FAT_PAD, FRACTURE, HIGH_SENSITIVITY, Box, ImageFinding
from reporting.captions import (
    anatomy_line,
    box_label,
    check_language,
    disclaimer,
    legend_line,
    model_line,
    verdict_line,
)

logger = logging.getLogger(__name__)

# NanumGothic 3.021 (SIL Open Font License 1.1, see reporting/fonts/OFL.txt) travels with the
# code, so captions and Korean names render the same on every host. It draws all 11,172 Hangul
# syllables and the 4,620 Hanja of KS X 1001 in 4.5 MiB. The 0.7 MiB NanumSquare maps those
# Hanja to empty glyphs, so a name such as 洪吉洞 would vanish from the overlay. Debian's
# copy of the same font (package fonts-nanum) is the fallback for an installation that left
# the bundled file out.
BUNDLED_FONT_PATH: Final = Path(__file__).resolve().parent / "fonts" / "NanumGothic.ttf"
SYSTEM_FONT_PATH: Final = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
# Drawn in place of a character that the font has no visible glyph for.
MISSING_GLYPH: Final = "?"
DEFAULT_FONT_PATH: Final = BUNDLED_FONT_PATH if BUNDLED_FONT_PATH.is_file() else SYSTEM_FONT_PATH
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
    patient: str | None = None,
) -> np.ndarray:
    """Render the heat map, boxes and caption of ``finding`` over its source image.

    The caption has two blocks. The top block contains the verdict with the probability, the
    side, body part and view, and ``patient``. The bottom block contains the model, the key to
    the box styles when there are boxes, and the disclaimer. Each block sits in a left corner,
    or in the right corner when it would cover a box only on the left.

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
        TrueType font with Hangul glyphs; defaults to the bundled NanumGothic, or to Debian's
        copy of it when the bundled file is missing.
    patient
        Patient line from ``captions.patient_line``, or None to leave the patient out.

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

    top = [verdict_line(finding, language=language), anatomy_line(finding, language=language)]
    top += [patient] if patient else []
    bottom = [model_line(model_identity, language=language)]
    bottom += [legend_line(language=language)] if finding.boxes else []
    bottom += [disclaimer(language=language)]

    image = _draw_caption(image, top, font_file=font_file, text_px=text_px,
                          first_line_colour=VERDICT_COLOURS[finding.positive], at_bottom=False, avoid=finding.boxes)
    image = _draw_caption(image, bottom, font_file=font_file, text_px=text_px,
                          first_line_colour=TEXT_COLOUR, at_bottom=True, avoid=finding.boxes)

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
    """Draw each box in its label's colour with the label and confidence above it.

    High-specificity boxes get a solid outline, high-sensitivity boxes a dotted one.
    """
    draw = ImageDraw.Draw(image)
    font = _font(font_file, max(MIN_TEXT_PX, round(text_px * 0.8)))
    line_width = max(2, text_px // 6)
    columns, rows = image.size

    for box in boxes:
        label = box_label(box, language=language)
        colour = BOX_COLOURS[box.label]
        x0, y0 = _clamp(box.x0, columns), _clamp(box.y0, rows)
        x1, y1 = _clamp(box.x1, columns), _clamp(box.y1, rows)
        if box.tier == HIGH_SENSITIVITY:
            _draw_dotted_rectangle(draw, (x0, y0, x1, y1), colour=colour, width=line_width)
        else:
            draw.rectangle((x0, y0, x1, y1), outline=colour, width=line_width)

        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        label_height = bottom - top + line_width * 2
        label_y = y0 - label_height if y0 - label_height >= 0 else min(y1, rows - label_height)
        draw.rectangle((x0, label_y, x0 + right - left + line_width * 2, label_y + label_height), fill=colour)
        draw.text((x0 + line_width - left, label_y + line_width - top), label, font=font, fill=(0, 0, 0))

    return image


def _draw_dotted_rectangle(
    draw: ImageDraw.ImageDraw,
    corners: tuple[int, int, int, int],
    *,
    colour: tuple[int, int, int],
    width: int,
) -> None:
    """Draw the outline of ``corners`` as square dots of side ``width``, one dot every ``3 * width`` pixels."""
    x0, y0, x1, y1 = corners
    step = 3 * width
    for x in range(x0, x1 + 1, step):
        draw.rectangle((x, y0, min(x + width - 1, x1), y0 + width - 1), fill=colour)
        draw.rectangle((x, y1 - width + 1, min(x + width - 1, x1), y1), fill=colour)
    for y in range(y0, y1 + 1, step):
        draw.rectangle((x0, y, x0 + width - 1, min(y + width - 1, y1)), fill=colour)
        draw.rectangle((x1 - width + 1, y, x1, min(y + width - 1, y1)), fill=colour)


def _clamp(value: float, size: int) -> int:
    return int(min(max(round(value), 0), size - 1))


def _draw_caption(
    image: Image.Image,
    lines: Sequence[str],
    *,
    font_file: Path,
    text_px: int,
    first_line_colour: tuple[int, int, int],
    at_bottom: bool,
    avoid: Sequence[Box] = (),
) -> Image.Image:
    """Write ``lines`` on a translucent dark block in a left corner, shrinking the font to fit.

    The block moves to the right corner when it would cover one of the boxes in ``avoid`` on
    the left and none on the right.
    """
    columns, rows = image.size
    font = _fitting_font(lines, font_file=font_file, text_px=text_px, max_width=int(columns * 0.96))
    margin = max(2, font.size // 2)
    line_step = round(font.size * 1.3)

    width = min(columns, max(_text_width(font, line) for line in lines) + 2 * margin)
    height = margin * 2 + line_step * len(lines)
    top = max(0, rows - height) if at_bottom else 0
    left = 0
    if _covers_box((0, top, width, top + height), avoid) and not _covers_box((columns - width, top, columns, top + height), avoid):
        left = columns - width

    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((left, top, left + width, top + height), fill=CAPTION_BACKGROUND)
    image = Image.alpha_composite(image, layer)

    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        colour = first_line_colour if index == 0 else TEXT_COLOUR
        draw.text((left + margin, top + margin + index * line_step), _drawable(line, font), font=font, fill=colour)
    return image


def _drawable(text: str, font: ImageFont.FreeTypeFont) -> str:
    """Return ``text`` with MISSING_GLYPH in place of each visible character that ``font`` cannot draw.

    A character cannot be drawn when its glyph is empty (NanumSquare maps Hanja that way) or is
    the font's "missing glyph" box. A blank where part of a patient name should be would go
    unnoticed, while "?" shows the reader that something is missing. The log line gives only
    the count, never the text.
    """
    missing_box = _glyph_pixels(font, _NONCHARACTER)
    missing = {
        character
        for character in set(text)
        if not character.isspace() and _glyph_pixels(font, character) in (None, missing_box)
    }
    if not missing:
        return text

    logger.warning("caption font %s has no glyph for %d characters of a caption line; drawn as %r",
                   Path(str(font.path)).name, len(missing), MISSING_GLYPH)
    return "".join(MISSING_GLYPH if character in missing else character for character in text)


# A Unicode noncharacter, which no font maps, so the font draws its missing-glyph box for it.
_NONCHARACTER: Final = "\U0010FFFF"


def _glyph_pixels(font: ImageFont.FreeTypeFont, character: str) -> tuple[tuple[int, int], bytes] | None:
    """Return the size and pixels of ``character`` drawn alone, or None when it draws nothing."""
    left, top, right, bottom = font.getbbox(character)
    if right <= left or bottom <= top:
        return None

    glyph = Image.new("L", (right - left, bottom - top))
    ImageDraw.Draw(glyph).text((-left, -top), character, font=font, fill=255)
    pixels = glyph.tobytes()
    return (glyph.size, pixels) if any(pixels) else None


def _covers_box(block: tuple[int, int, int, int], boxes: Sequence[Box]) -> bool:
    left, top, right, bottom = block
    return any(box.x0 < right and box.x1 > left and box.y0 < bottom and box.y1 > top for box in boxes)


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
