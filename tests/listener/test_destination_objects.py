"""The per-destination choice of output objects in the settings."""
from __future__ import annotations

from pathlib import Path

import pytest

from listener.settings import OBJECT_KINDS, Destination, SettingsError, load_settings


def settings_with_objects(tmp_path: Path, objects: str) -> Path:
    path = tmp_path / "pedfrac.toml"
    path.write_text(f'[[delivery.destinations]]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 104\nobjects = {objects}\n')
    return path


def test_destination_receives_every_kind_by_default() -> None:
    destination = Destination.parse("PACS@127.0.0.1:104")

    assert destination.objects == list(OBJECT_KINDS)
    assert all(destination.receives(kind) for kind in OBJECT_KINDS)


def test_destination_objects_read_from_file(tmp_path: Path) -> None:
    settings = load_settings(settings_with_objects(tmp_path, '["report", "key_objects"]'), environ={})

    destination = settings.delivery.destinations[0]
    assert destination.receives("report")
    assert not destination.receives("overlay")


def test_destination_rejects_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"delivery\.destinations\.0\.objects\.0: Input should be 'overlay', 'report'"):
        load_settings(settings_with_objects(tmp_path, '["overlays"]'), environ={})


def test_destination_rejects_empty_list(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"delivery\.destinations\.0\.objects: List should have at least 1 item"):
        load_settings(settings_with_objects(tmp_path, "[]"), environ={})


def test_destination_rejects_repeated_kind(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="object kinds report are listed more than once"):
        load_settings(settings_with_objects(tmp_path, '["report", "report"]'), environ={})
