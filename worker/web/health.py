"""``/healthz`` for the reverse proxy's and Kubernetes' probes: 200 ``ok`` while the ledger
answers, 503 when it does not. No sign-in, no data, nothing audited."""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from db.reviews.browse import ledger_answers
from worker.web.context import ledger

__all__ = ["blueprint"]

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)

WAIT_SECONDS = 5.0  # under the probes' timeouts (10 s in deploy/k8s/base/web.yaml)


@blueprint.route("/healthz")
def healthz() -> Response:
    try:
        with ledger(readonly=True, wait=WAIT_SECONDS) as session:
            ledger_answers(session)
    except Exception as exc:  # whatever the reason, the probe only needs to know
        log.warning("health check: the ledger does not answer: %s", exc)
        return Response("the ledger does not answer\n", status=503, mimetype="text/plain")
    return Response("ok\n", mimetype="text/plain")
