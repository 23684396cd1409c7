"""Shared inputs for the reporting tests: a two-image wrist study written to disk and read back."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from inference.findings import FAT_PAD, FRACTURE, Box, ImageFinding, MemberOutput, SkippedImage, StudyFinding
from tests.factories import WRIST_FRACTURE_PNG, WRIST_NORMAL_PNGS, new_study, wrist_dx

KOREAN_NAME = "김희중"
KOREAN_CHARSET = ["", "ISO 2022 IR 149"]
UTF8_CHARSET = "ISO_IR 192"

# Fracture boxes of 0003_0662359226_01_WRI-R1_M011.png from its GRAZPEDWRI-DX Pascal VOC label
# (x0, y0, x1, y1 in source pixels). The findings built from them are hand-made, not model output.
LABELLED_FRACTURE_BOXES = ((210.0, 661.0, 335.0, 731.0), (404.0, 699.0, 474.0, 777.0))

MODEL_NAME = "pedfrac-ensemble"
MODEL_VERSION = "0.1.0"
MODEL_IDENTITY = f"{MODEL_NAME} {MODEL_VERSION}"

# dciodvfy (dicom3tools) prints the value of a dubious attribute between angle brackets. The
# value is dropped so that the warning set does not depend on the patient name's bytes.
_DUBIOUS_VALUE = re.compile(r"\[1\] = <.*?> - ")


@dataclass(frozen=True)
class WristStudy:
    """A wrist study read back from disk and the hand-made findings for it."""

    fracture: Dataset
    normal: Dataset
    finding: StudyFinding


def write_and_read(dataset: Dataset, path: Path) -> Dataset:
    """Write ``dataset`` as a PS3.10 file and read it back."""
    dataset.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def display_of(source: Dataset) -> np.ndarray:
    """8-bit display image of a 16-bit source, windowed between its 0.5 and 99.5 percentiles."""
    pixels = source.pixel_array.astype(np.float32)
    low, high = np.percentile(pixels, [0.5, 99.5])
    return np.clip((pixels - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)


def heatmap_around(shape: tuple[int, ...], boxes: tuple[Box, ...]) -> np.ndarray:
    """Gaussian heat centred on each box, a stand-in for a Grad-CAM map."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    heat = np.zeros(shape, dtype=np.float32)
    for box in boxes:
        centre_x, centre_y = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
        spread_x, spread_y = (box.x1 - box.x0) / 2, (box.y1 - box.y0) / 2
        heat = np.maximum(heat, np.exp(-(((columns - centre_x) / spread_x) ** 2 + ((rows - centre_y) / spread_y) ** 2)))
    return heat


def fracture_finding(source: Dataset, *, with_fat_pad: bool = False) -> ImageFinding:
    """Hand-made positive finding on the labelled fracture radiograph."""
    boxes = tuple(Box(FRACTURE, confidence, *corners) for confidence, corners in zip((0.87, 0.64), LABELLED_FRACTURE_BOXES))
    if with_fat_pad:
        boxes += (Box(FAT_PAD, 0.41, 30.0, 40.0, 90.0, 120.0),)

    display = display_of(source)
    return ImageFinding(
        sop_instance_uid=source.SOPInstanceUID,
        body_part="wrist",
        view="AP",
        laterality="R",
        view_source="ViewPosition",
        probability=0.91,
        threshold=0.5,
        positive=True,
        members=(MemberOutput("convnext_nano", "classifier", 0.9, 0.6), MemberOutput("yolov9t", "detector", 0.93, 0.4)),
        boxes=boxes,
        display=display,
        heatmap=heatmap_around(display.shape, boxes),
    )


def normal_finding(source: Dataset) -> ImageFinding:
    """Hand-made negative finding without boxes or heat map."""
    return ImageFinding(
        sop_instance_uid=source.SOPInstanceUID,
        body_part="wrist",
        view="AP",
        laterality="L",
        view_source="ViewPosition",
        probability=0.12,
        threshold=0.5,
        positive=False,
        members=(MemberOutput("convnext_nano", "classifier", 0.1, 0.6), MemberOutput("yolov9t", "detector", 0.15, 0.4)),
        boxes=(),
        display=display_of(source),
    )


def build_wrist_study(tmp_path: Path, *, patient_name: str, charset: str | list[str]) -> WristStudy:
    """Two wrist radiographs of one study, written and read back, with a skipped CT slice."""
    study = new_study(patient_name=patient_name, charset=charset)
    fracture = write_and_read(wrist_dx(WRIST_FRACTURE_PNG, study, laterality="R"), tmp_path / "fracture.dcm")
    normal = write_and_read(wrist_dx(WRIST_NORMAL_PNGS[0], study, laterality="L"), tmp_path / "normal.dcm")

    skipped = SkippedImage(sop_instance_uid=pydicom.uid.generate_uid(prefix=None), reason="CT image, not a radiograph")
    finding = StudyFinding(
        study_instance_uid=study.StudyInstanceUID,
        images=(fracture_finding(fracture, with_fat_pad=True), normal_finding(normal)),
        skipped=(skipped,),
        model_name=MODEL_NAME,
        model_version=MODEL_VERSION,
    )
    return WristStudy(fracture=fracture, normal=normal, finding=finding)


@pytest.fixture(params=[pytest.param((KOREAN_NAME, KOREAN_CHARSET), id="iso2022-ir149"), pytest.param((KOREAN_NAME, UTF8_CHARSET), id="utf8")])
def korean_study(request: pytest.FixtureRequest, tmp_path: Path) -> WristStudy:
    patient_name, charset = request.param
    return build_wrist_study(tmp_path, patient_name=patient_name, charset=charset)


@pytest.fixture
def wrist_study(tmp_path: Path) -> WristStudy:
    return build_wrist_study(tmp_path, patient_name="Test^Wrist", charset=UTF8_CHARSET)


def require_tool(name: str) -> str:
    """Path of a Debian DICOM tool; skip the test when it is missing, but fail in CI, where it must exist."""
    path = shutil.which(name)
    if path is not None:
        return path

    message = f"{name} is not installed; install the Debian package dcmtk (dsrdump) or dicom3tools (dciodvfy)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def dciodvfy(path: Path) -> tuple[list[str], set[str]]:
    """Run dciodvfy on ``path`` and return its error lines and the set of its warning lines."""
    result = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True, errors="replace", check=False)
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines()]

    errors = [line for line in lines if line.startswith("Error")]
    warnings = {_DUBIOUS_VALUE.sub("[1] = <value> - ", line) for line in lines if line.startswith("Warning")}
    return errors, warnings
