"""Forwarding headers believed from the trusted reverse proxies only.

A request whose TCP peer is one of ``USQA_WEB_TRUSTED_PROXIES`` goes through werkzeug's
``ProxyFix`` for one hop (``X-Forwarded-For``: the client address the audit trail records;
``X-Forwarded-Proto``: https); from any other peer those headers are ignored. The peer and
whether it is trusted are kept in the WSGI environ for the single sign-on header
(:mod:`worker.web.auth`), which must never be believed from anyone else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from worker.web.config import WebConfig

__all__ = ["PEER", "TRUSTED_PEER", "TrustedProxies"]

PEER = "usqa.peer"  # the TCP peer address, before any forwarding header
TRUSTED_PEER = "usqa.trusted_peer"  # True when that peer is a trusted proxy

_FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
              "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")  # fmt: skip


class TrustedProxies:
    """WSGI middleware: ProxyFix for the trusted peers; for the others, the forwarding
    headers and the single sign-on header are dropped."""

    def __init__(self, app: Any, config: WebConfig) -> None:
        self.app = app
        self.config = config
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=0, x_port=0, x_prefix=0)
        header = config.user_header
        self.untrusted = _FORWARDED + (
            ("HTTP_" + header.upper().replace("-", "_"),) if header else ()
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR")
        trusted = self.config.is_proxy(peer)
        environ[PEER] = peer
        environ[TRUSTED_PEER] = trusted
        if trusted:
            return self.fixed(environ, start_response)
        for key in self.untrusted:  # never believed from this peer: not even seen
            environ.pop(key, None)
        return self.app(environ, start_response)
