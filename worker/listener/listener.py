"""The Storage SCP's lifecycle: build the application entity, serve in the background,
stop. Used by ``usqa listen`` (scans go to the broker) and ``usqa run --listen`` (to the
in-process runner)."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from pynetdicom import AE, _config, dimse_messages, evt

from worker.listener.contexts import accepted_contexts
from worker.listener.handlers import handle_store
from worker.listener.server import ListenerServer, parse_networks, tls_context
from worker.listener.storage import Store

__all__ = ["MAX_PDU", "Listener"]

log = logging.getLogger(__name__)

MAX_PDU = 256 * 1024  # bounded PDUs were the fastest and keep memory flat (research note)


def _stream_to(store: Store) -> None:
    """Make pynetdicom stream every C-STORE data set into ``store``'s incoming folder
    (process-wide: one listener per process)."""
    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = functools.partial(store.temporary_file)


class Listener:
    """The DICOM listener of drop folder ``root``: :meth:`start` serves in background
    threads, :meth:`stop` ends the associations and closes the port. ``send`` gets the
    ids of new scans."""

    def __init__(self, root: str, settings: Any, send: Callable[[list[int]], None]) -> None:
        self.settings = settings
        self.store = Store(root, settings, send)
        self.ae = AE(ae_title=settings.dicom_ae_title)
        self.ae.maximum_associations = settings.dicom_max_associations
        self.ae.maximum_pdu_size = MAX_PDU
        self.ae.require_calling_aet = list(settings.dicom_allowed_aes)
        self.ae.require_called_aet = True  # a sender set up for another AE title is told so
        self.ae.supported_contexts = accepted_contexts()
        self.networks = parse_networks(settings.dicom_allowed_addresses)
        self.tls = (
            tls_context(settings.dicom_tls_cert, settings.dicom_tls_key)
            if settings.dicom_tls_cert is not None
            else None
        )
        self.server: ListenerServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port served (the real one when USQA_DICOM_PORT was 0)."""
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self) -> None:
        """Recover what a crash left in the incoming folder, then serve."""
        moved = self.store.recover()
        if moved:
            log.info("recovered %d received file(s) from the last stop", moved)
        _stream_to(self.store)
        handlers: list[Any] = [(evt.EVT_C_STORE, handle_store, [self.store])]
        server = self.ae.make_server(
            (self.settings.dicom_address, self.settings.dicom_port),
            evt_handlers=handlers,
            server_class=ListenerServer,
            networks=self.networks,
            tls=self.tls,
        )
        self.server = server  # type: ignore[assignment]
        self.ae._servers.append(server)  # as AE.start_server does: shutdown() removes it
        self._thread = threading.Thread(
            target=server.serve_forever, name="usqa-dicom-listener", daemon=True
        )
        self._thread.start()
        log.info(
            "DICOM listener %s on %s:%d%s (calling AEs: %s; addresses: %s; at most %d "
            "associations)",
            self.settings.dicom_ae_title,
            self.settings.dicom_address,
            self.port,
            " over TLS" if self.tls else "",
            ", ".join(self.settings.dicom_allowed_aes) or "any",
            ", ".join(map(str, self.networks)) or "any",
            self.settings.dicom_max_associations,
        )

    def stop(self) -> None:
        """Stop accepting, end the associations, close the port."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
