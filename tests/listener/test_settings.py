from __future__ import annotations

from pathlib import Path

import pytest

from listener.cli import build_parser, _serve_overrides
from listener.settings import Destination, SettingsError, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "pedfrac.example.toml"


def test_defaults_listen_on_loopback() -> None:
    settings = load_settings(environ={})

    assert settings.dicom.bind == "127.0.0.1"
    assert settings.dicom.ae_title == "PEDFRAC"
    assert settings.study.stable_after == 30.0


def test_example_file_validates() -> None:
    settings = load_settings(EXAMPLE, environ={})

    assert settings.delivery.destinations[0].ae_title == "ORTHANC"
    assert settings.storage.data_dir.is_absolute()


def test_unknown_key_named_in_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[dicom]\nae_tilte = 'X'\n")

    with pytest.raises(SettingsError, match=r"dicom\.ae_tilte: Extra inputs are not permitted"):
        load_settings(path, environ={})


def test_long_ae_title_rejected() -> None:
    with pytest.raises(SettingsError, match=r"dicom\.ae_title"):
        load_settings(overrides={"dicom": {"ae_title": "A" * 17}}, environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "pedfrac.toml"
    path.write_text("[dicom]\nport = 104\n")

    settings = load_settings(path, environ={"PEDFRAC_DICOM__PORT": "11113"})

    assert settings.dicom.port == 11113


def test_flags_override_environment() -> None:
    args = build_parser().parse_args(["serve", "--port", "4242", "--allow", "CR1", "--allow", "DX2",
                                      "--destination", "PACS@127.0.0.1:4243", "--stable-after", "5"])

    settings = load_settings(overrides=_serve_overrides(args), environ={"PEDFRAC_DICOM__PORT": "11113"})

    assert settings.dicom.port == 4242
    assert settings.dicom.allowed_calling_ae_titles == ["CR1", "DX2"]
    assert settings.delivery.destinations == [Destination(ae_title="PACS", host="127.0.0.1", port=4243)]
    assert settings.study.stable_after == 5.0


def test_destination_without_port_rejected() -> None:
    with pytest.raises(SettingsError, match=r"'PACS@host' is not in the form AET@HOST:PORT"):
        Destination.parse("PACS@host")


def test_relative_data_dir_follows_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "pedfrac.toml"
    path.parent.mkdir()
    path.write_text("[storage]\ndata_dir = 'data'\n")

    settings = load_settings(path, environ={})

    assert settings.storage.data_dir == (tmp_path / "conf" / "data").resolve()
