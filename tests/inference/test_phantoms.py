"""Synthetic radiographs: determinism, geometry of the boxes and the ground truth they carry."""
from __future__ import annotations

import numpy as np
import pytest

from inference.phantoms import FAT_PAD, FRACTURE, generate_dataset, generate_phantom, generate_study


@pytest.fixture(scope="module")
def fractured() -> list:
    return generate_dataset(8, seed=11, fracture_rate=1.0)


@pytest.fixture(scope="module")
def normal() -> list:
    return generate_dataset(6, seed=12, fracture_rate=0.0)


def test_same_seed_same_phantoms() -> None:
    first = generate_dataset(2, seed=3)
    second = generate_dataset(2, seed=3)

    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.image, b.image)
        assert a.boxes == b.boxes
        assert (a.patient_id, a.view, a.laterality, a.fracture) == (b.patient_id, b.view, b.laterality, b.fracture)


def test_other_seed_other_images() -> None:
    first = generate_dataset(1, seed=3)[0].image
    second = generate_dataset(1, seed=4)[0].image

    assert first.shape != second.shape or not np.array_equal(first, second)


def test_patient_independent_of_count() -> None:
    few = generate_dataset(1, seed=5)
    many = generate_dataset(3, seed=5)

    assert np.array_equal(few[0].image, many[0].image)


def test_image_float_in_unit_range(fractured: list) -> None:
    for phantom in fractured:
        assert phantom.image.dtype == np.float32
        assert phantom.image.ndim == 2
        assert 600 <= max(phantom.image.shape) <= 900
        assert phantom.image.min() >= 0.0
        assert phantom.image.max() <= 1.0


def test_boxes_inside_image(fractured: list) -> None:
    for phantom in fractured:
        rows, columns = phantom.image.shape
        for label, x0, y0, x1, y1 in phantom.boxes:
            assert label in (FRACTURE, FAT_PAD)
            assert 0 <= x0 < x1 <= columns
            assert 0 <= y0 < y1 <= rows


def test_fracture_has_fracture_box(fractured: list) -> None:
    for phantom in fractured:
        assert phantom.fracture
        assert FRACTURE in [box[0] for box in phantom.boxes], phantom.patient_id


def test_normal_has_no_boxes(normal: list) -> None:
    for phantom in normal:
        assert not phantom.fracture
        assert phantom.boxes == []


def test_fat_pad_only_on_elbow_lateral(fractured: list) -> None:
    with_fat_pad = [p for p in fractured if FAT_PAD in [box[0] for box in p.boxes]]

    assert with_fat_pad, "no lifted fat pad among the fractured elbows of seed 11"
    assert {(p.body_part, p.view) for p in with_fat_pad} == {("elbow", "LAT")}


def test_study_shares_patient_and_side() -> None:
    study = generate_study(np.random.default_rng(0), body_part="elbow", fracture=True, patient_id="P1")

    assert [p.view for p in study] == ["AP", "LAT"]
    assert {p.patient_id for p in study} == {"P1"}
    assert len({p.laterality for p in study}) == 1


def test_views_have_different_shapes() -> None:
    ap = generate_phantom(np.random.default_rng(1), body_part="elbow", view="AP")
    lateral = generate_phantom(np.random.default_rng(1), body_part="elbow", view="LAT")

    assert ap.image.shape[1] / ap.image.shape[0] < 0.9
    assert lateral.image.shape[1] / lateral.image.shape[0] >= 0.9


def test_side_marker_burned_in() -> None:
    phantom = generate_phantom(np.random.default_rng(2), body_part="wrist", view="AP", laterality="L")
    top = phantom.image[: phantom.image.shape[0] // 4]

    assert phantom.laterality == "L"
    # An AP marker sits in a top corner, drawn at full white, which no bone reaches.
    assert np.count_nonzero(top == 1.0) > 50
    assert np.count_nonzero(phantom.image[phantom.image.shape[0] // 4 :] == 1.0) == 0


def test_first_patient_ranges_disjoint() -> None:
    first = {p.patient_id for p in generate_dataset(2, seed=7)}
    second = {p.patient_id for p in generate_dataset(2, seed=7, first_patient=2)}

    assert first.isdisjoint(second)


def test_unknown_body_part_rejected() -> None:
    with pytest.raises(ValueError, match=r"body_part must be one of \['wrist', 'elbow'\], found 'knee'"):
        generate_phantom(np.random.default_rng(0), body_part="knee", view="AP")
