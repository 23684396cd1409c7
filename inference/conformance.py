"""Checks of a radiograph's image attributes against PS3.3, and the policy for what fails them.

Real modalities send files that break the standard in small ways: a Bits Stored larger than Bits
Allocated, both a Modality LUT Sequence and Rescale Slope/Intercept, a Window Width of 0. The
pixel pipeline reads most of them anyway (see :mod:`inference.pixels`). The policy, in the style
of pydicom's validation modes, sets what the service does about them:

``ignore``
    Read the image and say nothing.
``warn``
    Read the image, log a warning with the SOP Instance UID, and list the problems in the report.
``reject``
    Do not read the image: the SCP answers C-STORE with a failure and the ensemble skips the
    image with the problems as its reason.

The checks read only attributes, never Pixel Data, so the SCP can run them before it answers.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

logger = logging.getLogger(__name__)

Policy = Literal["ignore", "warn", "reject"]
POLICIES: tuple[Policy, ...] = ("ignore", "warn", "reject")

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1"})
GREY = ("MONOCHROME1", "MONOCHROME2")
THREE_SAMPLES = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
IMAGE_LATERALITIES = ("R", "L", "U", "B")


def find_problems(dataset: Dataset) -> list[str]:
    """Return each way the image attributes of ``dataset`` break PS3.3, as one sentence each.

    Reads (0008,0016) SOPClassUID, (7FE0,0010) PixelData, (0028,0002) SamplesPerPixel, (0028,0004)
    PhotometricInterpretation, (0028,0100) BitsAllocated, (0028,0101) BitsStored, (0028,0102)
    HighBit, (0028,0103) PixelRepresentation, (0028,1052) RescaleIntercept, (0028,1053)
    RescaleSlope, (0028,3000) ModalityLUTSequence, (0028,1050) WindowCenter, (0028,1051)
    WindowWidth, (0028,1056) VOILUTFunction and (0020,0062) ImageLaterality. Sentences name
    attributes by keyword and tag and quote only those values, never patient data.
    """
    problems: list[str] = []
    for check in (_pixel_data, _photometric, _bits, _modality_lut, _window, _laterality):
        problems.extend(check(dataset))
    return problems


def apply_policy(problems: Sequence[str], policy: Policy, *, sop_instance_uid: str,
                 what: str = "image") -> str | None:
    """Apply ``policy`` to the problems of one instance; return the reason to reject it, or None.

    Under ``warn`` the problems are logged as one warning that names the SOP Instance UID.
    """
    if policy not in POLICIES:
        raise ValueError(f"non-conformance policy {policy!r} is invalid; expected one of {', '.join(POLICIES)}")
    if not problems:
        return None

    if policy == "warn":
        logger.warning("non-conformant %s %s: %s", what, sop_instance_uid, "; ".join(problems))
    if policy == "reject":
        return f"non-conformant {what} rejected by policy: {'; '.join(problems)}"
    return None


def _int(dataset: Dataset, keyword: str) -> int | None:
    value = dataset.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _pixel_data(dataset: Dataset) -> list[str]:
    if "PixelData" in dataset:
        return []
    return ["Pixel Data (7FE0,0010) is missing, but an image must contain it"]


def _photometric(dataset: Dataset) -> list[str]:
    photometric = str(dataset.get("PhotometricInterpretation", "") or "").strip()
    samples = _int(dataset, "SamplesPerPixel")
    sop_class = str(dataset.get("SOPClassUID", ""))
    if not photometric:
        return ["Photometric Interpretation (0028,0004) is missing; MONOCHROME2 is assumed"]

    problems = []
    if (sop_class == CR_IMAGE_STORAGE or sop_class in DX_CLASSES) and photometric not in GREY:
        problems.append(f"Photometric Interpretation (0028,0004) is {photometric}, but CR and DX images must be "
                        "MONOCHROME1 or MONOCHROME2")
    expected = None
    if photometric in (*GREY, "PALETTE COLOR"):
        expected = 1
    elif photometric in THREE_SAMPLES:
        expected = 3
    if expected is not None and samples != expected:
        problems.append(f"Samples per Pixel (0028,0002) is {samples}, but Photometric Interpretation {photometric} "
                        f"needs {expected}")
    return problems


def _bits(dataset: Dataset) -> list[str]:
    allocated, stored, high = (_int(dataset, keyword) for keyword in ("BitsAllocated", "BitsStored", "HighBit"))
    problems = []
    if allocated is not None and stored is not None and not 1 <= stored <= allocated:
        problems.append(f"Bits Stored (0028,0101) is {stored}, expected 1 to Bits Allocated (0028,0100) {allocated}")
    if stored is not None and high is not None and high != stored - 1:
        problems.append(f"High Bit (0028,0102) is {high}, expected Bits Stored (0028,0101) - 1 = {stored - 1}")
    representation = _int(dataset, "PixelRepresentation")
    if representation not in (None, 0, 1):
        problems.append(f"Pixel Representation (0028,0103) is {representation}, expected 0 or 1")
    return problems


def _modality_lut(dataset: Dataset) -> list[str]:
    problems = []
    has_rescale = "RescaleSlope" in dataset or "RescaleIntercept" in dataset
    if dataset.get("ModalityLUTSequence") and has_rescale:
        problems.append("both Modality LUT Sequence (0028,3000) and Rescale Slope/Intercept (0028,1053)/(0028,1052) "
                        "are present, but PS3.3 C.11.1 allows only one; the sequence is applied")
    slope = dataset.get("RescaleSlope")
    if slope not in (None, ""):
        try:
            value = float(slope)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value == 0:
            problems.append(f"Rescale Slope (0028,1053) is {slope}, expected a finite number other than 0; "
                            "1 is applied")
    return problems


def _numbers(dataset: Dataset, keyword: str) -> list[float] | None:
    value = dataset.get(keyword)
    if value in (None, ""):
        return []
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        return [float(item) for item in items]
    except (TypeError, ValueError):
        return None


def _window(dataset: Dataset) -> list[str]:
    centers, widths = _numbers(dataset, "WindowCenter"), _numbers(dataset, "WindowWidth")
    if centers is None or widths is None:
        return ["Window Center (0028,1050) or Window Width (0028,1051) is not a number; the image is windowed by "
                "percentiles"]
    problems = []
    if len(centers) != len(widths):
        problems.append(f"Window Center (0028,1050) has {len(centers)} values and Window Width (0028,1051) "
                        f"{len(widths)}, expected as many; the first of each is applied")

    function = str(dataset.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        problems.append(f"VOI LUT Function (0028,1056) is {function}, expected one of {', '.join(VOI_FUNCTIONS)}; "
                        "LINEAR is applied")
        function = "LINEAR"

    if widths and not dataset.get("VOILUTSequence"):
        width = widths[0]
        valid = math.isfinite(width) and (width >= 1 if function == "LINEAR" else width > 0)
        if not valid:
            needed = "at least 1" if function == "LINEAR" else "more than 0"
            problems.append(f"Window Width (0028,1051) is {width:g}, but VOI LUT Function {function} needs {needed}; "
                            "the image is windowed by percentiles")
    return problems


def _laterality(dataset: Dataset) -> list[str]:
    value = str(dataset.get("ImageLaterality", "") or "").strip().upper()
    if value and value not in IMAGE_LATERALITIES:
        return [f"Image Laterality (0020,0062) is {value}, expected one of {', '.join(IMAGE_LATERALITIES)}"]
    return []
