"""``usqa serve [--host HOST] [--port PORT]``: the review page (:mod:`worker.web`) on
waitress, a production WSGI server, at USQA_WEB_HOST:USQA_WEB_PORT (127.0.0.1:8080 by
default; put the hospital's reverse proxy in front of it for TLS: docs/reviews.md).

It checks first that the ledger's schema is this version's (exit 2 otherwise: run ``usqa db
upgrade``), logs the address it listens on, and stops cleanly on Ctrl-C or SIGTERM (requests
in progress are finished). Accounts: ``usqa user add``.

Exit codes: 0 stopped; 2 configuration (schema not current, a bad setting, the port taken).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

import db
from db.session import shown_url
from worker.commands.options import add_database_option
from worker.settings import Settings

__all__ = ["THREADS", "add_parser", "run"]

log = logging.getLogger(__name__)

THREADS = 8  # requests served at once (an overlay holds one while the model explains)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="the review page: browse, rate and summarise scans in a web browser",
        description="Serve the review page: QA leads and reviewers sign in, browse the scored "
        "scans by period, station, operator, transducer, grade and defect, see a scan's "
        "frames, score and defects (and why, with the saliency overlay), rate it, and read "
        "the summary and the agreement with the reviewers. Accounts: usqa user add. Behind "
        "the hospital's reverse proxy for TLS and single sign-on: docs/reviews.md.",
    )
    p.add_argument(
        "--host",
        dest="web_host",
        default=None,
        metavar="ADDRESS",
        help="address to listen on (USQA_WEB_HOST; default 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        dest="web_port",
        type=int,
        default=None,
        metavar="PORT",
        help="TCP port (USQA_WEB_PORT; default 8080; 0 = any free port)",
    )
    add_database_option(p)
    return p


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    db.require_current(settings.database_url)
    from waitress.server import create_server  # type: ignore[import-untyped]

    from worker.web import create_app

    app = create_app(settings)
    try:
        server = create_server(
            app,
            host=settings.web_host,
            port=settings.web_port,
            threads=THREADS,
            ident="usqa",
            clear_untrusted_proxy_headers=False,  # worker.web.proxies decides
        )
    except OSError as exc:
        print(
            f"usqa serve: cannot listen on {settings.web_host}:{settings.web_port}: "
            f"{exc.strerror or exc}; choose another --port or stop what uses it",
            file=sys.stderr,
        )
        return 2
    host, port = server.effective_host, server.effective_port
    shown = f"[{host}]" if ":" in str(host) else host
    previous = signal.signal(signal.SIGTERM, _stop)
    log.info(
        "review page listening on http://%s:%s/ (ledger %s)",
        shown,
        port,
        shown_url(settings.database_url),
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        db.dispose_engines()
    log.info("review page stopped")
    return 0
