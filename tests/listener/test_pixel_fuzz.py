"""Property tests: what the SCP accepts, the pixel pipeline reads or rejects with a reason.

Hypothesis draws the Image Pixel module attributes, the rescale and window values and the Pixel
Data bytes. A data set that :func:`check_dataset` accepts must give :func:`display_image` either a
finite image in [0, 1] or a ``PixelError``, and the model input built from that image must have
the requested size. Any other exception would fail a job on a study the SCP acknowledged with "Success".
Runs are derandomised and bounded in examples, so they take the same time and cases every run.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from inference.pixels import PixelError, display_image
from inference.preprocess import model_input
from listener.inspection import check_dataset

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
EXAMPLES = 1500

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

finite_or_odd = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e-12, 1e30, -1e30, float("inf"), float("nan")]),
)


class _Request:
    AffectedSOPInstanceUID = "1.2.826.0.1.3680043.10.1187.9.1"
    AffectedSOPClassUID = DX_FOR_PRESENTATION


@st.composite
def image_datasets(draw: st.DrawFn, *, colour: bool = False) -> Dataset:
    """A DX data set with drawn image attributes, transforms and Pixel Data (grey or colour)."""
    ds = Dataset()
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = _Request.AffectedSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1187.9"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1187.9.2"
    ds.Modality = "DX"

    bits = draw(st.sampled_from([8, 16, 32]))
    samples = 3 if colour else 1
    ds.Rows = draw(st.integers(1, 40))
    ds.Columns = draw(st.integers(1, 40))
    ds.BitsAllocated = bits
    ds.BitsStored = draw(st.integers(1, bits))
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = draw(st.sampled_from([0, 1]))
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = draw(st.sampled_from(
        ["MONOCHROME1", "MONOCHROME2"] if samples == 1 else ["RGB", "YBR_FULL", "MONOCHROME2"]))
    if samples == 3:
        ds.PlanarConfiguration = draw(st.sampled_from([0, 1]))
    if draw(st.booleans()):
        ds.NumberOfFrames = draw(st.integers(1, 3))

    _draw_transforms(draw, ds)

    expected = ds.Rows * ds.Columns * samples * int(ds.get("NumberOfFrames", 1)) * bits // 8
    extra = draw(st.sampled_from([0, 0, 0, 1, 2, 7]))
    ds.PixelData = draw(st.binary(min_size=expected + extra, max_size=expected + extra))

    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _draw_transforms(draw: st.DrawFn, ds: Dataset) -> None:
    if draw(st.booleans()):
        ds.RescaleSlope = draw(finite_or_odd)
        ds.RescaleIntercept = draw(finite_or_odd)
    if draw(st.booleans()):
        ds.WindowCenter = draw(finite_or_odd)
        ds.WindowWidth = draw(finite_or_odd)
        ds.VOILUTFunction = draw(st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "BOGUS"]))
    if draw(st.booleans()):
        item = Dataset()
        entries = draw(st.integers(1, 64))
        item.LUTDescriptor = [entries, draw(st.integers(0, 4096)), draw(st.sampled_from([8, 12, 16]))]
        item.LUTData = draw(st.lists(st.integers(0, 65535), min_size=entries, max_size=entries))
        ds.VOILUTSequence = [item]


@pytest.mark.slow
@FUZZ
@given(dataset=image_datasets())
def test_accepted_grey_read_or_rejected(dataset: Dataset) -> None:
    check_display_contract(dataset)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(dataset=image_datasets(colour=True))
def test_accepted_colour_read_or_rejected(dataset: Dataset) -> None:
    check_display_contract(dataset)


def check_display_contract(dataset: Dataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = check_dataset(dataset, _Request())
        if problem is not None:
            return

        try:
            image = display_image(dataset)
        except PixelError:
            return

        model, _geometry = model_input(image, 64)

    assert image.ndim == 2
    assert image.dtype == np.float32
    assert np.isfinite(image).all()
    assert image.min() >= 0.0
    assert image.max() <= 1.0
    assert model.shape == (64, 64)

