"""Fixtures of the listener tests: the reliability figures that fault-injection tests record."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_FIGURES: list[tuple[str, dict[str, object]]] = []


class Figures:
    """Counts one test records (instances sent, stored, lost; deliveries attempted, delivered, duplicated)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def record(self, **counts: object) -> None:
        _FIGURES.append((self.name, counts))
        print(f"figures {self.name}: " + ", ".join(f"{key}={value}" for key, value in counts.items()))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every recorded figure at the end of the run; PEDFRAC_FIGURES names a JSON file to write too."""
    if not _FIGURES:
        return

    terminalreporter.section("reliability figures")
    for name, counts in _FIGURES:
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{key}={value}" for key, value in counts.items()))

    target = os.environ.get("PEDFRAC_FIGURES")
    if target:
        Path(target).write_text(json.dumps([{"test": name, **counts} for name, counts in _FIGURES], indent=2))
