"""The ensemble on an untrained package: routing, voting and reasons, not accuracy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from inference.ensemble import Ensemble, soft_vote
from inference.findings import ImageFinding, MemberOutput, SkippedImage
from tests.factories import CHEST_CR, WRIST_FRACTURE_PNG, ct_slice, new_study, shared_file, wrist_dx
from tests.packages import untrained_package


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Ensemble:
    return Ensemble(untrained_package(tmp_path_factory.mktemp("package")), device="cpu")


def test_soft_vote_weights() -> None:
    outputs = [MemberOutput("a", "classifier", 0.9, 0.6), MemberOutput("b", "detector", 0.4, 0.4)]

    assert soft_vote(outputs) == pytest.approx(0.7)


def test_wrist_read_with_heatmap(ensemble: Ensemble) -> None:
    dataset = wrist_dx(WRIST_FRACTURE_PNG, new_study(), view_position="AP", laterality="R")

    finding = ensemble.read_image(dataset)

    assert isinstance(finding, ImageFinding)
    assert (finding.body_part, finding.view, finding.laterality) == ("wrist", "AP", "R")
    assert finding.heatmap.shape == (dataset.Rows, dataset.Columns)
    assert finding.display.dtype == np.uint8
    assert [member.member for member in finding.members] == ["classifier", "detector"]
    assert finding.probability == pytest.approx(soft_vote(finding.members))
    assert finding.positive == (finding.probability >= finding.threshold)


def test_chest_skipped_with_body_part(ensemble: Ensemble) -> None:
    outcome = ensemble.read_image(pydicom.dcmread(shared_file(CHEST_CR)))

    assert isinstance(outcome, SkippedImage)
    assert outcome.reason == "not an elbow or wrist radiograph (Body Part Examined: CHEST)"


def test_ct_skipped_as_not_radiograph(ensemble: Ensemble) -> None:
    outcome = ensemble.read_image(ct_slice(new_study()))

    assert isinstance(outcome, SkippedImage)
    assert outcome.reason.startswith("not a projection radiograph (Modality CT")


def test_study_positive_if_any_view(ensemble: Ensemble) -> None:
    study = new_study()
    datasets = [wrist_dx(WRIST_FRACTURE_PNG, study, view_position=view, laterality="R") for view in ("AP", "LL")]

    finding = ensemble.read_study(str(study.StudyInstanceUID), datasets)

    assert finding.views_read == ("AP", "LAT")
    assert finding.probability == max(image.probability for image in finding.images)
    assert finding.positive == any(image.positive for image in finding.images)


def test_package_mismatch_refused(tmp_path: Path) -> None:
    from inference.package import PackageError

    package = untrained_package(tmp_path / "package")
    (package / "detector.pt").write_bytes(b"not the weights")

    with pytest.raises(PackageError, match=r"SHA-256 of detector\.pt is [0-9a-f]{64}, the manifest expects"):
        Ensemble(package, device="cpu")
