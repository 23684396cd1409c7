"""Data set indexing, patient-level splits and manifests, on the shared GRAZPEDWRI-DX samples and phantoms."""
from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.phantoms import generate_dataset
from inference.training.images import load_boxes, load_image
from inference.training.indexing import index_csv, index_dicom_folder, index_grazpedwri
from inference.training.manifests import read_manifests, write_manifests
from inference.training.phantom_data import write_dicom_folder, write_grazpedwri_layout
from inference.training.records import CSV_COLUMNS, ImageRecord, pseudonym
from inference.training.splits import check_disjoint, patient_folds, split_by_patient
from tests.factories import shared_data_dir

LOGGER = "inference.training.indexing"
HEADER = ",".join(("filestem", "patient_id", "study_number", "timehash", "gender", "age", "laterality", "projection",
                   "initial_exam", "ao_classification", "cast", "diagnosis_uncertain", "osteopenia",
                   "fracture_visible", "metal", "pixel_spacing", "device_manufacturer"))


@pytest.fixture(scope="module")
def phantoms() -> list:
    # Three fractured and three normal patients, alternating wrist and elbow, two views each.
    # Seed 8 draws a lifted fat pad on the fractured elbow.
    return (generate_dataset(3, seed=8, fracture_rate=1.0)
            + generate_dataset(3, seed=8, fracture_rate=0.0, first_patient=3))


@pytest.fixture(scope="module")
def grazpedwri_phantoms(phantoms: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_grazpedwri_layout(phantoms, tmp_path_factory.mktemp("grazpedwri"))


@pytest.fixture(scope="module")
def dicom_phantoms(phantoms: list, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dicom_folder(phantoms, tmp_path_factory.mktemp("dicom"))


def make_records(patients: int, *, seed: int, positive_rate: float = 0.4) -> list[ImageRecord]:
    """One to three images per patient, all with the patient's label."""
    rng = np.random.default_rng(seed)
    records = []
    for patient in range(patients):
        label = int(rng.random() < positive_rate)
        for image in range(int(rng.integers(1, 4))):
            records.append(ImageRecord(
                image_path=f"/data/{patient:04d}_{image}.png", patient_id=f"P{patient:04d}", study_id="",
                label=label, body_part=("wrist", "elbow")[patient % 2], view=("AP", "LAT")[image % 2],
            ))
    return records


def patients_of(records: list[ImageRecord]) -> set[str]:
    return {record.patient_id for record in records}


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


# ----------------------------------------------------------------------------------------------
# GRAZPEDWRI-DX.


def test_shared_sample_indexes_two_normals() -> None:
    records = index_grazpedwri(shared_data_dir() / "grazpedwri_dx_sample")

    assert len(records) == 2
    assert {record.patient_id for record in records} == {"0001", "0004"}
    assert {record.label for record in records} == {0}
    assert {(record.body_part, record.view, record.laterality) for record in records} == {("wrist", "AP", "L")}
    assert {record.boxes_format for record in records} == {"yolo"}
    assert all(Path(record.image_path).is_file() for record in records)


def test_shared_fractures_index_two_fractures() -> None:
    records = index_grazpedwri(shared_data_dir() / "grazpedwri_dx_fractures")

    by_patient = {record.patient_id: record for record in records}
    assert sorted(by_patient) == ["0003", "3799"]
    assert {record.label for record in records} == {1}
    assert {record.source for record in records} == {"GRAZPEDWRI-DX"}
    assert by_patient["0003"].boxes_format == "voc"
    assert by_patient["0003"].study_id == "0003_01"
    assert by_patient["3799"].boxes_file == ""
    assert by_patient["3799"].laterality == "L"


def test_shared_voc_boxes_keep_fractures() -> None:
    record = next(record for record in index_grazpedwri(shared_data_dir() / "grazpedwri_dx_fractures")
                  if record.boxes_file)

    boxes = load_boxes(record, (1130, 704))

    assert sorted(boxes) == [("fracture", 210.0, 661.0, 335.0, 731.0), ("fracture", 404.0, 699.0, 474.0, 777.0)]


def test_shared_yolo_text_box_dropped() -> None:
    record = index_grazpedwri(shared_data_dir() / "grazpedwri_dx_sample")[0]

    assert Path(record.boxes_file).read_text(encoding="utf-8").startswith("8 ")
    assert load_boxes(record, (727, 494)) == []


def test_shared_png16_loads_windowed() -> None:
    record = next(record for record in index_grazpedwri(shared_data_dir() / "grazpedwri_dx_fractures")
                  if record.patient_id == "0003")

    image = load_image(record)

    assert image.dtype == np.float32
    assert image.shape == (1130, 704)
    assert image.min() == 0.0
    assert image.max() == 1.0
    assert 0.2 < float(np.median(image)) < 0.8


def grazpedwri_folder(tmp_path: Path, rows: list[str], images: list[str]) -> Path:
    (tmp_path / "dataset.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    for stem in images:
        write_png(tmp_path / "images" / "part1" / f"{stem}.png", np.full((8, 8), 1000, np.uint16))
    return tmp_path


def test_grazpedwri_patient_mismatch_raises(tmp_path: Path) -> None:
    stem = "0001_1297860395_01_WRI-L1_M014"
    root = grazpedwri_folder(tmp_path, [f"{stem},2,1,1297860395,M,14.1,L,1,1,,,,,,,0.144,Siemens"], [stem])

    with pytest.raises(ValueError, match=f"{stem}: patient_id does not match"):
        index_grazpedwri(root)


def test_grazpedwri_skips_absent_and_oblique(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    present = "0001_1297860395_01_WRI-L1_M014"
    rows = [f"{present},1,1,1297860395,M,14.1,L,1,1,,,,,1,,0.144,Siemens",
            "0001_1297860435_01_WRI-L2_M014,1,1,1297860435,M,14.1,L,2,1,,,,,1,,0.144,Siemens",
            "0002_0354485735_01_WRI-R3_O012,2,1,354485735,O,12,R,3,1,,,,,,,0.144,Siemens"]
    root = grazpedwri_folder(tmp_path, rows, [present, "0002_0354485735_01_WRI-R3_O012"])
    caplog.set_level(logging.INFO, logger=LOGGER)

    records = index_grazpedwri(root)

    assert [Path(record.image_path).stem for record in records] == [present]
    assert records[0].label == 1
    assert records[0].boxes_file == ""
    assert "skipped 1 oblique rows and 1 rows whose image is not under images/" in caplog.text


def test_grazpedwri_without_table_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset.csv or index.csv"):
        index_grazpedwri(tmp_path)


# ----------------------------------------------------------------------------------------------
# Plain CSV.


def test_csv_relative_paths_and_spellings(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        write_png(tmp_path / "images" / f"{name}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "list.csv").write_text(
        "Image_Path,patient_id,label,body_part,view,sex,age\n"
        "images/a.png,p1,yes,wrist,PA,male,7.5\n"
        "images/b.png,p1,Fracture,Wrist (distal forearm),lateral,M,007Y\n"
        "images/c.png,p2,normal,ELBOW,frontal,,\n"
        "images/d.png,p3,FALSE,elbow,LAT,F,\n",
        encoding="utf-8",
    )

    records = index_csv(tmp_path / "list.csv")

    assert [record.label for record in records] == [1, 1, 0, 0]
    assert [record.view for record in records] == ["AP", "LAT", "AP", "LAT"]
    assert [record.body_part for record in records] == ["wrist", "wrist", "elbow", "elbow"]
    assert [record.sex for record in records] == ["M", "M", "", "F"]
    assert [record.age for record in records] == [7.5, 7.0, None, None]
    assert records[0].image_path == str((tmp_path / "images" / "a.png").resolve())
    assert {record.source for record in records} == {"list.csv"}


def test_csv_bad_label_names_line(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "list.csv").write_text(
        "image_path,patient_id,label,body_part,view\na.png,p1,1,wrist,AP\na.png,p2,maybe,wrist,AP\n",
        encoding="utf-8",
    )

    with pytest.raises(ValueError, match=r"list\.csv line 3: label 'maybe' is not one of"):
        index_csv(tmp_path / "list.csv")


def test_csv_missing_image_names_line(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text(
        "image_path,patient_id,label,body_part,view\nmissing.png,p1,1,wrist,AP\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"line 2: image_path missing\.png not found"):
        index_csv(tmp_path / "list.csv")


def test_csv_missing_column_raises(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("image_path,patient_id,label,view\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"lacks the columns \['body_part'\]"):
        index_csv(tmp_path / "list.csv")


def test_csv_skips_oblique_and_other_parts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "list.csv").write_text(
        "image_path,patient_id,label,body_part,view\n"
        "a.png,p1,1,wrist,oblique\na.png,p2,0,hand,AP\na.png,p3,0,elbow,AP\n",
        encoding="utf-8",
    )
    caplog.set_level(logging.INFO, logger=LOGGER)

    records = index_csv(tmp_path / "list.csv")

    assert [record.patient_id for record in records] == ["p3"]
    assert "1 (oblique view)" in caplog.text
    assert "1 (body part other than wrist or elbow)" in caplog.text


# ----------------------------------------------------------------------------------------------
# Phantoms written to disk and indexed back.


def test_phantom_grazpedwri_round_trip(phantoms: list, grazpedwri_phantoms: Path) -> None:
    records = index_grazpedwri(grazpedwri_phantoms)

    assert len(records) == len(phantoms)
    for phantom, record in zip(phantoms, records, strict=True):
        assert (record.label, record.body_part, record.view, record.laterality) == (
            int(phantom.fracture), phantom.body_part, phantom.view, phantom.laterality)
        assert ("_ELB-" in Path(record.image_path).name) == (phantom.body_part == "elbow")
        boxes = load_boxes(record, phantom.image.shape)
        assert [box[0] for box in boxes] == [box[0] for box in phantom.boxes]
        assert np.allclose([box[1:] for box in boxes], [box[1:] for box in phantom.boxes], atol=0.01)
    assert len(patient_set := {record.patient_id for record in records}) == 6
    assert all(len(patient) == 4 for patient in patient_set)


def test_phantom_yolo_has_fat_pad(phantoms: list, grazpedwri_phantoms: Path) -> None:
    records = index_grazpedwri(grazpedwri_phantoms)

    labels = [box[0] for record, phantom in zip(records, phantoms, strict=True)
              for box in load_boxes(record, phantom.image.shape)]

    assert "fat_pad" in labels
    assert any(line.startswith("9 ") for path in (grazpedwri_phantoms / "labels").glob("*ELB*")
               for line in path.read_text(encoding="utf-8").splitlines())


def test_phantom_png16_loads_close(phantoms: list, grazpedwri_phantoms: Path) -> None:
    record = index_grazpedwri(grazpedwri_phantoms)[0]

    image = load_image(record)

    assert image.dtype == np.float32
    assert image.shape == phantoms[0].image.shape
    assert np.corrcoef(image.ravel(), phantoms[0].image.ravel())[0, 1] > 0.99


def test_phantom_dicom_round_trip(phantoms: list, dicom_phantoms: tuple[Path, Path],
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    records = index_dicom_folder(*dicom_phantoms)

    assert len(records) == len(phantoms)
    for phantom, record in zip(phantoms, records, strict=True):
        assert (record.label, record.body_part, record.view, record.laterality) == (
            int(phantom.fracture), phantom.body_part, phantom.view, phantom.laterality)
        assert record.patient_id == pseudonym(phantom.patient_id)
        assert record.boxes_format == "phantom-json"
        assert load_boxes(record, phantom.image.shape) == phantom.boxes
        assert record.age is not None
        assert record.sex in ("M", "F")
    assert len({record.study_id for record in records}) == 6
    assert all(phantom.patient_id not in caplog.text for phantom in phantoms)


def test_phantom_dicom_loads_exactly(phantoms: list, dicom_phantoms: tuple[Path, Path]) -> None:
    record = index_dicom_folder(*dicom_phantoms)[1]

    image = load_image(record)

    assert image.dtype == np.float32
    assert np.abs(image - phantoms[1].image).max() < 1e-4


def test_dicom_study_key_and_skips(phantoms: list, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder, labels_csv = write_dicom_folder(phantoms[:6], tmp_path)
    (folder / "notes.txt").write_text("not DICOM", encoding="utf-8")
    with labels_csv.open(newline="", encoding="utf-8") as handle:
        image_keys = [row["key"] for row in csv.DictReader(handle)]
    first, second, third, *_ = index_dicom_folder(folder, labels_csv)
    (tmp_path / "study.csv").write_text(
        f"key,label\n{first.study_id},true\n{image_keys[1]},normal\n{image_keys[2]},1\n1.2.3.4,0\n", encoding="utf-8")
    caplog.set_level(logging.INFO, logger=LOGGER)

    records = index_dicom_folder(folder, tmp_path / "study.csv")

    assert [record.image_path for record in records] == [first.image_path, second.image_path, third.image_path]
    assert [record.label for record in records] == [1, 0, 1]
    assert "1 (not a DICOM file)" in caplog.text
    assert "3 (no label)" in caplog.text
    assert "1 of 4 keys" in caplog.text


def test_dicom_labels_bad_row_names_line(dicom_phantoms: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("key,label\n1.2.3,1\n1.2.4,perhaps\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"labels\.csv line 3: label 'perhaps'"):
        index_dicom_folder(dicom_phantoms[0], tmp_path / "labels.csv")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_shared_dicom_folder_indexes_none(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("key,label\n", encoding="utf-8")

    assert index_dicom_folder(shared_data_dir() / "dicom", tmp_path / "labels.csv") == []


# ----------------------------------------------------------------------------------------------
# Images and boxes.


def test_load_image_8bit_and_colour(tmp_path: Path) -> None:
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    colour = np.dstack([grey, grey, grey])
    record = ImageRecord(str(write_png(tmp_path / "grey.png", grey)), "p", "", 0, "wrist", "AP")

    assert np.array_equal(load_image(record), grey.astype(np.float32) / 255)
    record = ImageRecord(str(write_png(tmp_path / "colour.png", colour)), "p", "", 0, "wrist", "AP")
    assert np.allclose(load_image(record), grey.astype(np.float32) / 255, atol=1 / 255)


def test_load_image_16bit_robust_window(tmp_path: Path) -> None:
    pixels = np.linspace(1000, 3000, 200 * 200).reshape(200, 200).astype(np.uint16)
    pixels[0, 0] = 65535
    record = ImageRecord(str(write_png(tmp_path / "wide.png", pixels)), "p", "", 0, "wrist", "AP")

    image = load_image(record)

    assert image[0, 0] == 1.0
    assert image[100, 100] == pytest.approx(0.5, abs=0.01)
    assert image[-1, -1] == 1.0


def test_load_image_unreadable_names_path(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "broken.dcm").write_bytes(b"not dicom")

    with pytest.raises(ValueError, match="broken.png could not be read"):
        load_image(ImageRecord(str(tmp_path / "broken.png"), "p", "", 0, "wrist", "AP"))
    with pytest.raises(ValueError, match="broken.dcm is not a readable DICOM file"):
        load_image(ImageRecord(str(tmp_path / "broken.dcm"), "p", "", 0, "wrist", "AP"))


def test_load_boxes_yolo_classes(tmp_path: Path) -> None:
    path = tmp_path / "boxes.txt"
    path.write_text("3 0.5 0.5 0.2 0.1\n6 0.3 0.3 0.1 0.1\n8 0.1 0.1 0.05 0.05\n9 0.25 0.75 0.1 0.2\n",
                    encoding="utf-8")
    record = ImageRecord("/x.png", "p", "", 1, "elbow", "LAT", boxes_file=str(path), boxes_format="yolo")

    boxes = load_boxes(record, (200, 100))

    assert [box[0] for box in boxes] == ["fracture", "fat_pad"]
    assert boxes[0][1:] == pytest.approx((40.0, 90.0, 60.0, 110.0))
    assert boxes[1][1:] == pytest.approx((20.0, 130.0, 30.0, 170.0))


def test_load_boxes_unknown_yolo_class_raises(tmp_path: Path) -> None:
    path = tmp_path / "boxes.txt"
    path.write_text("3 0.5 0.5 0.2 0.1\n12 0.5 0.5 0.2 0.1\n", encoding="utf-8")
    record = ImageRecord("/x.png", "p", "", 1, "wrist", "AP", boxes_file=str(path), boxes_format="yolo")

    with pytest.raises(ValueError, match="line 2: class 12 is not one of"):
        load_boxes(record, (100, 100))


def test_load_boxes_phantom_json_clipped(tmp_path: Path) -> None:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([["fracture", -5, 10, 50, 60], ["fat_pad", 20, 20, 140, 40]]), encoding="utf-8")
    record = ImageRecord("/x.png", "p", "", 1, "elbow", "LAT", boxes_file=str(path), boxes_format="phantom-json")

    assert load_boxes(record, (100, 120)) == [("fracture", 0.0, 10.0, 50.0, 60.0), ("fat_pad", 20.0, 20.0, 120.0, 40.0)]


def test_load_boxes_empty_file_name() -> None:
    assert load_boxes(ImageRecord("/x.png", "p", "", 0, "wrist", "AP"), (10, 10)) == []


# ----------------------------------------------------------------------------------------------
# Splits and folds.


@pytest.mark.parametrize("patients", [1, 2, 4, 5, 13, 60, 250])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_never_shares_patient(patients: int, seed: int) -> None:
    records = make_records(patients, seed=seed)

    splits = split_by_patient(records, seed=seed)

    check_disjoint(splits)
    assert sorted(splits) == ["test", "train", "val"]
    assert Counter(record.image_path for split in splits.values() for record in split) == Counter(
        record.image_path for record in records)
    owners = Counter(patient for split in splits.values() for patient in patients_of(split))
    assert set(owners.values()) == {1}


def test_split_fractions_by_patient() -> None:
    splits = split_by_patient(make_records(250, seed=5), seed=5)

    assert len(patients_of(splits["test"])) == 50
    assert len(patients_of(splits["val"])) == 40
    assert len(patients_of(splits["train"])) == 160


def test_split_stratified_by_patient_label() -> None:
    records = make_records(120, seed=9, positive_rate=0.3)
    labels = {record.patient_id: record.label for record in records}
    overall = sum(labels.values()) / len(labels)

    splits = split_by_patient(records, seed=9)

    for name, split in splits.items():
        rate = sum(labels[patient] for patient in patients_of(split)) / len(patients_of(split))
        assert {record.label for record in split} == {0, 1}, name
        assert rate == pytest.approx(overall, abs=0.06), name


def test_split_same_seed_same_result() -> None:
    records = make_records(80, seed=2)

    first = split_by_patient(records, seed=4)
    again = split_by_patient(records, seed=4)
    other = split_by_patient(records, seed=5)

    assert first == again
    assert patients_of(first["test"]) != patients_of(other["test"])


def test_split_tiny_sets() -> None:
    four = split_by_patient(make_records(4, seed=0), seed=0)
    one = split_by_patient(make_records(1, seed=0), seed=0)

    assert [len(patients_of(four[name])) for name in ("train", "val", "test")] == [2, 1, 1]
    assert [len(patients_of(one[name])) for name in ("train", "val", "test")] == [1, 0, 0]
    assert split_by_patient([], seed=0) == {"train": [], "val": [], "test": []}


def test_split_rejects_whole_fraction() -> None:
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), found 1.0"):
        split_by_patient(make_records(10, seed=0), test_fraction=1.0)


def test_check_disjoint_catches_planted_overlap() -> None:
    splits = split_by_patient(make_records(30, seed=3), seed=3)
    planted = {**splits, "test": [*splits["test"], splits["train"][0]]}

    with pytest.raises(ValueError, match="^1 patients appear in more than one") as raised:
        check_disjoint(planted)
    assert splits["train"][0].patient_id not in str(raised.value)


def test_folds_hold_out_each_patient_once() -> None:
    records = make_records(40, seed=6)

    folds = patient_folds(records, folds=5, seed=6)

    assert len(folds) == 5
    held_out = Counter(patient for _, held in folds for patient in patients_of(held))
    assert set(held_out) == patients_of(records)
    assert set(held_out.values()) == {1}
    for train, held in folds:
        assert not patients_of(train) & patients_of(held)
        assert len(train) + len(held) == len(records)


def test_folds_stratified() -> None:
    folds = patient_folds(make_records(60, seed=8, positive_rate=0.4), folds=5, seed=8)

    for _, held in folds:
        assert {record.label for record in held} == {0, 1}


def test_folds_need_enough_patients() -> None:
    with pytest.raises(ValueError, match="5 folds need at least 5 patients, found 3"):
        patient_folds(make_records(3, seed=0), folds=5)


# ----------------------------------------------------------------------------------------------
# Manifests.


def test_manifests_round_trip(grazpedwri_phantoms: Path, dicom_phantoms: tuple[Path, Path], tmp_path: Path) -> None:
    records = index_grazpedwri(grazpedwri_phantoms) + index_dicom_folder(*dicom_phantoms)
    splits = split_by_patient(records, seed=1)

    written = write_manifests(tmp_path, splits)

    assert (tmp_path / "wrist" / "AP_train.csv") in written
    assert (tmp_path / "elbow" / "LAT_val.csv") in written
    for name, split in splits.items():
        assert sorted(read_manifests(tmp_path, name), key=str) == sorted(split, key=str)
        subset = [record for record in split if (record.body_part, record.view) == ("elbow", "LAT")]
        assert read_manifests(tmp_path, name, body_part="elbow", view="LAT") == subset


def test_bool_label_stored_as_int(tmp_path: Path) -> None:
    record = ImageRecord("/x.png", "p", "", True, "wrist", "AP", age=7)

    write_manifests(tmp_path, {"train": [record]})

    assert read_manifests(tmp_path, "train") == [record]
    assert "/x.png,p,,1,wrist,AP,,7.0," in (tmp_path / "wrist" / "AP_train.csv").read_text(encoding="utf-8")


def test_manifest_csv_header_and_index(tmp_path: Path) -> None:
    splits = split_by_patient(make_records(20, seed=4), seed=4, test_fraction=0.25)

    write_manifests(tmp_path, splits)

    with (tmp_path / "wrist" / "AP_test.csv").open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == list(CSV_COLUMNS)
    index = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    assert (index["seed"], index["test_fraction"], index["validation_fraction"]) == (4, 0.25, 0.2)
    assert index["splits"] == ["train", "val", "test"]
    for name, split in splits.items():
        assert index["totals"][name] == {"images": len(split), "patients": len(patients_of(split)),
                                         "positives": sum(record.label for record in split)}
        wrist_ap = [record for record in split if (record.body_part, record.view) == ("wrist", "AP")]
        assert index["counts"][name].get("wrist", {}).get("AP", {}).get("images", 0) == len(wrist_ap)
    assert not list(tmp_path.rglob("*.partial"))


def test_write_manifests_rejects_overlap(tmp_path: Path) -> None:
    splits = split_by_patient(make_records(30, seed=3), seed=3)
    planted = {**splits, "val": [*splits["val"], splits["test"][0]]}

    with pytest.raises(ValueError, match="1 patients appear in more than one"):
        write_manifests(tmp_path / "out", planted)
    assert not (tmp_path / "out").exists()


def test_write_manifests_removes_stale_files(tmp_path: Path) -> None:
    records = make_records(30, seed=3)
    write_manifests(tmp_path, split_by_patient(records, seed=3))
    wrists = [record for record in records if record.body_part == "wrist"]

    write_manifests(tmp_path, split_by_patient(wrists, seed=3))

    assert not list((tmp_path / "elbow").glob("*.csv"))
    assert read_manifests(tmp_path, "train", body_part="elbow") == []


def test_read_manifests_unknown_split(tmp_path: Path) -> None:
    write_manifests(tmp_path, split_by_patient(make_records(10, seed=0), seed=0))

    with pytest.raises(ValueError, match="split 'validation' is not in"):
        read_manifests(tmp_path, "validation")
