"""DICOM outputs of a reading: overlays, presentation states, a TID 1500 Structured Report and key objects.

``render_overlay`` draws the heat map, boxes and caption over a source radiograph.
``build_secondary_capture`` wraps that overlay as a Secondary Capture Image.
``build_presentation_state`` puts the boxes and labels on the original image as graphics.
``build_structured_report`` writes the study's findings as a Comprehensive 3D SR.
``build_key_object_selection`` flags the positive images.
"""
from reporting.key_objects import build_key_object_selection
from reporting.overlay import render_overlay
from reporting.presentation_state import build_presentation_state
from reporting.secondary_capture import build_secondary_capture
from reporting.structured_report import ReportReference, build_structured_report

__all__ = [
    "ReportReference",
    "build_key_object_selection",
    "build_presentation_state",
    "build_secondary_capture",
    "build_structured_report",
    "render_overlay",
]
