"""Pairing of a study's images into AP and lateral views per patient, body part and side."""
from __future__ import annotations

import numpy as np

from inference.findings import ImageFinding, SkippedImage
from inference.pairing import describe_pair, pair_views


def image(uid: str, body_part: str, view: str, laterality: str | None) -> ImageFinding:
    return ImageFinding(sop_instance_uid=uid, body_part=body_part, view=view, laterality=laterality,
                        view_source="ViewPosition", probability=0.1, threshold=0.5, positive=False, members=(),
                        boxes=(), display=np.zeros((2, 2), dtype=np.uint8))


def test_ap_and_lateral_form_pair() -> None:
    pairs = pair_views([image("1", "elbow", "AP", "R"), image("2", "elbow", "LAT", "R")])

    assert len(pairs) == 1
    assert (pairs[0].ap, pairs[0].lateral, pairs[0].complete) == (("1",), ("2",), True)


def test_sides_form_two_pairs() -> None:
    pairs = pair_views([image("1", "elbow", "AP", "L"), image("2", "elbow", "AP", "R"), image("3", "elbow", "LAT", "L")])

    assert [(pair.laterality, pair.images) for pair in pairs] == [("R", ("2",)), ("L", ("1", "3"))]


def test_body_parts_form_two_pairs() -> None:
    pairs = pair_views([image("1", "elbow", "AP", "R"), image("2", "wrist", "AP", "R")])

    assert [pair.body_part for pair in pairs] == ["wrist", "elbow"]


def test_unknown_side_joins_only_side() -> None:
    pairs = pair_views([image("1", "wrist", "AP", "L"), image("2", "wrist", "LAT", None)])

    assert len(pairs) == 1
    assert (pairs[0].laterality, pairs[0].side_source) == ("L", "assumed")


def test_unknown_side_apart_when_both_sides() -> None:
    pairs = pair_views([image("1", "wrist", "AP", "L"), image("2", "wrist", "AP", "R"), image("3", "wrist", "LAT", None)])

    assert [(pair.laterality, pair.side_source) for pair in pairs] == [("R", "tags"), ("L", "tags"), (None, "unknown")]


def test_patients_kept_apart() -> None:
    images = [image("1", "elbow", "AP", "R"), image("2", "elbow", "LAT", "R")]

    pairs = pair_views(images, patients={"1": "P1", "2": "P2"})

    assert len(pairs) == 2
    assert all(pair.single_view for pair in pairs)


def test_skipped_oblique_listed() -> None:
    skipped = [SkippedImage("3", "elbow view is not AP or lateral", "elbow", "OTHER", "R"),
               SkippedImage("4", "not a projection radiograph")]

    pairs = pair_views([image("1", "elbow", "AP", "R")], skipped)

    assert pairs[0].unread == ("3",)


def test_describe_complete_pair() -> None:
    pair = pair_views([image("1", "elbow", "AP", "R"), image("2", "elbow", "LAT", "R")])[0]

    assert describe_pair(pair) == "right elbow: AP and lateral read"


def test_describe_single_view() -> None:
    pair = pair_views([image("1", "wrist", "LAT", "L")])[0]

    assert describe_pair(pair) == "left wrist: only one view read (lateral); single-view reading"


def test_describe_repeated_and_unread() -> None:
    images = [image("1", "elbow", "AP", None), image("2", "elbow", "AP", None), image("3", "elbow", "LAT", None)]
    skipped = [SkippedImage("4", "oblique", "elbow", "OTHER", None)]

    pair = pair_views(images, skipped)[0]

    assert describe_pair(pair) == ("elbow (side not stated): AP (2 images, repeated view) and lateral read; "
                                   "1 more image of this side not read")
