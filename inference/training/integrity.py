"""Checks on indexed records that the patient-level split alone cannot make.

A split by patient id keeps a patient's images together, but only if the same person always has the
same id and the same image appears only once. These checks find what breaks that: one image file
indexed twice (under one id or two), one patient id used by two inputs, and a split or body part
left with one class.
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from inference.training.records import ImageRecord

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def duplicate_images(records: Sequence[ImageRecord]) -> list[list[ImageRecord]]:
    """Return groups of records whose image files have the same content (SHA-256), largest first."""
    by_digest: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_digest[_digest(Path(record.image_path))].append(record)
    groups = [group for group in by_digest.values() if len(group) > 1]
    return sorted(groups, key=len, reverse=True)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def patients_in_several_inputs(inputs: Mapping[str, Sequence[ImageRecord]]) -> int:
    """Count patient ids that occur in more than one input; such patients are split as one person."""
    inputs_of: dict[str, set[str]] = defaultdict(set)
    for name, records in inputs.items():
        for record in records:
            inputs_of[record.patient_id].add(name)
    return sum(len(names) > 1 for names in inputs_of.values())


def single_class_groups(splits: Mapping[str, Sequence[ImageRecord]]) -> list[str]:
    """Name each split and body part whose images are all fractures or all normal."""
    labels: dict[tuple[str, str], set[int]] = defaultdict(set)
    for split, records in splits.items():
        for record in records:
            labels[(split, record.body_part)].add(int(record.label))
    return [f"{split} {part} ({'only fractures' if found == {1} else 'no fracture'})"
            for (split, part), found in sorted(labels.items()) if len(found) < 2]
