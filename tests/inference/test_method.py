"""The method's command sequence, run as a user runs it: index, train, cross-validate, package, evaluate, review.

The data are phantoms written in GRAZPEDWRI-DX's layout, joined by the real GRAZPEDWRI-DX sample,
and phantoms written as a DICOM folder. Models are tiny (timm's test_resnet, YOLOv8n at 96 px), so
the sequence runs in a few minutes on two cores. The tests check the method and that learning
happens, not the quality a real training run reaches.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.ensemble import Ensemble
from inference.package import verify_package
from inference.training.images import load_boxes, load_image
from inference.training.manifests import read_manifests
from inference.training.runs import load_canonical
from inference.training.splits import SPLITS, check_disjoint
from listener.cli import main
from tests.factories import new_study, phantom_dx, shared_data_dir

pytestmark = pytest.mark.slow

CLASSIFIER_FLAGS = ["--architecture", "test_resnet", "--input-size", "128", "--epochs", "10", "--batch-size", "8",
                    "--learning-rate", "3e-3", "--patience", "10", "--device", "cpu"]


def run(*argv: str) -> None:
    assert main(["--log-level", "WARNING", *argv]) == 0, f"pedfrac {' '.join(argv)} failed"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Index 200 wrist and 30 elbow phantom patients plus the shared GRAZPEDWRI-DX sample, then train."""
    folder = tmp_path_factory.mktemp("method")
    sample = shared_data_dir() / "grazpedwri_dx_sample"
    run("make-phantoms", "--out", str(folder / "wrists"), "--patients", "200", "--body-part", "wrist", "--seed", "11")
    run("make-phantoms", "--out", str(folder / "elbows"), "--patients", "30", "--body-part", "elbow", "--seed", "12",
        "--first-patient-number", "8000")
    run("index", "--grazpedwri", str(folder / "wrists"), "--grazpedwri", str(folder / "elbows"),
        "--grazpedwri", str(sample), "--out", str(folder / "manifests"), "--seed", "1")

    run("train-classifier", "--manifests", str(folder / "manifests"), "--body-part", "wrist",
        "--out", str(folder / "runs" / "wrist-resnet"), *CLASSIFIER_FLAGS)
    run("train-classifier", "--manifests", str(folder / "manifests"), "--body-part", "elbow",
        "--out", str(folder / "runs" / "elbow-resnet"), *CLASSIFIER_FLAGS)
    run("train-detector", "--manifests", str(folder / "manifests"), "--out", str(folder / "runs" / "detector"),
        "--model", "yolov8n.yaml", "--input-size", "96", "--epochs", "1", "--batch-size", "8", "--device", "cpu")
    run("package", "--runs", *(str(folder / "runs" / name) for name in ("wrist-resnet", "elbow-resnet", "detector")),
        "--manifests", str(folder / "manifests"), "--out", str(folder / "package"), "--name", "method-test",
        "--version", "0.0.1", "--report", str(folder / "package-report"), "--device", "cpu")
    return folder


def test_index_splits_by_patient(work: Path) -> None:
    splits = {split: read_manifests(work / "manifests", split) for split in SPLITS}
    check_disjoint(splits)
    records = [record for split in splits.values() for record in split]

    assert len(records) == 2 * 230 + 2
    assert sum(record.patient_id in ("0001", "0004") for record in records) == 2
    for split in SPLITS:
        parts = {(r.body_part, r.label) for r in splits[split]}
        assert {("wrist", 0), ("wrist", 1), ("elbow", 0), ("elbow", 1)} <= parts, split
    assert (work / "manifests" / "wrist" / "AP_train.csv").is_file()
    assert (work / "manifests" / "elbow" / "LAT_val.csv").is_file()

    test_patients = {r.patient_id for r in splits["test"]}
    assert 0.15 < len(test_patients) / len({r.patient_id for r in records}) < 0.25


def test_classifier_run_learns(work: Path) -> None:
    run_file = json.loads((work / "runs" / "wrist-resnet" / "run.json").read_text())
    history = run_file["history"]

    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert run_file["validation"]["auroc"] > 0.7, [round(epoch["validation_auroc"], 3) for epoch in history]
    assert run_file["input_size"] == 128
    assert run_file["body_parts"] == ["wrist"]
    assert run_file["config"]["flip"] is False
    assert json.loads((work / "runs" / "elbow-resnet" / "run.json").read_text())["config"]["flip"] is True


def test_package_carries_thresholds_metrics_and_data(work: Path) -> None:
    manifest = verify_package(work / "package")

    assert [m.name for m in manifest.members] == ["wrist-resnet", "elbow-resnet", "detector"]
    assert {(p.body_part, p.view) for p in manifest.operating_points} == {
        ("wrist", "AP"), ("wrist", "LAT"), ("elbow", "AP"), ("elbow", "LAT")}
    assert all(0.0 <= p.threshold <= 1.0 for p in manifest.operating_points)
    assert manifest.members[0].weight == 0.6
    assert manifest.members[2].weight == 0.4
    for key in ("validation_accuracy_wrist-resnet", "test_auroc_wrist_AP", "test_auroc_lower_per_patient",
                "test_sensitivity_per_patient", "test_map50"):
        assert key in manifest.metrics, key
    assert manifest.metrics["test_auroc_wrist_AP"] > 0.6
    assert "GRAZPEDWRI-DX" in manifest.training_data
    assert "pedfrac phantoms" in manifest.training_data
    assert all(f"{split} " in manifest.training_data for split in SPLITS)


def test_package_report_has_every_table_and_curve(work: Path) -> None:
    report = (work / "package-report" / "evaluation.md").read_text()
    sections = json.loads((work / "package-report" / "evaluation.json").read_text())["sections"]

    assert "| Model | AUROC (95% CI) | ACC (95% CI) | F1 | Sens (95% CI) | Spec (95% CI) | Threshold | n (pos/neg) |" in report
    for rule in ("soft vote, equal weights", "hard vote, majority", "unanimous vote",
                 "soft vote weighted by member accuracy", "fixed weights 0.6 classifier / 0.4 detector",
                 "member wrist-resnet alone", "member detector alone"):
        assert f"| {rule} |" in report, rule
    assert "## Boxes" in report
    package_rows = sections["Package, per image and per view"]
    assert set(package_rows) == {"all images", "wrist AP", "wrist LAT", "elbow AP", "elbow LAT", "per patient"}
    assert package_rows["per patient"]["n"] < package_rows["all images"]["n"]
    for name in ("roc_package.png", "roc_image.png", "roc_patient.png"):
        assert cv2.imread(str(work / "package-report" / name)) is not None, name


def test_evaluate_and_gradcam_commands(work: Path) -> None:
    run("evaluate", "--models", str(work / "package"), "--manifests", str(work / "manifests"), "--split", "test",
        "--out", str(work / "evaluation"), "--device", "cpu")
    run("gradcam", "--models", str(work / "package"), "--manifests", str(work / "manifests"), "--split", "test",
        "--out", str(work / "review"), "--limit", "5", "--language", "ko", "--device", "cpu")

    scores = list(csv.DictReader((work / "evaluation" / "scores.csv").open(encoding="utf-8")))
    assert len(scores) == len(read_manifests(work / "manifests", "test"))
    assert {"wrist-resnet", "elbow-resnet", "detector", "ensemble"} <= set(scores[0])

    rows = list(csv.DictReader((work / "review" / "review.csv").open(encoding="utf-8")))
    assert len(rows) == 5
    assert {row["outcome"] for row in rows} <= {"true positive", "false negative", "false positive", "true negative"}
    picture = cv2.imread(str(work / "review" / rows[0]["review_image"]))
    source = cv2.imread(rows[0]["image_path"], cv2.IMREAD_UNCHANGED)
    assert picture.shape[:2] == source.shape[:2]


def test_cross_validation_holds_out_each_patient_once(work: Path) -> None:
    run("cross-validate", "--manifests", str(work / "manifests"), "--body-part", "wrist",
        "--out", str(work / "crossval"), *CLASSIFIER_FLAGS[:4], "--epochs", "3", "--device", "cpu")
    result = json.loads((work / "crossval" / "crossval.json").read_text())

    pool = read_manifests(work / "manifests", "train", body_part="wrist") + read_manifests(
        work / "manifests", "val", body_part="wrist")
    assert len(result["per_fold"]) == 5
    assert sum(fold["held_out_images"] for fold in result["per_fold"]) == len(pool)
    assert result["summary"]["auroc"]["folds"] == 5
    assert result["summary"]["auroc"]["sd"] is not None
    assert "mean ± SD" in (work / "crossval" / "crossval.md").read_text()


def test_package_reads_dicom_study(work: Path) -> None:
    study = new_study(patient_name="홍^길동", charset="ISO_IR 192")
    datasets = [phantom_dx(study, body_part="wrist", view=view, laterality="L", fracture=True, seed=index)
                for index, view in enumerate(("AP", "LAT"))]

    finding = Ensemble(work / "package", device="cpu").read_study(study.StudyInstanceUID, datasets)

    assert finding.model_name == "method-test"
    assert len(finding.images) == 2
    assert {image.view for image in finding.images} == {"AP", "LAT"}
    assert all(image.heatmap is not None and 0.0 <= image.probability <= 1.0 for image in finding.images)


def test_dicom_folder_sequence(tmp_path: Path) -> None:
    run("make-phantoms", "--out", str(tmp_path / "phantoms"), "--patients", "40", "--layout", "dicom",
        "--body-part", "wrist", "--seed", "13")
    run("index", "--dicom", str(tmp_path / "phantoms" / "dicom"), "--labels", str(tmp_path / "phantoms" / "labels.csv"),
        "--out", str(tmp_path / "manifests"))
    records = read_manifests(tmp_path / "manifests", "train")
    assert records and all(len(r.patient_id) == 16 and not r.patient_id.startswith("PH") for r in records)

    run("train-classifier", "--manifests", str(tmp_path / "manifests"), "--body-part", "wrist",
        "--out", str(tmp_path / "runs" / "wrist"), *CLASSIFIER_FLAGS[:4], "--epochs", "2", "--device", "cpu")
    run("package", "--runs", str(tmp_path / "runs" / "wrist"), "--manifests", str(tmp_path / "manifests"),
        "--out", str(tmp_path / "package"), "--name", "dicom-test", "--version", "1", "--device", "cpu")
    run("evaluate", "--models", str(tmp_path / "package"), "--manifests", str(tmp_path / "manifests"),
        "--out", str(tmp_path / "evaluation"), "--tune-split", "none", "--device", "cpu")

    manifest = verify_package(tmp_path / "package")
    assert {p.body_part for p in manifest.operating_points} == {"wrist"}
    assert "optimistic" in (tmp_path / "evaluation" / "evaluation.md").read_text()


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "--out", str(tmp_path / "manifests")]) == 1
    assert "no image was indexed" in capsys.readouterr().out

    assert main(["index", "--dicom", str(tmp_path), "--out", str(tmp_path / "m")]) == 1
    assert "--labels" in capsys.readouterr().out

    assert main(["train-classifier", "--manifests", str(tmp_path / "absent"), "--body-part", "wrist",
                 "--out", str(tmp_path / "run")]) == 1
    assert not (tmp_path / "run" / "run.json").exists()


def test_prepared_inputs_mirror_elbows_to_the_canonical_side(work: Path) -> None:
    left = next(r for r in read_manifests(work / "manifests", "train", body_part="elbow") if r.laterality == "L")
    image, boxes = load_canonical(left)

    original = load_image(left)
    assert np.array_equal(image, original[:, ::-1])
    columns = original.shape[1]
    assert [(label, columns - x1, columns - x0) for label, x0, _y0, x1, _y1 in load_boxes(left, original.shape)] == \
        [(label, x0, x1) for label, x0, _y0, x1, _y1 in boxes]


def test_outputs_are_not_replaced_without_force(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (work / "package" / "manifest.json").read_bytes()

    status = main(["package", "--runs", str(work / "runs" / "wrist-resnet"), "--manifests", str(work / "manifests"),
                   "--out", str(work / "package"), "--name", "other", "--version", "2", "--device", "cpu"])

    assert status == 1
    assert "--force" in capsys.readouterr().out
    assert (work / "package" / "manifest.json").read_bytes() == before


def test_index_refuses_an_image_indexed_twice(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = Path(read_manifests(work / "manifests", "train", body_part="wrist")[0].image_path)
    copy = tmp_path / image.name
    copy.write_bytes(image.read_bytes())
    (tmp_path / "extra.csv").write_text(f"image_path,patient_id,label,body_part,view\n{copy.name},X1,1,wrist,AP\n")

    status = main(["index", "--grazpedwri", str(work / "wrists"), "--csv", str(tmp_path / "extra.csv"),
                   "--out", str(tmp_path / "manifests")])

    assert status == 1
    assert "indexed more than once" in capsys.readouterr().out
    assert not (tmp_path / "manifests").exists()


def test_index_warns_shared_patient_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, seed in (("a", "1"), ("b", "2")):
        run("make-phantoms", "--out", str(tmp_path / name), "--patients", "6", "--body-part", "wrist", "--seed", seed)

    run("index", "--grazpedwri", str(tmp_path / "a"), "--grazpedwri", str(tmp_path / "b"),
        "--out", str(tmp_path / "manifests"))

    assert "6 patient ids occur in more than one input" in capsys.readouterr().out
