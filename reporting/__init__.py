"""DICOM outputs of a reading: overlay Secondary Captures and a TID 1500 Structured Report.

``render_overlay`` draws the heat map, boxes and caption over a source radiograph.
``build_secondary_capture`` wraps that overlay as a Secondary Capture Image.
``build_structured_report`` writes the study's findings as a Comprehensive 3D SR.
"""
from reporting.overlay import render_overlay
from reporting.secondary_capture import build_secondary_capture
from reporting.structured_report import build_structured_report

__all__ = ["build_secondary_capture", "build_structured_report", "render_overlay"]
