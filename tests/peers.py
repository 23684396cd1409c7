"""Real DICOM peers for integration tests: Orthanc and dcmtk's storescp, started on 127.0.0.1."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ORTHANC = "/usr/sbin/Orthanc"
# The Orthanc Web Viewer plugin from Debian's orthanc-webviewer package.
WEB_VIEWER_PLUGIN = "/usr/share/orthanc/plugins/libOrthancWebViewer.so"
CHROMIUM = "chromium"


def require_loopback_only() -> None:
    """Skip (fail in CI) unless this process runs in a network namespace with only ``lo``.

    Orthanc and storescp listen on every interface; scripts/test.sh provides the namespace.
    """
    # if_nameindex reads this process's network namespace; /sys/class/net may show the host's.
    interfaces = sorted(name for _index, name in socket.if_nameindex())
    if interfaces == ["lo"]:
        return

    message = f"integration tests need a loopback-only network namespace, found interfaces {interfaces}; run scripts/test.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_program(path: str) -> str:
    found = shutil.which(path)
    if found:
        return found
    message = f"{path} not found; scripts/install.sh installs it from Debian's packages"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_file(path: str, package: str) -> Path:
    """Return ``path`` if it exists; skip the test otherwise, but fail in CI, where it must exist."""
    if Path(path).is_file():
        return Path(path)
    message = f"{path} not found; scripts/install.sh installs it from the Debian package {package}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Orthanc:
    """An Orthanc from Debian's package with a temporary configuration and storage."""

    aet = "ORTHANC"

    def __init__(self, folder: Path, modalities: dict[str, tuple[str, str, int]], *,
                 lua_scripts: list[Path] = (), stable_age: int = 1, plugins: list[Path] = ()) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port()
        config = {
            "Name": "pedfrac-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": False,
            "DicomCheckCalledAet": False,
            "DicomModalities": {name: list(entry) for name, entry in modalities.items()},
            "Plugins": [str(path) for path in plugins],
            # The web viewer plugin caches decoded images here instead of in /tmp.
            "WebViewer": {"CachePath": str(folder / "web-viewer-cache")},
            "LuaScripts": [str(path) for path in lua_scripts],
            "StableAge": stable_age,
        }
        self.config_path = folder / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.folder / "orthanc.log").open("wb")
        self.process = subprocess.Popen([ORTHANC, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.http_port, process=self.process)
        wait_for_port(self.dicom_port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def request(self, method: str, path: str, body: bytes | dict | None = None) -> object:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = response.read()
        content_type = response.headers.get("Content-Type", "")
        return json.loads(payload) if "json" in content_type else payload

    def upload(self, dicom_bytes: bytes) -> dict:
        return self.request("POST", "/instances", dicom_bytes)  # type: ignore[return-value]


class StoreSCP:
    """dcmtk's storescp writing every received object into a folder."""

    def __init__(self, folder: Path, aet: str = "DESTINATION") -> None:
        self.folder = folder
        self.aet = aet
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder.parent / f"storescp-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [require_program("storescp"), "--aetitle", self.aet, "--output-directory", str(self.folder),
             "--accept-all", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def received(self) -> list[Path]:
        return sorted(path for path in self.folder.iterdir() if path.is_file())


def chromium(url: str, folder: Path, *, screenshot: Path | None = None, window: tuple[int, int] = (1280, 1024),
             budget_ms: int = 15000) -> str:
    """Load ``url`` in headless Chromium and return the DOM after scripts ran; optionally save a PNG screenshot.

    The profile is a new empty folder, and the flags turn off every background connection
    (updates, sync, QUIC), so the browser talks only to ``url``.
    """
    profile = folder / f"chromium-profile-{time.monotonic_ns()}"
    profile.mkdir(parents=True)
    command = [
        require_program(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}",
    ]
    if screenshot is not None:
        shot = subprocess.run([*command, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
        if shot.returncode != 0 or not screenshot.is_file():
            raise RuntimeError(f"chromium screenshot of {url} failed ({shot.returncode}): {shot.stderr.decode()[-2000:]}")

    dom = subprocess.run([*command, "--dump-dom", url], capture_output=True, timeout=180)
    if dom.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom of {url} failed ({dom.returncode}): {dom.stderr.decode()[-2000:]}")
    return dom.stdout.decode("utf-8", errors="replace")


def storescu(port: int, files: list[Path], *, calling: str = "MODALITY", called: str = "PEDFRAC",
             options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Send ``files`` with dcmtk's storescu; ``options`` such as ``-xw`` propose compressed syntaxes."""
    return subprocess.run(
        [require_program("storescu"), *options, "-aet", calling, "-aec", called, "127.0.0.1", str(port),
         *map(str, files)],
        capture_output=True, text=True, timeout=300,
    )


def dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    """Run dicom3tools' dciodvfy; return its Error lines and its Warning lines."""
    result = subprocess.run([require_program("dciodvfy"), str(path)], capture_output=True, timeout=120)
    # Patient names are printed in the file's character set, which need not be UTF-8.
    lines = (result.stdout + result.stderr).decode("utf-8", errors="replace").splitlines()
    return [line for line in lines if line.startswith("Error")], [line for line in lines if line.startswith("Warning")]


def wait_until(predicate, *, timeout: float, interval: float = 1.0, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met after {timeout} s")
