"""Error pages of the review page (400, 403, 404, 405, 410, 413, 429, 500, 503): a page that
says what happened and what to do, never a stack trace; unexpected errors are logged here,
with their traceback, on the server only."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from worker.errors import ConfigError, DatabaseUnavailableError

__all__ = ["register"]

log = logging.getLogger(__name__)

TITLES = {
    400: "The request was refused",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    410: "No longer available",
    413: "Too large",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "The database is not answering",
}


def _page(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    title = TITLES.get(code, error.name)
    return render_template("error.html", code=code, title=title, message=error.description), code


def _unavailable(exc: Exception) -> tuple[str, int]:
    log.warning("the ledger does not answer: %s", exc)
    return _page(
        ServiceUnavailable(
            "The review page cannot reach its database just now. Try again in a minute; if "
            "it goes on, tell IT (the usqa database server may be down)."
        )
    )


def _misconfigured(exc: Exception) -> tuple[str, int]:
    log.error("the review page cannot use the ledger: %s", exc)
    return _page(
        ServiceUnavailable(
            "The review page's database is not ready for this version of usqa. Tell IT: "
            "the database needs `usqa db upgrade`."
        )
    )


def _unexpected(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, HTTPException):
        return _page(exc)
    log.exception("the review page failed on a request")
    return _page(
        InternalServerError(
            "The page could not be shown because of an error in usqa. It was logged for IT; "
            "go back and try again."
        )
    )


def register(app: Flask) -> None:
    """Install the error pages on ``app``."""
    app.register_error_handler(HTTPException, _page)
    app.register_error_handler(DatabaseUnavailableError, _unavailable)
    app.register_error_handler(ConfigError, _misconfigured)
    app.register_error_handler(Exception, _unexpected)
