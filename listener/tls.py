"""DICOM TLS (PS3.15 Annex B.9, TLS 1.2 or later): the contexts for our SCP and for deliveries."""
from __future__ import annotations

import socket
import ssl
from pathlib import Path

from listener.settings import DeliverySettings, DicomSettings

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TLSSetupError(Exception):
    """A certificate, key or CA file named in the settings could not be loaded."""


class _DeferredHandshakeContext(ssl.SSLContext):
    """Server context whose handshake runs in the association's thread, not in the accept loop.

    pynetdicom wraps each accepted socket in the thread that accepts connections. With the default
    handshake on wrap, one peer that connects and sends nothing would stall every later connection.
    """

    def wrap_socket(self, sock: socket.socket, *args: object, **kwargs: object) -> ssl.SSLSocket:  # type: ignore[override]
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)  # type: ignore[arg-type]


def server_context(settings: DicomSettings) -> ssl.SSLContext | None:
    """Build the SCP's context from ``[dicom] tls_*``, or return None when TLS is not configured.

    Raises
    ------
    TLSSetupError
        When a file is missing or the key does not match the certificate; the message names the
        file, never the key's password.
    """
    if settings.tls_certificate is None or settings.tls_private_key is None:
        return None

    context = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, settings)
    if settings.tls_ca_file is not None:
        _load_ca(context, settings.tls_ca_file, "dicom.tls_ca_file")
    context.verify_mode = ssl.CERT_REQUIRED if settings.tls_require_client_certificate else ssl.CERT_NONE
    return context


def client_context(dicom: DicomSettings, delivery: DeliverySettings) -> ssl.SSLContext:
    """Build the context for destinations with ``tls = true``: verify the peer, offer our certificate.

    The peer's certificate must chain to ``[delivery] tls_ca_file`` (the system trust store when it
    is not set) and name the destination's host. Our SCP certificate, when set, is offered as the
    client certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = MINIMUM_VERSION
    if delivery.tls_ca_file is not None:
        _load_ca(context, delivery.tls_ca_file, "delivery.tls_ca_file")
    if dicom.tls_certificate is not None:
        _load_chain(context, dicom)
    return context


def _load_chain(context: ssl.SSLContext, settings: DicomSettings) -> None:
    password = settings.tls_private_key_password
    try:
        context.load_cert_chain(settings.tls_certificate, settings.tls_private_key,
                                password=password.get_secret_value() if password else None)
    except (OSError, ssl.SSLError) as error:
        raise TLSSetupError(
            f"cannot load dicom.tls_certificate {settings.tls_certificate} with dicom.tls_private_key "
            f"{settings.tls_private_key}: {error.strerror or error}; check both are PEM files that belong "
            "together, and the key's password"
        ) from error


def _load_ca(context: ssl.SSLContext, path: Path, key: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as error:
        raise TLSSetupError(f"cannot load {key} {path}: {error.strerror or error}; it must be a PEM file "
                            "of CA certificates") from error
