"""Checks of image attributes against PS3.3 and the ignore / warn / reject policy."""
from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest

from inference.conformance import apply_policy, find_problems
from tests.factories import dx_from_pixels, new_study, shared_file


def conformant():  # noqa: ANN201 - pydicom Dataset
    return dx_from_pixels(np.zeros((4, 4), dtype=np.uint16), new_study())


def test_conformant_dx_has_no_problem() -> None:
    assert find_problems(conformant()) == []


@pytest.mark.parametrize(("changes", "problem"), [
    ({"BitsStored": 20}, "Bits Stored (0028,0101) is 20, expected 1 to Bits Allocated (0028,0100) 16"),
    ({"HighBit": 11}, "High Bit (0028,0102) is 11, expected Bits Stored (0028,0101) - 1 = 15"),
    ({"PixelRepresentation": 2}, "Pixel Representation (0028,0103) is 2, expected 0 or 1"),
    ({"PhotometricInterpretation": "RGB"}, "Photometric Interpretation (0028,0004) is RGB, but CR and DX images"),
    ({"RescaleSlope": "0"}, "Rescale Slope (0028,1053) is 0, expected a finite number other than 0"),
    ({"WindowWidth": 0.5}, "Window Width (0028,1051) is 0.5, but VOI LUT Function LINEAR needs at least 1"),
    ({"VOILUTFunction": "GAMMA"}, "VOI LUT Function (0028,1056) is GAMMA, expected one of LINEAR"),
    ({"WindowCenter": [100, 200]}, "Window Center (0028,1050) has 2 values and Window Width (0028,1051) 1"),
    ({"ImageLaterality": "X"}, "Image Laterality (0020,0062) is X, expected one of R, L, U, B"),
])
def test_problem_found(changes: dict, problem: str) -> None:
    dataset = conformant()
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)

    assert find_problems(dataset)[0].startswith(problem)


def test_missing_photometric_found() -> None:
    dataset = conformant()
    del dataset.PhotometricInterpretation

    assert find_problems(dataset) == ["Photometric Interpretation (0028,0004) is missing; MONOCHROME2 is assumed"]


def test_modality_lut_and_rescale_in_real_file() -> None:
    # The fo-dicom CR has a Modality LUT Sequence and Rescale Slope/Intercept at once.
    dataset = pydicom.dcmread(shared_file("dicom/CR_MONO1_10bit_JPEGLossless_ModalityLUTSeq_UTF8_fodicom.dcm"))

    assert find_problems(dataset) == [
        "both Modality LUT Sequence (0028,3000) and Rescale Slope/Intercept (0028,1053)/(0028,1052) are present, "
        "but PS3.3 C.11.1 allows only one; the sequence is applied"
    ]


def test_missing_pixel_data_in_real_file() -> None:
    dataset = pydicom.dcmread(shared_file("dicom/CR_chest_MONO1_Korean_ISO2022IR149_nopixels_chrKoreanMulti.dcm"))

    assert find_problems(dataset) == ["Pixel Data (7FE0,0010) is missing, but an image must contain it"]


def test_reject_returns_reason() -> None:
    reason = apply_policy(["first", "second"], "reject", sop_instance_uid="1.2.3")

    assert reason == "non-conformant image rejected by policy: first; second"


def test_warn_logs_uid(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="inference.conformance"):
        reason = apply_policy(["first"], "warn", sop_instance_uid="1.2.3")

    assert reason is None
    assert caplog.messages == ["non-conformant image 1.2.3: first"]


def test_ignore_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    reason = apply_policy(["first"], "ignore", sop_instance_uid="1.2.3")

    assert reason is None
    assert caplog.messages == []


def test_unknown_policy_rejected() -> None:
    with pytest.raises(ValueError, match="non-conformance policy 'raise' is invalid"):
        apply_policy([], "raise", sop_instance_uid="1.2.3")  # type: ignore[arg-type]
