"""Patient names in Korean, UTF-8 and Japanese character sets: read, then copied unchanged into our outputs.

Each charset file from the shared data is read by the ensemble and turned into the overlay
Secondary Capture, the presentation state, the Structured Report and the Key Object Selection by
the reading job's own output step. Every output must carry the source's Specific Character Set
and the same Patient Name bytes. The files are not wrist radiographs, so each gets Body Part
Examined WRIST, View Position AP and Image Laterality R; the Korean file has no Pixel Data and gets
a synthesized phantom radiograph. Neither change touches the patient or study attributes under test.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from inference.ensemble import Ensemble
from inference.phantoms import generate_phantom
from listener.reading import StudyReader
from listener.settings import ReportingSettings, Settings
from tests.factories import shared_file
from tests.packages import untrained_package

PATIENT_NAME = 0x00100010

# File, Specific Character Set, Patient Name as pydicom decodes it.
CHARSET_FILES = {
    "korean": ("dicom/CR_chest_MONO1_Korean_ISO2022IR149_nopixels_chrKoreanMulti.dcm", ["", "ISO 2022 IR 149"],
               "김희중"),
    "utf8": ("dicom/CR_MONO1_10bit_JPEGLossless_ModalityLUTSeq_UTF8_fodicom.dcm", "ISO_IR 192", "XX^XX"),
    "japanese": ("dicom/OT_32x32_Japanese_ISO2022IR87_chrH31.dcm", ["", "ISO 2022 IR 87"],
                 "Yamada^Tarou=山田^太郎=やまだ^たろう"),
}


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Ensemble:
    return Ensemble(untrained_package(tmp_path_factory.mktemp("package")), device="cpu", gradcam=False)


def raw_patient_name(path: Path) -> bytes:
    """Return the Patient Name value as stored in the file, before any decoding."""
    return pydicom.dcmread(path).get_item(PATIENT_NAME).value


def as_wrist_radiograph(path: Path, folder: Path) -> Path:
    """Copy a charset file with wrist anatomy attributes and, where missing, a synthesized image."""
    dataset = pydicom.dcmread(path)
    dataset.BodyPartExamined, dataset.ViewPosition, dataset.ImageLaterality = "WRIST", "AP", "R"
    if "PixelData" not in dataset:
        phantom = generate_phantom(np.random.default_rng(5), body_part="wrist", view="AP", laterality="R")
        pixels = np.rint(phantom.image * 4095).astype(np.uint16)
        dataset.Rows, dataset.Columns = pixels.shape
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.PixelData = pixels.tobytes()
        dataset["PixelData"].VR = "OW"

    copy = folder / path.name
    dataset.save_as(copy, enforce_file_format=True)
    return copy


def build_outputs(ensemble: Ensemble, source: Dataset, language: str) -> list[Dataset]:
    """Read ``source`` and build every output object of the reading, the key objects included."""
    study = ensemble.read_study(str(source.StudyInstanceUID), [source])
    assert len(study.images) == 1, study.skipped
    positive = replace(study, images=(replace(study.images[0], positive=True),))

    reader = StudyReader(Settings(reporting=ReportingSettings(language=language)), None, None, ensemble)
    return [output.dataset for output in reader._build_outputs(positive, [source], None)]


@pytest.mark.parametrize("case", sorted(CHARSET_FILES))
def test_patient_name_decoded(case: str) -> None:
    relative, charset, name = CHARSET_FILES[case]

    dataset = pydicom.dcmread(shared_file(relative))

    assert dataset.SpecificCharacterSet == charset
    assert str(dataset.PatientName) == name


@pytest.mark.parametrize(("case", "language"), [("korean", "ko"), ("korean", "en"), ("utf8", "ko"), ("utf8", "en"),
                                              ("japanese", "en")])
def test_outputs_keep_name_bytes(case: str, language: str, ensemble: Ensemble, tmp_path: Path) -> None:
    relative, charset, name = CHARSET_FILES[case]
    path = as_wrist_radiograph(shared_file(relative), tmp_path)

    outputs = build_outputs(ensemble, pydicom.dcmread(path), language)

    assert len(outputs) == 4
    expected = raw_patient_name(path)
    for index, output in enumerate(outputs):
        written = tmp_path / f"output-{index}.dcm"
        output.save_as(written, enforce_file_format=True)
        read = pydicom.dcmread(written)
        assert read.SpecificCharacterSet == charset, type(output).__name__
        assert raw_patient_name(written) == expected, type(output).__name__
        assert str(read.PatientName) == name


def test_japanese_name_with_korean_labels(ensemble: Ensemble, tmp_path: Path) -> None:
    # ISO 2022 IR 87 cannot encode the Korean labels of the presentation state and key objects,
    # so those two objects switch to UTF-8 (reporting.identifiers.character_set_for): the name
    # keeps its characters there, not its bytes.
    relative, charset, name = CHARSET_FILES["japanese"]
    path = as_wrist_radiograph(shared_file(relative), tmp_path)

    outputs = build_outputs(ensemble, pydicom.dcmread(path), "ko")

    charsets = {type(output).__name__: output.SpecificCharacterSet for output in outputs}
    assert charsets["SCImage"] == charset
    assert charsets["Comprehensive3DSR"] == charset
    assert charsets["GrayscaleSoftcopyPresentationState"] == "ISO_IR 192"
    assert all(str(output.PatientName) == name for output in outputs)
