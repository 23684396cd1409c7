"""What the ensemble reads and how: canonical mirror, view pairs, the view classifier, the policy.

The packages have untrained weights, so these tests check routing and records, never accuracy.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset

from inference.ensemble import Ensemble
from inference.findings import ImageFinding, SkippedImage
from inference.package import VIEW_CLASSES
from inference.preprocess import letterbox_geometry
from inference.training.view import add_view_member, create_view_model, save_view_classifier
from tests.factories import new_study, phantom_dx, shared_file
from tests.packages import untrained_package


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_package(tmp_path_factory.mktemp("package") / "plain")


@pytest.fixture(scope="module")
def ensemble(package: Path) -> Ensemble:
    return Ensemble(package, device="cpu", gradcam=False)


def with_view_member(package: Path, folder: Path, classes: tuple[str, ...], *, other_bias: float = 0.0) -> Ensemble:
    """Copy ``package`` and add an untrained view classifier that always decides (minimum confidence 0).

    ``other_bias`` is added to the logit of the last class, to make it win.
    """
    folder = Path(shutil.copytree(package, folder))
    model = create_view_model("mobilenetv3_small_050", len(classes))
    with torch.no_grad():
        model.get_classifier().bias[-1] += other_bias
    weights = save_view_classifier(model, folder.parent / f"{folder.name}-view.pt")
    add_view_member(folder, weights, classes=classes, architecture="mobilenetv3_small_050", input_size=64,
                    min_confidence=0.0)
    return Ensemble(folder, device="cpu", gradcam=False)


@pytest.fixture(scope="module")
def view_ensemble(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Ensemble:
    """The package with a view classifier of the four elbow and wrist views only."""
    return with_view_member(package, tmp_path_factory.mktemp("package") / "views", VIEW_CLASSES[:-1])


@pytest.fixture(scope="module")
def other_ensemble(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Ensemble:
    """The package with a view classifier whose "other" class always wins."""
    return with_view_member(package, tmp_path_factory.mktemp("package") / "other", VIEW_CLASSES, other_bias=100.0)


def elbow(study: Dataset, view: str, laterality: str, seed: int) -> Dataset:
    return phantom_dx(study, body_part="elbow", view=view, laterality=laterality, fracture=False, seed=seed)


def silent(dataset: Dataset) -> Dataset:
    """Remove every attribute that names body part, view or side."""
    for keyword in ("BodyPartExamined", "ViewPosition", "SeriesDescription", "StudyDescription", "ProtocolName",
                    "ImageLaterality", "Laterality", "PatientOrientation"):
        if keyword in dataset:
            delattr(dataset, keyword)
    return dataset


def step_names(finding: ImageFinding) -> list[str]:
    return [step.name for step in finding.steps]


# ----------------------------------------------------------------------------------------------
# Every shared DICOM file: none is an elbow or wrist radiograph, and each is skipped with its reason.

SHARED_REASONS = {
    "CR_MONO1_10bit_JPEGLossless_ModalityLUTSeq_UTF8_fodicom.dcm":
        "not an elbow or wrist radiograph (SeriesDescription says 'TEETH')",
    "CR_chest_MONO1_Korean_ISO2022IR149_nopixels_chrKoreanMulti.dcm": "Pixel Data (7FE0,0010) is missing",
    "CR_chest_PA_MONO1_15bit_J2K_lossy_RG1_J2KI.dcm": "not an elbow or wrist radiograph (Body Part Examined: CHEST)",
    "CR_cspine_MONO1_12bit_16x16_pydicom_CR1.dcm": "not an elbow or wrist radiograph (Body Part Examined: CSPINE)",
    "CR_cspine_MONO1_12bit_16x16_pydicom_CR2.dcm": "not an elbow or wrist radiograph (Body Part Examined: CSPINE)",
    "CR_extremity_AP_MONO1_10bit_J2K_lossy_RG3_J2KI.dcm":
        "not an elbow or wrist radiograph (AcquisitionDeviceProcessingDescription says 'LOWER LEG')",
    "OT_32x32_Japanese_ISO2022IR87_chrH31.dcm": "not an elbow or wrist radiograph (Body Part Examined: not stated)",
    "OT_8bit_VOILUTSequence_vlut_04.dcm": "not an elbow or wrist radiograph (Body Part Examined: not stated)",
}


@pytest.mark.parametrize("name", sorted(SHARED_REASONS))
def test_shared_dicom_skip_reason(name: str, ensemble: Ensemble) -> None:
    outcome = ensemble.read_image(pydicom.dcmread(shared_file(f"dicom/{name}")))

    assert isinstance(outcome, SkippedImage)
    assert outcome.reason == SHARED_REASONS[name]


# ----------------------------------------------------------------------------------------------
# Canonical side and recorded steps.


def test_left_elbow_mirrored(ensemble: Ensemble) -> None:
    dataset = elbow(new_study(), "AP", "L", seed=1)

    finding = ensemble.read_image(dataset)

    assert "mirror to canonical side" in step_names(finding)
    assert finding.steps[-1].describe().startswith("input of detector: mirrored=True")


def test_right_elbow_not_mirrored(ensemble: Ensemble) -> None:
    finding = ensemble.read_image(elbow(new_study(), "AP", "R", seed=2))

    assert "mirror to canonical side" not in step_names(finding)


def test_left_wrist_not_mirrored(ensemble: Ensemble) -> None:
    dataset = phantom_dx(new_study(), body_part="wrist", view="AP", laterality="L", fracture=False, seed=3)

    finding = ensemble.read_image(dataset)

    assert "mirror to canonical side" not in step_names(finding)


def test_steps_recorded_in_order(ensemble: Ensemble) -> None:
    finding = ensemble.read_image(elbow(new_study(), "LAT", "L", seed=4))

    assert step_names(finding) == ["decode", "modality LUT", "VOI LUT", "mirror to canonical side",
                                   "input of classifier", "input of detector"]
    geometry = letterbox_geometry(finding.display.shape, 128, flip=True)
    assert finding.steps[4].describe() == (
        "input of classifier: mirrored=True, to_8_bits=x255 rounded, clahe_clip_limit=2, clahe_tile_grid=8, "
        f"size=128, scale={geometry.scale:.6g}, pad_x={geometry.pad_x}, pad_y={geometry.pad_y}"
    )


def test_sources_recorded(ensemble: Ensemble) -> None:
    finding = ensemble.read_image(elbow(new_study(), "LAT", "R", seed=5))

    assert finding.body_part_source == "BodyPartExamined"
    assert finding.view_source == "SeriesDescription"


# ----------------------------------------------------------------------------------------------
# Pairs.


def test_two_elbows_two_pairs(ensemble: Ensemble) -> None:
    study = new_study()
    datasets = [elbow(study, view, side, seed) for seed, (view, side) in
                enumerate([("AP", "L"), ("LAT", "L"), ("AP", "R"), ("LAT", "R")], start=10)]

    finding = ensemble.read_study(str(study.StudyInstanceUID), datasets)

    assert [(pair.laterality, pair.complete) for pair in finding.pairs] == [("R", True), ("L", True)]
    assert finding.pairs[1].ap == (str(datasets[0].SOPInstanceUID),)


def test_single_view_said(ensemble: Ensemble) -> None:
    study = new_study()

    finding = ensemble.read_study(str(study.StudyInstanceUID), [elbow(study, "AP", "R", seed=20)])

    assert len(finding.pairs) == 1
    assert finding.pairs[0].single_view


def test_oblique_listed_not_read(ensemble: Ensemble) -> None:
    study = new_study()
    oblique = elbow(study, "AP", "R", seed=21)
    oblique.ViewPosition = ""
    oblique.SeriesDescription = "ELBOW OBLIQUE"
    datasets = [elbow(study, "AP", "R", seed=22), elbow(study, "LAT", "R", seed=23), oblique]

    finding = ensemble.read_study(str(study.StudyInstanceUID), datasets)

    assert finding.pairs[0].unread == (str(oblique.SOPInstanceUID),)
    assert finding.pairs[0].complete
    assert finding.skipped[0].reason == "elbow view is not AP or lateral (SeriesDescription says 'OBLIQUE')"


def test_repeated_view_kept(ensemble: Ensemble) -> None:
    study = new_study()
    datasets = [elbow(study, "AP", "R", seed=24), elbow(study, "AP", "R", seed=25), elbow(study, "LAT", "R", seed=26)]

    finding = ensemble.read_study(str(study.StudyInstanceUID), datasets)

    assert len(finding.images) == 3
    assert len(finding.pairs[0].ap) == 2
    assert finding.pairs[0].repeated


def test_side_taken_from_other_view(ensemble: Ensemble) -> None:
    study = new_study()
    lateral = elbow(study, "LAT", "R", seed=27)
    del lateral.ImageLaterality
    del lateral.Laterality

    finding = ensemble.read_study(str(study.StudyInstanceUID), [elbow(study, "AP", "R", seed=28), lateral])

    assert len(finding.pairs) == 1
    assert finding.pairs[0].side_source == "assumed"


# ----------------------------------------------------------------------------------------------
# Non-conformance policy.


def nonconformant(seed: int) -> Dataset:
    dataset = elbow(new_study(), "AP", "R", seed=seed)
    dataset.HighBit = 15  # Bits Stored is 12
    return dataset


def test_policy_reject_skips(ensemble: Ensemble) -> None:
    outcome = ensemble.read_image(nonconformant(30), policy="reject")

    assert isinstance(outcome, SkippedImage)
    assert outcome.reason == ("non-conformant image rejected by policy: High Bit (0028,0102) is 15, expected Bits "
                              "Stored (0028,0101) - 1 = 11")


def test_policy_warn_records(ensemble: Ensemble, caplog: pytest.LogCaptureFixture) -> None:
    dataset = nonconformant(31)

    finding = ensemble.read_image(dataset, policy="warn")

    assert finding.nonconformance == ("High Bit (0028,0102) is 15, expected Bits Stored (0028,0101) - 1 = 11",)
    assert str(dataset.SOPInstanceUID) in caplog.text


def test_policy_ignore_silent(ensemble: Ensemble) -> None:
    finding = ensemble.read_image(nonconformant(32), policy="ignore")

    assert finding.nonconformance == ()


def test_contradiction_settled_by_precedence(ensemble: Ensemble) -> None:
    dataset = elbow(new_study(), "AP", "R", seed=33)
    dataset.SeriesDescription = "ELBOW LATERAL"

    finding = ensemble.read_image(dataset)

    assert (finding.view, finding.view_source) == ("AP", "ViewPosition")
    assert finding.nonconformance == ("SeriesDescription (0008,103E) says LAT ('LATERAL'), but ViewPosition "
                                      "(0018,5101) says AP ('AP')",)


def test_contradiction_rejected(ensemble: Ensemble) -> None:
    dataset = elbow(new_study(), "AP", "R", seed=34)
    dataset.SeriesDescription = "ELBOW LATERAL"

    outcome = ensemble.read_image(dataset, policy="reject")

    assert isinstance(outcome, SkippedImage)
    assert "SeriesDescription (0008,103E) says LAT" in outcome.reason


def test_multiframe_refused(ensemble: Ensemble) -> None:
    dataset = elbow(new_study(), "AP", "R", seed=35)
    dataset.NumberOfFrames = 2
    dataset.Rows = dataset.Rows // 2

    outcome = ensemble.read_image(dataset)

    assert outcome.reason.startswith("Number of Frames (0028,0008) is 2: multi-frame radiographs are not read")


# ----------------------------------------------------------------------------------------------
# The view classifier.


def test_silent_tags_without_classifier_skipped(ensemble: Ensemble) -> None:
    outcome = ensemble.read_image(silent(elbow(new_study(), "AP", "R", seed=40)))

    assert outcome.reason == "not an elbow or wrist radiograph (Body Part Examined: not stated)"


def test_silent_tags_classified(view_ensemble: Ensemble) -> None:
    finding = view_ensemble.read_image(silent(elbow(new_study(), "AP", "R", seed=41)))

    assert finding.view_source.startswith("view classifier view-classifier (p=")
    assert finding.body_part_source == finding.view_source
    assert "input of view-classifier" in step_names(finding)


def test_known_body_part_kept_by_classifier(view_ensemble: Ensemble) -> None:
    dataset = silent(elbow(new_study(), "AP", "R", seed=42))
    dataset.BodyPartExamined = "ELBOW"

    finding = view_ensemble.read_image(dataset)

    assert (finding.body_part, finding.body_part_source) == ("elbow", "BodyPartExamined")
    assert finding.view_source.startswith("view classifier")


def test_contradiction_goes_to_classifier(view_ensemble: Ensemble) -> None:
    dataset = elbow(new_study(), "AP", "R", seed=43)
    dataset.SeriesDescription = "ELBOW LATERAL"

    finding = view_ensemble.read_image(dataset)

    assert finding.view_source.startswith("view classifier")
    assert finding.nonconformance == ()


def test_other_body_part_not_classified(view_ensemble: Ensemble) -> None:
    dataset = elbow(new_study(), "AP", "R", seed=44)
    dataset.BodyPartExamined = "CHEST"
    dataset.SeriesDescription = "CHEST PA"

    outcome = view_ensemble.read_image(dataset)

    assert outcome.reason == "not an elbow or wrist radiograph (Body Part Examined: CHEST)"


def test_other_class_skips_image(other_ensemble: Ensemble) -> None:
    outcome = other_ensemble.read_image(silent(elbow(new_study(), "AP", "R", seed=46)))

    assert isinstance(outcome, SkippedImage)
    assert outcome.reason.startswith("not an elbow or wrist radiograph (view classifier view-classifier (p=1.00) "
                                      "says 'other')")


def test_other_class_unused_when_body_part_known(other_ensemble: Ensemble) -> None:
    dataset = silent(elbow(new_study(), "AP", "R", seed=47))
    dataset.BodyPartExamined = "ELBOW"

    finding = other_ensemble.read_image(dataset)

    assert finding.body_part == "elbow"
    assert finding.view_source.startswith("view classifier")


def test_display_kept_in_source_orientation(ensemble: Ensemble) -> None:
    dataset = elbow(new_study(), "AP", "L", seed=45)

    finding = ensemble.read_image(dataset)

    expected = np.rint(dataset.pixel_array / 4095 * 255)
    assert np.abs(finding.display.astype(float) - expected).mean() < 40
    assert finding.display.shape == (dataset.Rows, dataset.Columns)
