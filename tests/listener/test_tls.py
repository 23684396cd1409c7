"""DICOM TLS with a certificate authority made by openssl for the test: who gets in, and no secret in logs."""
from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import select

from listener.scp import SUCCESS, StoreSCP
from listener.scu import SendItem, send_files
from listener.settings import DeliverySettings, Destination, DicomSettings
from listener.tls import MINIMUM_VERSION, TLSSetupError, client_context, server_context
from storage.archive import Archive
from storage.database import open_database, sqlite_url
from storage.models import Instance
from tests.listener.harness import CountingPACS, small_dx, store_all
from tests.peers import free_port, require_program

KEY_PASSWORD = "pw-Zebra-4417-never-logged"
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_certificate: Path
    server_key: Path
    server_key_encrypted: Path
    client_certificate: Path
    client_key: Path
    rogue_certificate: Path
    rogue_key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_program("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(folder: Path, name: str, subject: str, extensions: str) -> None:
    """A key and a certificate signed by the test CA, valid for two days."""
    openssl("req", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder)
    (folder / f"{name}.ext").write_text(extensions)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    folder = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=pedfrac test CA", cwd=folder)
    issue(folder, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\n")
    issue(folder, "client", "/CN=MODALITY", "extendedKeyUsage=clientAuth\n")
    openssl("pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}", "-out", "server-enc.key",
            cwd=folder)
    openssl("req", "-x509", *EC_KEY, "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2",
            "-subj", "/CN=MODALITY", cwd=folder)
    return PKI(folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "server-enc.key",
               folder / "client.crt", folder / "client.key", folder / "rogue.crt", folder / "rogue.key")


def tls_settings(pki: PKI, **changes: object) -> DicomSettings:
    values: dict[str, object] = {"port": free_port(), "tls_certificate": pki.server_certificate,
                                 "tls_private_key": pki.server_key_encrypted,
                                 "tls_private_key_password": KEY_PASSWORD, "tls_ca_file": pki.ca,
                                 "tls_require_client_certificate": True}
    values.update(changes)
    return DicomSettings(**values)


@pytest.fixture
def scp(tmp_path: Path, pki: PKI) -> Iterator[StoreSCP]:
    server = StoreSCP(tls_settings(pki), open_database(sqlite_url(tmp_path)), Archive(tmp_path / "archive"),
                      min_free_bytes=0)
    server.start()
    yield server
    server.stop()


def client(pki: PKI, *, certificate: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pki.ca)
    if certificate is not None:
        context.load_cert_chain(certificate, key)
    return context


def echo(port: int, context: ssl.SSLContext | None) -> int | None:
    ae = AE(ae_title="MODALITY")
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="PEDFRAC",
                         tls_args=(context, "127.0.0.1") if context is not None else None)
    if not assoc.is_established:
        return None
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status)


def test_client_certificate_accepted(scp: StoreSCP, pki: PKI) -> None:
    assert echo(scp.port, client(pki, certificate=pki.client_certificate, key=pki.client_key)) == SUCCESS


def test_store_over_tls(scp: StoreSCP, pki: PKI) -> None:
    dataset = small_dx()
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(str(dataset.SOPClassUID))
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="PEDFRAC",
                         tls_args=(client(pki, certificate=pki.client_certificate, key=pki.client_key), "127.0.0.1"))
    status = assoc.send_c_store(dataset)
    assoc.release()

    assert status.Status == SUCCESS
    with scp.sessions() as session:
        assert session.scalar(select(Instance.sop_instance_uid)) == dataset.SOPInstanceUID


def test_plain_tcp_refused(scp: StoreSCP) -> None:
    assert echo(scp.port, None) is None


def test_missing_client_certificate_refused(scp: StoreSCP, pki: PKI) -> None:
    assert echo(scp.port, client(pki)) is None


def test_rogue_client_certificate_refused(scp: StoreSCP, pki: PKI) -> None:
    assert echo(scp.port, client(pki, certificate=pki.rogue_certificate, key=pki.rogue_key)) is None


def test_old_tls_versions_refused(pki: PKI) -> None:
    context = server_context(tls_settings(pki))

    assert context.minimum_version == MINIMUM_VERSION == ssl.TLSVersion.TLSv1_2


def test_tls11_client_refused(scp: StoreSCP, pki: PKI) -> None:
    context = client(pki, certificate=pki.client_certificate, key=pki.client_key)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1

    assert echo(scp.port, context) is None


def test_silent_peer_blocks_nobody(scp: StoreSCP, pki: PKI) -> None:
    with socket.create_connection(("127.0.0.1", scp.port)):
        started = time.monotonic()
        status = echo(scp.port, client(pki, certificate=pki.client_certificate, key=pki.client_key))
        elapsed = time.monotonic() - started

    assert status == SUCCESS
    assert elapsed < 5


def test_dcmtk_echoscu_over_tls(scp: StoreSCP, pki: PKI) -> None:
    result = subprocess.run(
        [require_program("echoscu"), "-aet", "MODALITY", "-aec", "PEDFRAC", "+tls", str(pki.client_key),
         str(pki.client_certificate), "+cf", str(pki.ca), "127.0.0.1", str(scp.port)],
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr


def test_key_password_not_logged(tmp_path: Path, pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    settings = tls_settings(pki)
    caplog.set_level(logging.DEBUG)
    server = StoreSCP(settings, open_database(sqlite_url(tmp_path)), Archive(tmp_path / "archive"), min_free_bytes=0)
    server.start()
    try:
        echo(server.port, client(pki, certificate=pki.client_certificate, key=pki.client_key))
        store_all(server.port, [small_dx()])
    finally:
        server.stop()

    assert KEY_PASSWORD not in caplog.text
    assert KEY_PASSWORD not in repr(settings)
    assert KEY_PASSWORD not in str(settings.model_dump())


def test_wrong_key_password_named(pki: PKI) -> None:
    settings = tls_settings(pki, tls_private_key_password="not-the-password")

    with pytest.raises(TLSSetupError, match=r"cannot load dicom\.tls_certificate .*server\.crt") as raised:
        server_context(settings)
    assert "not-the-password" not in str(raised.value)


def test_client_certificate_needs_ca() -> None:
    with pytest.raises(ValueError, match="tls_require_client_certificate needs"):
        DicomSettings(tls_certificate=Path("a.crt"), tls_private_key=Path("a.key"),
                      tls_require_client_certificate=True)


def test_delivery_over_tls(tmp_path: Path, pki: PKI) -> None:
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(pki.server_certificate, pki.server_key)
    server_side.load_verify_locations(pki.ca)
    server_side.verify_mode = ssl.CERT_REQUIRED
    pacs = CountingPACS(ssl_context=server_side).start()
    dataset = small_dx()
    path = tmp_path / "out.dcm"
    dataset.save_as(path, enforce_file_format=True)
    ours = DicomSettings(tls_certificate=pki.client_certificate, tls_private_key=pki.client_key)
    destination = Destination(ae_title=pacs.aet, host="127.0.0.1", port=pacs.port, tls=True)
    try:
        outcomes = send_files("PEDFRAC", destination, [SendItem(1, path)], timeout=10,
                              ssl_context=client_context(ours, DeliverySettings(tls_ca_file=pki.ca)))
    finally:
        pacs.stop()

    assert [outcome.error for outcome in outcomes] == [None]
    assert pacs.count(str(dataset.SOPInstanceUID)) == 1
