"""Grayscale Softcopy Presentation State that shows the AI boxes and labels on the original radiograph.

Unlike the Secondary Capture, which burns the findings into a copy, the presentation state
(PS3.3 A.33.1) keeps them as graphic annotations (PS3.3 C.10.5) that a viewer draws over the
unchanged source image and can switch off. Each operating point gets its own graphic layer, so
a reader can show the high-specificity boxes alone:

==============  =====  ============================================================
layer           order  content
==============  =====  ============================================================
AI HIGH SPEC    1      high-specificity boxes (solid outline) and their labels
AI HIGH SENS    2      high-sensitivity boxes (dashed outline) and their labels
AI CAPTION      3      verdict with the probability, model and disclaimer
==============  =====  ============================================================

The outline style travels in the Line Style Sequence (0070,0232) of each graphic object
(PS3.3 C.10.5). A viewer that ignores it draws every box solid, but the layer names still tell
the two tiers apart.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from inference.findings import FRACTURE, HIGH_SENSITIVITY, HIGH_SPECIFICITY, Box, ImageFinding
from reporting.captions import box_label, check_language, disclaimer, for_dicom_text, model_line, verdict_line
from reporting.overlay import BOX_COLOURS
from reporting.identifiers import (
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    PR_SERIES_DESCRIPTION,
    PR_SERIES_NUMBER,
    algorithm_equipment,
    character_set_for,
    new_uid,
    quiet_person_name_check,
    series_laterality,
    software_version,
)

logger = logging.getLogger(__name__)

CONTENT_LABEL: Final = "AI FRACTURE"
LAYER_NAMES: Final = {HIGH_SPECIFICITY: "AI HIGH SPEC", HIGH_SENSITIVITY: "AI HIGH SENS"}
CAPTION_LAYER: Final = "AI CAPTION"

_WHITE: Final = (255, 255, 255)

# Caption lines in display units (0 to 1 across the displayed area), from the top-left corner.
_CAPTION_LEFT: Final = 0.01
_CAPTION_RIGHT: Final = 0.75
_CAPTION_LINE_HEIGHT: Final = 0.035


def build_presentation_state(
    source: pydicom.Dataset,
    finding: ImageFinding,
    *,
    series_instance_uid: str,
    instance_number: int,
    language: str,
    model_identity: str,
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """Build a Grayscale Softcopy Presentation State with the findings of ``source`` as graphics.

    Patient and study attributes come from ``source``. The VOI LUT (window) of the source is
    kept, so the image looks as it does without the presentation state. The Specific Character
    Set of the source is kept when it encodes the labels, otherwise the object is UTF-8.

    Parameters
    ----------
    source
        The radiograph that was read, one sample per pixel.
    finding
        The ensemble's reading of ``source``; its boxes become POLYLINE graphic objects.
    series_instance_uid
        Series Instance UID shared by the presentation states of one reading.
    instance_number
        Instance Number within that series, starting at 1.
    language
        Language of the labels and the caption, ``"ko"`` or ``"en"``.
    model_identity
        Model name and version, written in the caption and in Contributing Equipment.

    Raises
    ------
    ValueError
        If the finding is for another image, the source is not grey, or the language or a box
        label is unsupported.
    """
    check_language(language)
    _check_inputs(source, finding)

    caption = _caption_lines(finding, language=language, model_identity=model_identity)
    labels = [for_dicom_text(box_label(box, language=language)) for box in finding.boxes]
    charset = character_set_for(source, [*caption, *labels])

    layers, annotations, groups = _graphics(source, finding, labels, caption)
    with quiet_person_name_check():
        state = hd.pr.GrayscaleSoftcopyPresentationState(
            referenced_images=[source],
            series_instance_uid=series_instance_uid,
            series_number=PR_SERIES_NUMBER,
            sop_instance_uid=new_uid(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=MANUFACTURER_MODEL_NAME,
            software_versions=software_version(),
            device_serial_number=None,
            content_label=CONTENT_LABEL,
            content_description=f"AI fracture marks by {model_identity}"[:64],
            graphic_annotations=annotations,
            graphic_layers=layers,
            graphic_groups=groups or None,
            contributing_equipment=[algorithm_equipment(model_identity)],
            series_description=PR_SERIES_DESCRIPTION,
            specific_character_set=None,
        )

    # NOTE: highdicom 0.28.2 rejects ['', 'ISO 2022 IR 149'], so the value is set afterwards.
    if charset is not None:
        state.SpecificCharacterSet = charset
    # Laterality is Type 2C in General Series (PS3.3 C.7.3.1): the side of the wrist or elbow,
    # empty when the source does not state it.
    state.Laterality = series_laterality(source) or ""

    logger.info(
        "built presentation state %s for source %s in study %s: %d boxes",
        state.SOPInstanceUID,
        source.SOPInstanceUID,
        state.StudyInstanceUID,
        len(finding.boxes),
    )
    return state


def _check_inputs(source: Dataset, finding: ImageFinding) -> None:
    if finding.sop_instance_uid != source.SOPInstanceUID:
        raise ValueError(
            f"finding is for SOP instance {finding.sop_instance_uid}, "
            f"but the source dataset has SOP Instance UID {source.SOPInstanceUID}"
        )
    if int(source.get("SamplesPerPixel", 1)) != 1:
        raise ValueError(
            f"source {source.SOPInstanceUID} has Samples per Pixel (0028,0002) {source.SamplesPerPixel}; "
            "a grayscale presentation state needs 1"
        )


def _caption_lines(finding: ImageFinding, *, language: str, model_identity: str) -> list[str]:
    lines = [verdict_line(finding, language=language), model_line(model_identity, language=language),
             disclaimer(language=language)]
    return [for_dicom_text(line) for line in lines]


def _graphics(
    source: Dataset,
    finding: ImageFinding,
    labels: Sequence[str],
    caption: Sequence[str],
) -> tuple[list[hd.pr.GraphicLayer], list[hd.pr.GraphicAnnotation], list[hd.pr.GraphicGroup]]:
    """Build the graphic layers, one annotation per non-empty layer, and one group per box with its label."""
    # The layer colours are for viewers that ignore the per-object Line Style Sequence.
    box_colour = hd.color.CIELabColor.from_rgb(*BOX_COLOURS[FRACTURE])
    text_colour = hd.color.CIELabColor.from_rgb(*_WHITE)
    layers = [
        hd.pr.GraphicLayer(LAYER_NAMES[HIGH_SPECIFICITY], order=1, display_color=box_colour,
                           description="AI boxes, high-specificity operating point (solid)"),
        hd.pr.GraphicLayer(LAYER_NAMES[HIGH_SENSITIVITY], order=2, display_color=box_colour,
                           description="AI boxes, high-sensitivity operating point (dashed)"),
        hd.pr.GraphicLayer(CAPTION_LAYER, order=3, display_color=text_colour, description="AI verdict, model and disclaimer"),
    ]
    by_name = {layer.GraphicLayer: layer for layer in layers}

    annotations = []
    groups = []
    for tier in (HIGH_SPECIFICITY, HIGH_SENSITIVITY):
        graphic_objects, text_objects = [], []
        for number, (box, label) in enumerate(zip(finding.boxes, labels), start=1):
            if box.tier != tier:
                continue
            group = hd.pr.GraphicGroup(number, label=label[:64])
            groups.append(group)
            graphic_objects.append(_box_outline(box, group))
            text_objects.append(_box_text(box, label, source, group))
        if graphic_objects:
            annotations.append(hd.pr.GraphicAnnotation(
                referenced_images=[source], graphic_layer=by_name[LAYER_NAMES[tier]],
                graphic_objects=graphic_objects, text_objects=text_objects,
            ))

    annotations.append(hd.pr.GraphicAnnotation(
        referenced_images=[source], graphic_layer=by_name[CAPTION_LAYER], text_objects=_caption_texts(caption),
    ))
    used = {annotation.GraphicLayer for annotation in annotations}
    return [layer for layer in layers if layer.GraphicLayer in used], annotations, groups


def _box_outline(box: Box, group: hd.pr.GraphicGroup) -> hd.pr.GraphicObject:
    """Build a closed 5-point POLYLINE in pixel units with a solid or dashed line style."""
    corners = np.array(
        [[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1], [box.x0, box.y0]],
        dtype=np.float64,
    )
    outline = hd.pr.GraphicObject(
        graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
        graphic_data=corners,
        units=hd.pr.AnnotationUnitsValues.PIXEL,
        graphic_group=group,
    )
    outline.LineStyleSequence = [_line_style(box)]
    return outline


def _line_style(box: Box) -> Dataset:
    """Build a Line Style Sequence item (PS3.3 C.10.5.1.2): the overlay's colour of the label, solid or dashed."""
    style = Dataset()
    style.PatternOnColorCIELabValue = _cielab(BOX_COLOURS.get(box.label, _WHITE))
    style.PatternOnOpacity = 1.0
    style.LineThickness = 2.0
    style.LineDashingStyle = "SOLID" if box.tier == HIGH_SPECIFICITY else "DASHED"
    if box.tier != HIGH_SPECIFICITY:
        # 16 bits, on for the first 8: an 8-pixel dash followed by an 8-pixel gap.
        style.LinePattern = 0xFF00
        style.PatternOffOpacity = 0.0
        style.PatternOffColorCIELabValue = _cielab(_WHITE)
    style.ShadowStyle = "OFF"
    style.ShadowOffsetX = 0.0
    style.ShadowOffsetY = 0.0
    style.ShadowColorCIELabValue = _cielab(_WHITE)
    style.ShadowOpacity = 0.0
    return style


def _cielab(rgb: tuple[int, int, int]) -> list[int]:
    """Convert an sRGB colour to CIELab in the unsigned 16-bit encoding of PS3.3 C.10.7.1.1."""
    return list(hd.color.CIELabColor.from_rgb(*rgb).value)


def _box_text(box: Box, label: str, source: Dataset, group: hd.pr.GraphicGroup) -> hd.pr.TextObject:
    """Build the label of ``box`` in a bounding box just above it, or below it at the top edge."""
    rows, columns = int(source.Rows), int(source.Columns)
    height = max(12.0, min(rows, columns) / 45.0)
    width = min(float(columns), height * 0.65 * max(len(label), 1))

    left = min(max(box.x0, 0.0), columns - width)
    top = box.y0 - height if box.y0 - height >= 0 else min(box.y1, rows - height)
    return hd.pr.TextObject(
        text_value=label,
        units=hd.pr.AnnotationUnitsValues.PIXEL,
        bounding_box=(left, top, left + width, top + height),
        text_justification=hd.pr.TextJustificationValues.LEFT,
        graphic_group=group,
    )


def _caption_texts(lines: Sequence[str]) -> list[hd.pr.TextObject]:
    """Build one text object per caption line, stacked from the top-left corner of the display."""
    texts = []
    for index, line in enumerate(lines):
        top = 0.01 + index * _CAPTION_LINE_HEIGHT
        texts.append(hd.pr.TextObject(
            text_value=line,
            units=hd.pr.AnnotationUnitsValues.DISPLAY,
            bounding_box=(_CAPTION_LEFT, top, _CAPTION_RIGHT, top + _CAPTION_LINE_HEIGHT),
            text_justification=hd.pr.TextJustificationValues.LEFT,
        ))
    return texts
