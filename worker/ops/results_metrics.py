"""The results outbox as Prometheus metrics, beside the worker metrics
(:mod:`worker.ops.metrics`, same registry and endpoint)::

    usqa_results_outbox{state}   reports in the ledger's outbox per state (pending, sent,
                                 failed), refreshed after each delivery pass
    usqa_results_oldest_pending_timestamp_seconds   when the oldest pending report was
                                 queued (0: none pending)
    usqa_results_sent_total      reports this process delivered
    usqa_results_failed_total    reports this process found undeliverable

An alert rule in Prometheus: ``usqa_results_outbox{state="failed"} > 0``, or
``time() - usqa_results_oldest_pending_timestamp_seconds > 3600`` with a nonzero value
(the PACS has been unreachable for an hour).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from db.ledger import OutboxSummary
from db.models import OUTBOX_STATES
from worker.ops import metrics

__all__ = ["delivered", "gauges", "publish", "register"]

log = logging.getLogger(__name__)


@dataclass
class _Metrics:
    outbox: Any
    oldest: Any
    sent: Any
    failed: Any


_metrics: _Metrics | None = None


def register(registry: Any) -> None:
    """Create the metrics on ``registry`` (called when the worker metrics are built)."""
    global _metrics
    from prometheus_client import Counter, Gauge

    _metrics = _Metrics(
        outbox=Gauge(
            "usqa_results_outbox",
            "Structured reports in the results outbox, by state.",
            ["state"],
            registry=registry,
            multiprocess_mode="max",
        ),
        oldest=Gauge(
            "usqa_results_oldest_pending_timestamp_seconds",
            "Unix time the oldest pending structured report was queued (0: none).",
            registry=registry,
            multiprocess_mode="max",
        ),
        sent=Counter(
            "usqa_results_sent", "Structured reports delivered by this process.", registry=registry
        ),
        failed=Counter(
            "usqa_results_failed",
            "Structured reports this process found undeliverable.",
            registry=registry,
        ),
    )
    for state in OUTBOX_STATES:
        _metrics.outbox.labels(state=state)


def gauges() -> _Metrics:
    metrics.metrics()
    assert _metrics is not None
    return _metrics


def publish(summary: OutboxSummary) -> None:
    """Set the outbox gauges from ``summary`` (a :func:`db.ledger.outbox_summary`)."""
    try:
        m = gauges()
        for state, count in summary.counts.items():
            m.outbox.labels(state=state).set(count)
        since = summary.oldest_pending_since
        m.oldest.set(since.timestamp() if since is not None else 0)
    except Exception:  # a metric must never stop a delivery
        log.debug("results metrics not published", exc_info=True)


def delivered(sent: int, failed: int) -> None:
    """This process delivered ``sent`` reports and failed ``failed`` for good."""
    try:
        m = gauges()
        if sent:
            m.sent.inc(sent)
        if failed:
            m.failed.inc(failed)
    except Exception:
        log.debug("results metrics not counted", exc_info=True)
