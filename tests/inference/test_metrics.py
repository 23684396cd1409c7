"""Evaluation metrics, voting rules and report pieces against hand-computed values."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from inference.training.metrics import (
    average_precision_for_boxes,
    binary_metrics,
    delong_auroc,
    delong_test,
    placement_values,
    wilson_interval,
    youden_threshold,
)
from inference.training.report import TABLE_HEADER, markdown_table, roc_figure
from inference.training.voting import (
    VOTING_RULES,
    accuracy_weights,
    combine,
    hard_vote,
    rescale_to_threshold,
    soft_vote,
    unanimous_vote,
)

# --- Wilson score interval -------------------------------------------------------------------

# Newcombe RG, Statistics in Medicine 1998;17:857-872, Table I, method 3 (score interval without
# continuity correction), 95% intervals.
NEWCOMBE_TABLE_I = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("successes", "total", "lower", "upper"), NEWCOMBE_TABLE_I)
def test_wilson_matches_newcombe(successes: int, total: int, lower: float, upper: float) -> None:
    found_lower, found_upper = wilson_interval(successes, total)

    assert round(found_lower, 4) == pytest.approx(lower, abs=1e-12)
    assert round(found_upper, 4) == pytest.approx(upper, abs=1e-12)


def test_wilson_bounds_exact_at_extremes() -> None:
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0


def test_wilson_wider_at_higher_confidence() -> None:
    lower_95, upper_95 = wilson_interval(8, 10, 0.95)
    lower_99, upper_99 = wilson_interval(8, 10, 0.99)

    assert lower_99 < lower_95
    assert upper_99 > upper_95


def test_wilson_no_trials_is_nan() -> None:
    lower, upper = wilson_interval(0, 0)

    assert math.isnan(lower)
    assert math.isnan(upper)


def test_wilson_rejects_invalid_counts() -> None:
    with pytest.raises(ValueError, match="0 <= successes <= total, found successes=5, total=4"):
        wilson_interval(5, 4)


def test_wilson_rejects_invalid_confidence() -> None:
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1, found 1.5"):
        wilson_interval(1, 4, 1.5)


# --- DeLong AUROC ----------------------------------------------------------------------------

# Worked example: 3 positives X = (0.9, 0.6, 0.4) and 4 negatives Y = (0.6, 0.3, 0.2, 0.1), with
# one tie at 0.6 between a positive and a negative, which counts 1/2.
#   V10(X) = share of negatives below X:  0.9 -> 4/4 = 1.0,  0.6 -> 3.5/4 = 0.875,  0.4 -> 3/4 = 0.75
#   V01(Y) = share of positives above Y:  0.6 -> 1.5/3 = 0.5,  0.3, 0.2, 0.1 -> 3/3 = 1.0
#   AUROC  = mean V10 = 2.625 / 3 = 0.875 = mean V01 = 3.5 / 4
#   S10 = (0.125^2 + 0^2 + 0.125^2) / (3 - 1) = 1/64
#   S01 = (0.375^2 + 3 * 0.125^2) / (4 - 1) = 0.1875 / 3 = 1/16
#   var = S10 / 3 + S01 / 4 = 1/192 + 3/192 = 1/48
#   95% CI = 0.875 -+ 1.959964 * sqrt(1/48) = 0.59210 .. 1.15790, clipped to 0.59210 .. 1
LABELS = [1, 1, 1, 0, 0, 0, 0]
SCORES = [0.9, 0.6, 0.4, 0.6, 0.3, 0.2, 0.1]


def test_placement_values_hand_example() -> None:
    v10, v01 = placement_values(LABELS, SCORES)

    np.testing.assert_allclose(v10, [1.0, 0.875, 0.75])
    np.testing.assert_allclose(v01, [0.5, 1.0, 1.0, 1.0])


def test_delong_hand_example() -> None:
    estimate = delong_auroc(LABELS, SCORES)

    assert estimate.auroc == pytest.approx(0.875)
    assert estimate.variance == pytest.approx(1 / 48)
    assert estimate.lower == pytest.approx(0.875 - norm.ppf(0.975) * math.sqrt(1 / 48))
    assert estimate.lower == pytest.approx(0.59210, abs=1e-5)
    assert estimate.upper == 1.0
    assert (estimate.positives, estimate.negatives) == (3, 4)


def test_delong_matches_sklearn_auroc() -> None:
    rng = np.random.default_rng(7)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # rounded, so that many scores tie

    assert delong_auroc(labels, scores).auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_midrank_and_pairwise_placements_agree() -> None:
    rng = np.random.default_rng(11)
    labels = rng.random(250) < 0.3
    scores = np.round(rng.random(250) + 0.2 * labels, 2)

    fast_v10, fast_v01 = placement_values(labels, scores, method="midrank")
    plain_v10, plain_v01 = placement_values(labels, scores, method="pairwise")

    np.testing.assert_allclose(fast_v10, plain_v10, atol=1e-12)
    np.testing.assert_allclose(fast_v01, plain_v01, atol=1e-12)


def test_delong_rejects_one_class() -> None:
    with pytest.raises(ValueError, match="AUROC needs both classes, found 0 positives and 3 negatives"):
        delong_auroc([0, 0, 0], [0.1, 0.2, 0.3])


def test_delong_single_positive_has_nan_interval() -> None:
    estimate = delong_auroc([1, 0, 0], [0.9, 0.2, 0.3])

    assert estimate.auroc == 1.0
    assert math.isnan(estimate.variance)
    assert math.isnan(estimate.lower)


def test_placement_values_reject_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown placement method 'exact'"):
        placement_values(LABELS, SCORES, method="exact")


def test_labels_must_be_binary() -> None:
    with pytest.raises(ValueError, match="labels must be booleans or 0/1"):
        delong_auroc([0, 1, 2], [0.1, 0.2, 0.3])


# Paired example: the same cases as above, scored a second time as B.
#   B positives (0.8, 0.35, 0.5), B negatives (0.6, 0.7, 0.1, 0.2)
#   V10(B) = (1.0, 0.5, 0.5), V01(B) = (1/3, 1/3, 1.0, 1.0), AUROC(B) = 2/3
#   Covariances (denominators m - 1 = 2 and n - 1 = 3), with A from the example above:
#     S10: AA = 1/64, BB = 1/12, AB = (0.125 / 3 + 0.125 / 6) / 2 = 1/32
#     S01: AA = 1/16, BB = 4/27, AB = (0.375 / 3 - 0.125 / 3 + 0.125 / 3 + 0.125 / 3) / 3 = 1/18
#   var(A - B) = (1/64 + 1/12 - 2/32) / 3 + (1/16 + 4/27 - 2/18) / 4 = 7/576 + 43/1728 = 1/27
#   z = (0.875 - 2/3) / sqrt(1/27) = (5/24) * sqrt(27) = 1.0825, two-sided p = 0.2790
SCORES_B = [0.8, 0.35, 0.5, 0.6, 0.7, 0.1, 0.2]


def test_delong_test_hand_example() -> None:
    expected = 2 * norm.sf(5 / 24 * math.sqrt(27))

    assert delong_test(LABELS, SCORES, SCORES_B) == pytest.approx(expected)
    assert delong_test(LABELS, SCORES, SCORES_B) == pytest.approx(0.2790, abs=1e-4)


def test_delong_test_symmetric() -> None:
    assert delong_test(LABELS, SCORES_B, SCORES) == pytest.approx(delong_test(LABELS, SCORES, SCORES_B))


def test_delong_test_identical_scores() -> None:
    assert delong_test(LABELS, SCORES, SCORES) == 1.0


def test_delong_test_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="equal length, found 7 and 6"):
        delong_test(LABELS, SCORES, SCORES_B[:-1])


# --- Youden threshold and binary metrics -----------------------------------------------------

# 4 positives scored (0.9, 0.8, 0.6, 0.2) and 6 negatives scored (0.7, 0.4, 0.3, 0.2, 0.1, 0.0).
# At threshold 0.5: TP = 3, FN = 1, FP = 1 (0.7), TN = 5.
#   accuracy 8/10, sensitivity 3/4, specificity 5/6, F1 = 2*3 / (2*3 + 1 + 1) = 0.75
#   Wilson 95% of 8/10 = 0.4902 .. 0.9433
#   Youden: threshold 0.6 gives TPR 3/4 and FPR 1/6, J = 0.5833, the largest J.
#   AUROC: 19.5 of the 24 positive-negative pairs are ordered correctly (tie 0.2/0.2 counts 1/2).
METRIC_LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
METRIC_SCORES = [0.9, 0.8, 0.6, 0.2, 0.7, 0.4, 0.3, 0.2, 0.1, 0.0]


def test_binary_metrics_confusion_matrix() -> None:
    metrics = binary_metrics(METRIC_LABELS, METRIC_SCORES, 0.5)

    assert (metrics.tp, metrics.fn, metrics.fp, metrics.tn) == (3, 1, 1, 5)
    assert (metrics.n, metrics.positives, metrics.negatives) == (10, 4, 6)
    assert metrics.accuracy == pytest.approx(0.8)
    assert metrics.sensitivity == pytest.approx(0.75)
    assert metrics.specificity == pytest.approx(5 / 6)
    assert metrics.f1 == pytest.approx(0.75)


def test_binary_metrics_intervals() -> None:
    metrics = binary_metrics(METRIC_LABELS, METRIC_SCORES, 0.5)

    assert metrics.accuracy_ci == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert metrics.sensitivity_ci == wilson_interval(3, 4)
    assert metrics.specificity_ci == wilson_interval(5, 6)


def test_binary_metrics_auroc_and_youden() -> None:
    metrics = binary_metrics(METRIC_LABELS, METRIC_SCORES, 0.5)

    assert metrics.auroc is not None
    assert metrics.auroc.auroc == pytest.approx(19.5 / 24)
    assert metrics.youden_threshold == pytest.approx(0.6)


def test_score_at_threshold_is_positive() -> None:
    metrics = binary_metrics([1, 0], [0.5, 0.49], 0.5)

    assert (metrics.tp, metrics.tn) == (1, 1)


def test_binary_metrics_as_dict() -> None:
    values = binary_metrics(METRIC_LABELS, METRIC_SCORES, 0.5).as_dict()

    assert values["specificity"] == 0.8333
    assert values["accuracy_lower"] == 0.4902
    assert values["auroc"] == 0.8125
    assert values["tp"] == 3
    assert values["youden_threshold"] == 0.6


def test_binary_metrics_without_positives() -> None:
    metrics = binary_metrics([0, 0, 0], [0.9, 0.2, 0.1], 0.5)
    values = metrics.as_dict()

    assert math.isnan(metrics.sensitivity)
    assert metrics.auroc is None
    assert values["sensitivity"] is None
    assert values["sensitivity_lower"] is None
    assert values["auroc"] is None
    assert values["youden_threshold"] is None
    assert values["specificity"] == 0.6667


def test_binary_metrics_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match=r"1-D of equal length, found shapes \(3,\) and \(2,\)"):
        binary_metrics([0, 1, 1], [0.1, 0.2], 0.5)


def test_youden_clipped_to_unit_interval() -> None:
    # roc_curve's thresholds are the scores themselves, so a logit of 2.0 clips to 1.0.
    assert youden_threshold([0, 1], [-1.0, 2.0]) == 1.0


def test_youden_rejects_one_class() -> None:
    with pytest.raises(ValueError, match="both classes"):
        youden_threshold([1, 1], [0.2, 0.4])


# --- Box average precision -------------------------------------------------------------------

# ultralytics 8.4.190 integrates the precision envelope at 101 recall points with the trapezoid
# rule, and the envelope falls to 0 at the recall-1 sentinel. So the last step, recall 0.99 to
# 1.00, counts only half and a perfect AP is 1 - 0.5 * 0.01 = 0.995, not 1.0.
PERFECT_AP = 0.995
TRUTH = ("fracture", 0.0, 0.0, 10.0, 10.0)


def test_map_perfect_predictions() -> None:
    truths = [[TRUTH, ("fat_pad", 20.0, 20.0, 30.0, 40.0)], [("fracture", 5.0, 5.0, 15.0, 25.0)]]
    predictions = [[("fracture", 0.9, 0.0, 0.0, 10.0, 10.0), ("fat_pad", 0.8, 20.0, 20.0, 30.0, 40.0)],
                   [("fracture", 0.7, 5.0, 5.0, 15.0, 25.0)]]

    result = average_precision_for_boxes(predictions, truths)

    assert result["map50"] == pytest.approx(PERFECT_AP)
    assert result["map50_95"] == pytest.approx(PERFECT_AP)
    assert set(result["per_class"]) == {"fracture", "fat_pad"}
    assert (result["images"], result["boxes"]) == (2, 3)


def test_map_iou_058_passes_two_thresholds() -> None:
    # The prediction covers 58 of the truth's 100 px and nothing else: IoU 0.58. It is a true
    # positive at IoU thresholds 0.50 and 0.55 only, 2 of 10, so mAP@50-95 = 0.2 * 0.995.
    # (An IoU of exactly 0.6 would sit on the 0.60 threshold, where box_iou's epsilon decides.)
    result = average_precision_for_boxes([[("fracture", 0.9, 0.0, 0.0, 10.0, 5.8)]], [[TRUTH]])

    assert result["map50"] == pytest.approx(PERFECT_AP)
    assert result["map50_95"] == pytest.approx(0.2 * PERFECT_AP)


def test_map_iou_062_passes_three_thresholds() -> None:
    # IoU 0.62 passes 0.50, 0.55 and 0.60, 3 of 10 thresholds.
    result = average_precision_for_boxes([[("fracture", 0.9, 0.0, 0.0, 10.0, 6.2)]], [[TRUTH]])

    assert result["map50_95"] == pytest.approx(0.3 * PERFECT_AP)


def test_map_false_positive_first_halves_ap() -> None:
    # Ranked by confidence: a false positive (precision 0 at recall 0), then the true positive
    # (precision 1/2 at recall 1). The precision envelope is 1/2 over all recall, so AP = 0.5 * 0.995.
    predictions = [[("fracture", 0.9, 50.0, 50.0, 60.0, 60.0), ("fracture", 0.8, 0.0, 0.0, 10.0, 10.0)]]

    result = average_precision_for_boxes(predictions, [[TRUTH]])

    assert result["map50"] == pytest.approx(0.5 * PERFECT_AP)


def test_map_false_positive_last_keeps_ap() -> None:
    predictions = [[("fracture", 0.7, 50.0, 50.0, 60.0, 60.0), ("fracture", 0.8, 0.0, 0.0, 10.0, 10.0)]]

    result = average_precision_for_boxes(predictions, [[TRUTH]])

    assert result["map50"] == pytest.approx(PERFECT_AP)


def test_map_duplicate_is_false_positive() -> None:
    # Both predictions overlap the one truth. The more confident one claims it, so the second is
    # a false positive ranked last, which leaves AP unchanged.
    predictions = [[("fracture", 0.9, 0.0, 0.0, 10.0, 10.0), ("fracture", 0.8, 0.0, 0.0, 10.0, 9.0)]]

    result = average_precision_for_boxes(predictions, [[TRUTH]])

    assert result["map50"] == pytest.approx(PERFECT_AP)


def test_map_wrong_class_misses() -> None:
    result = average_precision_for_boxes([[("fat_pad", 0.9, 0.0, 0.0, 10.0, 10.0)]], [[TRUTH]])

    assert result["map50"] == 0.0
    assert set(result["per_class"]) == {"fracture"}


def test_map_without_truth_boxes() -> None:
    result = average_precision_for_boxes([[("fracture", 0.9, 0.0, 0.0, 10.0, 10.0)]], [[]])

    assert result["map50"] is None
    assert result["map50_95"] is None
    assert result["per_class"] == {}


def test_map_rejects_image_count_mismatch() -> None:
    with pytest.raises(ValueError, match="predictions cover 2 images but truths cover 1"):
        average_precision_for_boxes([[], []], [[TRUTH]])


def test_map_rejects_inverted_box() -> None:
    with pytest.raises(ValueError, match="x0 < x1 and y0 < y1"):
        average_precision_for_boxes([[]], [[("fracture", 10.0, 0.0, 0.0, 10.0)]])


def test_map_needs_iou_050() -> None:
    with pytest.raises(ValueError, match="must include 0.5"):
        average_precision_for_boxes([[]], [[TRUTH]], iou_thresholds=(0.75,))


# --- Voting rules ----------------------------------------------------------------------------

# Four images, three members: two classifiers and a detector.
PROBS = np.array([
    [0.9, 0.7, 0.2],
    [0.4, 0.6, 0.5],
    [0.1, 0.2, 0.3],
    [0.8, 0.9, 0.7],
])
THRESHOLDS = [0.5, 0.5, 0.4]


def test_soft_vote_equal_weights() -> None:
    np.testing.assert_allclose(soft_vote(PROBS), [0.6, 0.5, 0.2, 0.8])


def test_soft_vote_normalises_weights() -> None:
    # Weights (2, 1, 1) become (0.5, 0.25, 0.25): row 1 is 0.45 + 0.175 + 0.05.
    np.testing.assert_allclose(soft_vote(PROBS, [2, 1, 1]), [0.675, 0.475, 0.175, 0.8])


def test_hard_vote_fraction_positive() -> None:
    # Row 2: 0.4 < 0.5, 0.6 >= 0.5, 0.5 >= 0.4, so 2 of 3 members vote positive.
    np.testing.assert_allclose(hard_vote(PROBS, THRESHOLDS), [2 / 3, 2 / 3, 0.0, 1.0])


def test_rescale_to_threshold_hand_values() -> None:
    # At threshold 0.5 the map is the identity. At 0.4: p < 0.4 -> 1.25 p, p >= 0.4 -> 0.5 + (p - 0.4) / 1.2.
    expected = np.array([
        [0.9, 0.7, 0.25],
        [0.4, 0.6, 0.5 + 0.1 / 1.2],
        [0.1, 0.2, 0.375],
        [0.8, 0.9, 0.75],
    ])

    np.testing.assert_allclose(rescale_to_threshold(PROBS, THRESHOLDS), expected)


def test_rescale_to_threshold_extremes() -> None:
    rescaled = rescale_to_threshold(np.array([[0.0, 0.3], [1.0, 1.0]]), [1.0, 0.0])

    np.testing.assert_allclose(rescaled, [[0.0, 0.65], [0.5, 1.0]])


def test_unanimous_vote_minimum_of_rescaled() -> None:
    scores = unanimous_vote(PROBS, THRESHOLDS)

    np.testing.assert_allclose(scores, [0.25, 0.4, 0.1, 0.75])
    assert (scores >= 0.5).tolist() == [False, False, False, True]


def test_accuracy_weights_proportional() -> None:
    np.testing.assert_allclose(accuracy_weights([0.9, 0.8, 0.7]), [0.9 / 2.4, 0.8 / 2.4, 0.7 / 2.4])


def test_combine_every_rule() -> None:
    # weighted, row 1: (0.9 * 0.9 + 0.7 * 0.8 + 0.2 * 0.7) / 2.4 = 1.51 / 2.4
    # fixed (0.3, 0.3, 0.4), row 1: 0.27 + 0.21 + 0.08 = 0.56
    expected = {
        "soft": [0.6, 0.5, 0.2, 0.8],
        "hard": [2 / 3, 2 / 3, 0.0, 1.0],
        "unanimous": [0.25, 0.4, 0.1, 0.75],
        "weighted": [1.51 / 2.4, 1.19 / 2.4, 0.46 / 2.4, 1.93 / 2.4],
        "fixed": [0.56, 0.5, 0.21, 0.79],
    }

    for rule in VOTING_RULES:
        scores = combine(rule, PROBS, weights=[0.3, 0.3, 0.4], thresholds=THRESHOLDS, accuracies=[0.9, 0.8, 0.7])
        np.testing.assert_allclose(scores, expected[rule], err_msg=rule)


def test_combine_rejects_unknown_rule() -> None:
    with pytest.raises(ValueError, match="unknown voting rule 'median'"):
        combine("median", PROBS)


def test_combine_needs_rule_parameter() -> None:
    with pytest.raises(ValueError, match="voting rule 'hard' needs thresholds"):
        combine("hard", PROBS)


def test_voting_rejects_weight_count_mismatch() -> None:
    with pytest.raises(ValueError, match=r"one weight per member \(3\), found shape \(2,\)"):
        soft_vote(PROBS, [0.6, 0.4])


def test_voting_rejects_threshold_count_mismatch() -> None:
    with pytest.raises(ValueError, match=r"one threshold per member \(3\), found shape \(4,\)"):
        hard_vote(PROBS, [0.5] * 4)


def test_voting_rejects_one_dimensional_probs() -> None:
    with pytest.raises(ValueError, match=r"shape \(n_images, n_members\), found \(4,\)"):
        soft_vote(np.array([0.1, 0.2, 0.3, 0.4]))


def test_voting_rejects_probability_above_one() -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        soft_vote(np.array([[0.5, 1.5]]))


# --- Report ----------------------------------------------------------------------------------


def test_roc_figure_writes_png(tmp_path: Path) -> None:
    curves = {"soft": (METRIC_LABELS, METRIC_SCORES), "hard": (LABELS, SCORES)}

    path = roc_figure(curves, tmp_path / "plots" / "roc.png", "Wrist, per image")

    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (600, 600)


def test_roc_figure_rejects_one_class_curve(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ROC curve 'soft': AUROC needs both classes"):
        roc_figure({"soft": ([0, 0], [0.1, 0.2])}, tmp_path / "roc.png", "title")


def test_markdown_table_rows() -> None:
    rows = [("soft", binary_metrics(METRIC_LABELS, METRIC_SCORES, 0.5)),
            ("hard", binary_metrics([0, 0, 0], [0.9, 0.2, 0.1], 0.5))]

    lines = markdown_table(rows).splitlines()

    assert lines[0] == TABLE_HEADER
    assert len(lines) == 2 + len(rows)
    assert lines[2] == ("| soft | 0.812 (0.503–1.000) | 0.800 (0.490–0.943) | 0.750 | 0.750 (0.301–0.954) "
                        "| 0.833 (0.436–0.970) | 0.500 | 10 (4/6) |")
    # No true fracture, one positive decision: F1 is 0, not undefined.
    assert lines[3] == "| hard | – | 0.667 (0.208–0.939) | 0.000 | – | 0.667 (0.208–0.939) | 0.500 | 3 (0/3) |"
