"""Voting rules that combine the fracture probabilities of ensemble members into one score per image.

Every rule takes an ``(n_images, n_members)`` array of member probabilities in [0, 1] and returns a
score per image in [0, 1]. So all rules can be compared side by side on one ROC plot, and an
operating threshold can be chosen on each score. The service itself votes with
:func:`inference.ensemble.soft_vote` and the weights of the package manifest.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

VOTING_RULES: dict[str, str] = {
    "soft": "mean of the member probabilities, equal weights",
    "hard": "fraction of members at or above their own threshold",
    "unanimous": "lowest member probability, rescaled so that 0.5 is each member's threshold",
    "weighted": "weighted mean, weights proportional to each member's training accuracy",
    "fixed": "weighted mean with fixed weights, such as 0.6 for classifiers and 0.4 for the detector",
}


def soft_vote(probs: np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Average the member probabilities of each image, weighted by ``weights`` normalised to sum 1.

    Parameters
    ----------
    probs
        Member probabilities, shape ``(n_images, n_members)``.
    weights
        One non-negative weight per member, not all zero. None gives every member the same weight.

    Returns
    -------
    The weighted mean per image, shape ``(n_images,)``.

    Raises
    ------
    ValueError
        When ``probs`` or ``weights`` is invalid or their member counts differ.
    """
    probabilities = _check_probabilities(probs)
    if weights is None:
        return probabilities.mean(axis=1)
    return probabilities @ _normalised_weights(weights, probabilities.shape[1])


def hard_vote(probs: np.ndarray, thresholds: Sequence[float] | np.ndarray | float) -> np.ndarray:
    """Count, per image, the fraction of members whose probability reaches their own threshold.

    A majority vote is the decision ``score >= 0.5``, though with an even number of members a tie
    also reaches 0.5. A threshold of ``k / n_members`` is the rule "at least k members positive".

    Parameters
    ----------
    probs
        Member probabilities, shape ``(n_images, n_members)``.
    thresholds
        One operating threshold per member, or one shared by all.

    Returns
    -------
    The fraction of positive members per image, shape ``(n_images,)``.

    Raises
    ------
    ValueError
        When the inputs are invalid or the member counts differ.
    """
    probabilities = _check_probabilities(probs)
    member_thresholds = _check_thresholds(thresholds, probabilities.shape[1])
    return (probabilities >= member_thresholds).mean(axis=1)


def unanimous_vote(probs: np.ndarray, thresholds: Sequence[float] | np.ndarray | float) -> np.ndarray:
    """Score each image by its least confident member, so that 0.5 or more means all members are positive.

    Each probability is first mapped piecewise linearly onto [0, 1] with its member's threshold
    at 0.5 (see :func:`rescale_to_threshold`), and the image score is the minimum over members.
    So ``score >= 0.5`` is the unanimous rule, and, unlike the fraction of :func:`hard_vote`, the
    score still ranks images for a ROC curve.

    Parameters
    ----------
    probs
        Member probabilities, shape ``(n_images, n_members)``.
    thresholds
        One operating threshold per member, or one shared by all.

    Returns
    -------
    The minimum rescaled probability per image, shape ``(n_images,)``.

    Raises
    ------
    ValueError
        When the inputs are invalid or the member counts differ.
    """
    return rescale_to_threshold(probs, thresholds).min(axis=1)


def rescale_to_threshold(probs: np.ndarray, thresholds: Sequence[float] | np.ndarray | float) -> np.ndarray:
    """Map each member probability onto [0, 1] so that its member's threshold lands on 0.5.

    ``p < t`` maps linearly from [0, t) onto [0, 0.5) and ``p >= t`` from [t, 1] onto [0.5, 1].
    With ``t = 1`` only ``p = 1`` reaches 0.5, and with ``t = 0`` every probability does.

    Raises
    ------
    ValueError
        When the inputs are invalid or the member counts differ.
    """
    probabilities = _check_probabilities(probs)
    member_thresholds = np.broadcast_to(_check_thresholds(thresholds, probabilities.shape[1]), probabilities.shape)

    below = 0.5 * np.divide(probabilities, member_thresholds, out=np.zeros_like(probabilities),
                            where=member_thresholds > 0)
    above_span = 1.0 - member_thresholds
    above = 0.5 + 0.5 * np.divide(probabilities - member_thresholds, above_span, out=np.zeros_like(probabilities),
                                  where=above_span > 0)
    return np.where(probabilities >= member_thresholds, above, below)


def accuracy_weights(accuracies: Sequence[float] | np.ndarray) -> np.ndarray:
    """Turn member accuracies into voting weights proportional to them and summing to 1.

    Raises
    ------
    ValueError
        When an accuracy is outside [0, 1] or all are zero.
    """
    values = np.asarray(accuracies, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"accuracies must be a non-empty list of values in [0, 1], found {accuracies!r}")
    return _normalised_weights(values, values.size)


def combine(
    rule: str,
    probs: np.ndarray,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    thresholds: Sequence[float] | np.ndarray | float | None = None,
    accuracies: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Combine member probabilities with the voting rule named ``rule``.

    Each rule reads only its own parameter and ignores the others, so that one call per rule
    with the same keyword arguments compares all rules: ``soft`` reads none, ``hard`` and
    ``unanimous`` read ``thresholds``, ``weighted`` reads ``accuracies`` and ``fixed`` reads
    ``weights``.

    Parameters
    ----------
    rule
        A key of :data:`VOTING_RULES`.
    probs
        Member probabilities, shape ``(n_images, n_members)``.
    weights
        Fixed weights per member, for ``fixed``.
    thresholds
        Operating threshold per member, for ``hard`` and ``unanimous``.
    accuracies
        Training or validation accuracy per member, for ``weighted``.

    Returns
    -------
    The score per image in [0, 1], shape ``(n_images,)``.

    Raises
    ------
    ValueError
        When the rule is unknown, its parameter is missing, or the inputs are invalid.
    """
    if rule not in VOTING_RULES:
        raise ValueError(f"unknown voting rule {rule!r}. Use one of {sorted(VOTING_RULES)}")

    if rule == "soft":
        return soft_vote(probs)
    if rule in ("hard", "unanimous"):
        if thresholds is None:
            raise ValueError(f"voting rule {rule!r} needs thresholds, one per member")
        return hard_vote(probs, thresholds) if rule == "hard" else unanimous_vote(probs, thresholds)
    if rule == "weighted":
        if accuracies is None:
            raise ValueError("voting rule 'weighted' needs accuracies, one per member")
        return soft_vote(probs, accuracy_weights(accuracies))
    if weights is None:
        raise ValueError("voting rule 'fixed' needs weights, one per member")
    return soft_vote(probs, weights)


def _check_probabilities(probs: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(probs, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] == 0:
        raise ValueError(f"member probabilities must have shape (n_images, n_members), found {probabilities.shape}")
    if not np.all((probabilities >= 0) & (probabilities <= 1)):
        raise ValueError("member probabilities must be in [0, 1], found values outside it or NaN")
    return probabilities


def _check_thresholds(thresholds: Sequence[float] | np.ndarray | float, members: int) -> np.ndarray:
    values = np.asarray(thresholds, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(members, float(values))
    if values.shape != (members,):
        raise ValueError(f"expected one threshold per member ({members}), found shape {values.shape}")
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"member thresholds must be in [0, 1], found {values.tolist()}")
    return values


def _normalised_weights(weights: Sequence[float] | np.ndarray, members: int) -> np.ndarray:
    values = np.asarray(weights, dtype=np.float64)
    if values.shape != (members,):
        raise ValueError(f"expected one weight per member ({members}), found shape {values.shape}")
    if not np.all(np.isfinite(values) & (values >= 0)) or values.sum() <= 0:
        raise ValueError(f"weights must be non-negative and not all zero, found {values.tolist()}")
    return values / values.sum()
