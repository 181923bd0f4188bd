"""The quality alerts of the ledger as Prometheus gauges, beside the worker metrics
(:mod:`worker.ops.metrics`, same registry and endpoint)::

    quality_alerts{kind,dimension,group,defect}   1 per current alert: kind "score" (mean
                                                  score or poor share), "defect" (one
                                                  defect's share rose; defect = its name)
    probe_fault_share{station,transducer,defect}  a suspected probe fault: the share of its
                                                  scans listing the defect since first seen
    quality_alerts_checked_timestamp_seconds      when the alerts were last computed

The alerts are those of ``usqa report --alerts`` with the default rules (stations,
transducers and operators; the current model version; the windows ending on the latest day
with scans), recomputed every ``every`` seconds (10 minutes by default) in a daemon thread
of ``usqa run`` or ``usqa ingest``. Only current alerts have series (the gauges are cleared
before each refresh), so their number stays small; group names come from file headers and
prometheus_client escapes them. An alert rule in Prometheus: ``usqa_quality_alerts > 0``,
``usqa_probe_fault_share > 0``. A failed refresh keeps the last values.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.ops import metrics

__all__ = [
    "ALERT_DIMENSIONS",
    "gauges",
    "publish",
    "refresh",
    "register",
    "stop",
    "watch_quality_alerts",
]

log = logging.getLogger(__name__)

ALERT_DIMENSIONS = ("station", "transducer", "operator")  # as usqa report --alerts


@dataclass
class _Gauges:
    alerts: Any
    probes: Any
    checked: Any


_lock = threading.Lock()
_gauges: _Gauges | None = None
_thread: threading.Thread | None = None
_stop = threading.Event()


def register(registry: Any) -> None:
    """Create the three gauges on ``registry`` (the worker metrics' own, called when it is
    built: :func:`worker.ops.metrics.metrics`)."""
    global _gauges
    from prometheus_client import Gauge

    _gauges = _Gauges(
        alerts=Gauge(
            "usqa_quality_alerts",
            "1 per current quality drift alert (usqa report --alerts).",
            ["kind", "dimension", "group", "defect"],
            registry=registry,
            multiprocess_mode="max",
        ),
        probes=Gauge(
            "usqa_probe_fault_share",
            "Suspected probe faults: share of the probe's scans listing the defect.",
            ["station", "transducer", "defect"],
            registry=registry,
            multiprocess_mode="max",
        ),
        checked=Gauge(
            "usqa_quality_alerts_checked_timestamp_seconds",
            "Unix time the quality alerts were last computed.",
            registry=registry,
            multiprocess_mode="max",
        ),
    )


def gauges() -> _Gauges:
    """The three gauges of this process (built with the worker metrics)."""
    metrics.metrics()
    assert _gauges is not None
    return _gauges


def publish(found: tuple[Any, Any] | None, now: datetime | None = None) -> None:
    """Set the gauges to ``found`` (a :func:`db.qa.report.check_alerts` result)."""
    g = gauges()
    g.alerts.clear()
    g.probes.clear()
    if found is not None:
        drift, equipment = found
        for a in drift.alerts:
            kind = "defect" if a.defect else "score"
            g.alerts.labels(kind, a.dimension, a.group or "", a.defect or "").set(1)
        for p in equipment.alerts:
            g.probes.labels(p.station or "", p.transducer or "", p.defect).set(p.share)
    g.checked.set((now or datetime.now(UTC)).timestamp())


def refresh(database_url: str) -> None:
    """Compute the alerts from the ledger and publish them."""
    import db
    from db.qa.report import check_alerts

    now = datetime.now(UTC)
    with db.session_scope(database_url, readonly=True) as session:
        found = check_alerts(session, ALERT_DIMENSIONS, today=now.date())
    publish(found, now)


def watch_quality_alerts(database_url: str, every: float = 600.0) -> None:
    """Refresh the gauges now and every ``every`` seconds in a daemon thread (one per
    process: a second call does nothing). :func:`stop` ends it."""
    global _thread

    def loop() -> None:
        while True:
            try:
                refresh(database_url)
            except Exception as exc:  # the database may be away for a while
                log.debug("quality alerts not refreshed: %s", exc)
            if _stop.wait(every):
                return

    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _stop.clear()
        _thread = threading.Thread(target=loop, name="usqa-quality-alerts", daemon=True)
        _thread.start()


def stop() -> None:
    """Stop the refresh thread (called by :func:`worker.ops.metrics.shutdown`)."""
    global _thread
    _stop.set()
    if _thread is not None:
        _thread.join(timeout=5)
    _thread = None
