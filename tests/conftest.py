"""Fixtures shared by the test tree: settings, a running service, real DICOM peers."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from listener.settings import BUNDLED_MODELS, Destination, Settings, load_settings
from tests.peers import ORTHANC, Orthanc, StoreSCP, free_port, require_loopback_only, require_program


@pytest.fixture(scope="session")
def model_package() -> Path:
    """The bundled demo package, or the folder named by PEDFRAC_TEST_MODELS."""
    return Path(os.environ.get("PEDFRAC_TEST_MODELS", BUNDLED_MODELS))


@pytest.fixture(scope="session", autouse=True)
def _ultralytics_offline(tmp_path_factory: pytest.TempPathFactory) -> None:
    from inference.offline import configure_ultralytics_offline

    configure_ultralytics_offline(tmp_path_factory.mktemp("ultralytics"))


def service_settings(data_dir: Path, models: Path, *, destinations: list[Destination] = (),
                     allow: list[str] = (), stable_after: float = 1.0) -> Settings:
    return load_settings(environ={}, overrides={
        "dicom": {"port": free_port(), "allowed_calling_ae_titles": list(allow)},
        "study": {"stable_after": stable_after, "poll_interval": 0.2},
        "storage": {"data_dir": str(data_dir)},
        "inference": {"models": str(models), "device": "cpu"},
        "delivery": {"destinations": [d.model_dump() for d in destinations], "backoff_initial": 0.5},
    })


@pytest.fixture
def loopback() -> None:
    require_loopback_only()


@pytest.fixture
def storescp(tmp_path: Path, loopback: None) -> Iterator[StoreSCP]:
    peer = StoreSCP(tmp_path / "storescp")
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture
def orthanc_factory(tmp_path: Path, loopback: None) -> Iterator:
    require_program(ORTHANC)
    started: list[Orthanc] = []

    def start(modalities: dict[str, tuple[str, str, int]], **options: object) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc{len(started)}", modalities, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
