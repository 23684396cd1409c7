"""Timing probes: wrap the functions a job calls, so one real run yields its own stage times.

A probe replaces a module function or a class attribute with a wrapper that adds the call's wall
time to a stage, and restores the original afterwards. The stage times therefore come from the
same executions as the whole job, not from a replica of its steps. A probe whose target no longer
exists is skipped with a warning, so a renamed helper shows as a missing row, not a crash.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """A function or method to time: ``owner`` is a module path, or ``module:Class`` for a method."""

    owner: str
    attribute: str
    stage: str


class StageClock:
    """Seconds per stage, summed over the calls since the last :meth:`take`."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = defaultdict(float)

    def add(self, stage: str, seconds: float) -> None:
        self._seconds[stage] += seconds

    def take(self) -> dict[str, float]:
        """Return the seconds per stage and start counting from zero."""
        seconds = dict(self._seconds)
        self._seconds.clear()
        return seconds


@contextmanager
def probes_installed(probes: list[Probe], clock: StageClock) -> Iterator[list[str]]:
    """Install ``probes`` for the duration; yield the stages that could be measured."""
    restore: list[Callable[[], None]] = []
    measured = []
    try:
        for probe in probes:
            target = _resolve(probe.owner)
            original = getattr(target, probe.attribute, None) if target is not None else None
            if original is None:
                logger.warning("probe %s.%s not installed: not found; stage %r is not measured", probe.owner,
                               probe.attribute, probe.stage)
                continue
            stored = inspect.getattr_static(target, probe.attribute)
            wrapper = _timed(original, probe.stage, clock)
            # A static or class method keeps its kind, so instances still call it without ``self``.
            if isinstance(stored, (staticmethod, classmethod)):
                wrapper = type(stored)(_timed(stored.__func__, probe.stage, clock))
            setattr(target, probe.attribute, wrapper)
            restore.append(functools.partial(setattr, target, probe.attribute, stored))
            measured.append(probe.stage)
        yield measured
    finally:
        for undo in reversed(restore):
            undo()


def _resolve(owner: str) -> object | None:
    module_name, _, class_name = owner.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, class_name, None) if class_name else module


def _timed(function: Callable, stage: str, clock: StageClock) -> Callable:
    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            clock.add(stage, time.perf_counter() - start)

    return wrapper
