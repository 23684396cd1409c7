"""Split image records by patient, so that no patient is ever in two splits.

:func:`split_by_patient` draws the test patients first, stratified by the patient's label, then
splits the remaining patients 8:2 into train and validation. :func:`patient_folds` makes k folds
by patient for cross-validation. :func:`check_disjoint` enforces that no patient is in two splits.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from inference.training.records import ImageRecord

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class Splits(dict[str, list[ImageRecord]]):
    """Records per split name, with the settings that drew them.

    A plain ``dict`` that also carries ``seed``, ``test_fraction`` and ``validation_fraction``, so
    that :func:`~inference.training.manifests.write_manifests` can record them in ``index.json``.
    """

    def __init__(self, splits: Mapping[str, list[ImageRecord]], *, seed: int | None,
                 test_fraction: float | None, validation_fraction: float | None) -> None:
        super().__init__(splits)
        self.seed = seed
        self.test_fraction = test_fraction
        self.validation_fraction = validation_fraction



def split_by_patient(records: Sequence[ImageRecord], *, test_fraction: float = 0.2,
                     validation_fraction: float = 0.2, seed: int = 0) -> Splits:
    """Split records into train, validation and test sets by patient, stratified by body part and label.

    A patient is positive when any of their images is; their stratum is their body parts and that
    label, so each body part keeps its share of fractures in every split. Where a stratum is too
    small, the draw is stratified by label alone. The test patients are drawn first, as
    ``test_fraction`` of all patients, rounded up but leaving at least one patient in the rest.
    Then ``validation_fraction`` of the remaining patients form the validation set, so the default
    0.2 splits the rest 8:2. Each draw is stratified when every class has at least 2 patients and
    the draw and the rest can each take one patient of every class. Otherwise the draw is made
    without stratification and a warning is logged. A draw from fewer than 2 patients leaves all
    of them in the rest. For example, 4 patients give 2 train, 1 validation and 1 test patient, not
    stratified; 1 patient goes to train.

    Parameters
    ----------
    records
        The images to split; their order is kept within each split.
    test_fraction, validation_fraction
        Fractions in [0, 1); 0 draws no patients.
    seed
        Random state of both draws. The same records and seed give the same splits.

    Returns
    -------
    The keys ``"train"``, ``"val"`` and ``"test"``, with the seed and fractions as attributes.

    Raises
    ------
    ValueError
        When a fraction is outside [0, 1).
    """
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("validation_fraction", validation_fraction)
    patients = _patient_strata(records)

    rest, test = _draw_patients(patients, test_fraction, seed, "test")
    train, validation = _draw_patients({patient: patients[patient] for patient in rest}, validation_fraction,
                                       seed, "validation")

    split_of = {patient: "train" for patient in train} | {patient: "val" for patient in validation}
    split_of |= {patient: "test" for patient in test}
    grouped: dict[str, list[ImageRecord]] = {name: [] for name in SPLITS}
    for record in records:
        grouped[split_of[record.patient_id]].append(record)

    splits = Splits(grouped, seed=seed, test_fraction=test_fraction, validation_fraction=validation_fraction)
    check_disjoint(splits)
    logger.info("split %d patients into %d train, %d validation and %d test patients (seed %d)", len(patients),
                len(train), len(validation), len(test), seed)
    return splits


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), found {value}")


def _patient_strata(records: Iterable[ImageRecord]) -> dict[str, str]:
    """Return each patient's stratum ``<body parts>:<label>``, keyed in sorted patient order.

    The label is 1 when any of the patient's images is positive.
    """
    labels = _patient_labels(records)
    parts: dict[str, set[str]] = defaultdict(set)
    for record in records:
        parts[record.patient_id].add(record.body_part)
    return {patient: f"{'+'.join(sorted(parts[patient]))}:{label}" for patient, label in labels.items()}


def _patient_labels(records: Iterable[ImageRecord]) -> dict[str, int]:
    """Return each patient's label (1 when any image is positive), keyed in sorted patient order."""
    labels: dict[str, int] = defaultdict(int)
    for record in records:
        labels[record.patient_id] = max(labels[record.patient_id], record.label)
    return dict(sorted(labels.items()))


def _draw_patients(patients: Mapping[str, str], fraction: float, seed: int, name: str) -> tuple[list[str], list[str]]:
    """Draw ``fraction`` of the patients; return (rest, drawn), each sorted."""
    ids = list(patients)
    if fraction == 0.0 or not ids:
        return ids, []
    if len(ids) < 2:
        logger.warning("1 patient is too few to draw a %s set; the patient stays in the rest", name)
        return ids, []

    drawn_count = min(math.ceil(fraction * len(ids)), len(ids) - 1)
    strata = [patients[patient] for patient in ids]
    labels = [stratum.rsplit(":", 1)[1] for stratum in strata]
    stratify = next((choice for choice in (strata, labels) if _can_stratify(choice, drawn_count)), None)
    if stratify is None:
        classes = Counter(labels)
        logger.warning("drawing the %s set without stratification: %d positive and %d negative patients are too "
                       "few to draw %d of %d with both classes", name, classes["1"], classes["0"], drawn_count, len(ids))
    elif stratify is labels:
        logger.info("drawing the %s set stratified by label only: some body part has too few patients", name)

    rest, drawn = train_test_split(ids, test_size=drawn_count, random_state=seed, shuffle=True, stratify=stratify)
    return sorted(rest), sorted(drawn)


def _can_stratify(strata: Sequence[str], drawn_count: int) -> bool:
    """True when every stratum has 2 patients and both the draw and the rest can hold one of each."""
    counts = Counter(strata)
    return min(counts.values()) >= 2 and drawn_count >= len(counts) and len(strata) - drawn_count >= len(counts)


def check_disjoint(splits: Mapping[str, Sequence[ImageRecord]]) -> None:
    """Check that no patient has images in two splits.

    Raises
    ------
    ValueError
        When patients appear in more than one split; the message gives their count, not their ids.
    """
    split_names: dict[str, set[str]] = defaultdict(set)
    for name, records in splits.items():
        for record in records:
            split_names[record.patient_id].add(name)

    shared = sum(1 for names in split_names.values() if len(names) > 1)
    if shared:
        raise ValueError(f"{shared} patients appear in more than one of the splits {sorted(splits)}; "
                         "split by patient with split_by_patient or patient_folds")


def patient_folds(records: Sequence[ImageRecord], *, folds: int = 5,
                  seed: int = 0) -> list[tuple[list[ImageRecord], list[ImageRecord]]]:
    """Make k folds by patient for cross-validation, stratified by the patient's label.

    Uses scikit-learn's ``StratifiedGroupKFold`` with shuffling, grouped by patient id. Each image
    carries its patient's label (1 when any of the patient's images is positive). Every patient is
    held out in exactly one fold. When a class has fewer patients than folds, scikit-learn's
    warning is logged and some folds lack that class.

    Parameters
    ----------
    records
        The images; their order is kept within each part.
    folds
        Number of folds, 2 or more and at most the number of patients.
    seed
        Random state of the shuffle.

    Returns
    -------
    One (train, held-out) pair per fold.

    Raises
    ------
    ValueError
        When ``folds`` is below 2 or above the number of patients.
    """
    patients = _patient_labels(records)
    if folds < 2:
        raise ValueError(f"folds must be 2 or more, found {folds}")
    if folds > len(patients):
        raise ValueError(f"{folds} folds need at least {folds} patients, found {len(patients)}")

    groups = [record.patient_id for record in records]
    labels = [str(patients[patient]) for patient in groups]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        indices = list(splitter.split(np.zeros(len(records)), labels, groups))
    for warning in caught:
        logger.warning("patient folds: %s", warning.message)

    result = []
    for train_indices, held_out_indices in indices:
        train = [records[index] for index in train_indices]
        held_out = [records[index] for index in held_out_indices]
        check_disjoint({"train": train, "held_out": held_out})
        result.append((train, held_out))
    return result
