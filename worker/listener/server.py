"""The association server: who may connect, TLS off the accept loop, and its start/stop.

pynetdicom's stock server does the TLS handshake in its accept loop, where one silent TCP
client stalls every other association; here the accept loop only accepts, and each
connection's own thread does the handshake (with a timeout). An address allow-list
(USQA_DICOM_ALLOWED_ADDRESSES) closes other peers before anything is read; unknown
calling AE titles (USQA_DICOM_ALLOWED_AES) and associations over
USQA_DICOM_MAX_ASSOCIATIONS are rejected by pynetdicom (the latter as transient,
"local limit exceeded", so the sender tries again).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from worker import networks
from worker.errors import ConfigError
from worker.networks import Network

__all__ = ["ListenerServer", "parse_networks", "tls_context"]

log = logging.getLogger(__name__)

TLS_HANDSHAKE_S = 10.0


def parse_networks(values: Sequence[str]) -> list[Network]:
    """USQA_DICOM_ALLOWED_ADDRESSES as networks (a bare address is a /32 or /128)."""
    out = []
    for text in values:
        try:
            out.extend(networks.parse_networks([text]))
        except ValueError as exc:
            raise ConfigError(
                f"USQA_DICOM_ALLOWED_ADDRESSES: {text!r} is not an address or network; "
                "expected e.g. 10.1.0.0/16 or 192.168.4.7"
            ) from exc
    return out


def tls_context(cert: Any, key: Any) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later) from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"USQA_DICOM_TLS_CERT={cert} / USQA_DICOM_TLS_KEY={key}: cannot be loaded ({exc})"
        ) from exc
    return context


def _allowed(address: str, allowed: Sequence[Network]) -> bool:
    return not allowed or networks.address_in(address, allowed)


class ListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with an address allow-list and TLS in the
    per-connection thread. Built by ``AE.make_server(..., server_class=ListenerServer,
    networks=..., tls=...)``."""

    def __init__(
        self,
        *args: Any,
        networks: Sequence[Network] = (),
        tls: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        self.networks = list(networks)
        self.tls = tls
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept only: no handshake here (see the module docstring)."""
        assert self.socket is not None
        client, address = self.socket.accept()
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse peers outside USQA_DICOM_ALLOWED_ADDRESSES before reading a byte."""
        host = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        if _allowed(host, self.networks):
            return True
        log.warning("closed a connection from %s: not in USQA_DICOM_ALLOWED_ADDRESSES", host)
        return False

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the TLS handshake (bounded), then the
        association."""
        if self.tls is not None:
            try:
                before = request.gettimeout()
                request.settimeout(TLS_HANDSHAKE_S)
                request = self.tls.wrap_socket(request, server_side=True)
                request.settimeout(before)
            except (OSError, ssl.SSLError) as exc:
                log.warning("TLS handshake with %s failed: %s", client_address, exc)
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)
