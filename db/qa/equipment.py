"""Equipment alerts: a probe that shows ``dead_elements`` scan after scan, day after day, is
reported as a suspected probe fault (it needs service, not an operator's training), apart
from the drift alerts.

A probe is a (station, transducer) pair: the ledger records the transducer the file names
(DICOM TransducerData, else TransducerType) and the station; DICOM ultrasound images carry
no standard transducer serial number, so two probes of one model on one station are one
probe here, and one model on two stations two. The rule (:class:`ProbeRule`), over the
``lookback_days`` ending on the report's last day, among scans scored by a model version
that judges defects:

* the probe's scans that *list* the defect (at any rank, ``scan_defects``) number at least
  ``min_scans``,
* on at least ``min_days`` distinct days,
* and make up at least ``min_share`` of the probe's judged scans from the first of those days
  to the end (so a probe that was repaired, or one that shows the defect once in a while,
  does not qualify).

"First seen" is the earliest day from which the three hold (an isolated early call, before
the fault proper, does not dilute the share). No statistical test: a dead element is a
hardware fault that shows on every image the probe makes, and the three minimums keep
single misjudged scans from raising it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from db.qa.rows import ScoreRows

__all__ = [
    "EQUIPMENT_DEFECTS",
    "EquipmentResult",
    "ProbeAlert",
    "ProbeRule",
    "detect_probe_faults",
]

# Defects of the equipment, not of how it is used: left out of the per-defect drift check.
EQUIPMENT_DEFECTS = ("dead_elements",)


@dataclass(frozen=True)
class ProbeRule:
    """When a defect on one probe counts as a suspected fault (see the module docstring)."""

    defect: str = "dead_elements"
    min_scans: int = 10
    min_days: int = 3
    min_share: float = 0.3  # 0..1
    lookback_days: int = 28

    def __post_init__(self) -> None:
        problems = []
        if self.min_scans < 1 or self.min_days < 1 or self.lookback_days < 1:
            problems.append("the probe rule's scans, days and look-back must be at least 1")
        if not 0 < self.min_share <= 1:
            problems.append("the probe rule's share must be above 0 and at most 1")
        if problems:
            raise ValueError("; ".join(problems))

    def since(self, until: date) -> date:
        return until - timedelta(days=self.lookback_days - 1)


@dataclass(frozen=True)
class ProbeAlert:
    """A probe that meets the rule."""

    station: str | None
    transducer: str | None
    defect: str
    first_seen: date
    last_seen: date
    days: int  # distinct days with the defect since first_seen
    scans_with_defect: int
    scans: int  # judged scans of the probe since first_seen
    share: float

    def message(self) -> str:
        probe = self.transducer or "(transducer not recorded)"
        return (
            f"Probe {probe} on station {self.station or '(not recorded)'}: {self.defect} on "
            f"{self.scans_with_defect} of {self.scans} scans ({self.share:.0%}) on {self.days} "
            f"days since {self.first_seen} (last {self.last_seen}): suspected probe fault; "
            "have the probe checked by service (not an operator matter)"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["first_seen"], out["last_seen"] = (
            self.first_seen.isoformat(),
            self.last_seen.isoformat(),
        )
        return out


@dataclass
class EquipmentResult:
    """The probe-fault alerts of one run, and how many probes were looked at."""

    rule: ProbeRule
    since: date
    until: date
    model_version: str | None
    probes: int = 0  # probes with judged scans in the look-back
    alerts: list[ProbeAlert] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": asdict(self.rule),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "model_version": self.model_version,
            "probes": self.probes,
            "alerts": [a.to_dict() for a in self.alerts],
        }


def _probe_alert(
    rule: ProbeRule, days: NDArray[np.int64], hit: NDArray[np.bool_]
) -> tuple[int, int, int, int, int] | None:
    """(first seen, last seen, days, scans with, scans) for the earliest start that meets
    the rule, from one probe's judged scans (their days, whether each lists the defect)."""
    hit_days = np.unique(days[hit])
    for start in hit_days:
        since = days >= start
        with_defect = int((hit & since).sum())
        seen_days = int((hit_days >= start).sum())
        scans = int(since.sum())
        if with_defect < rule.min_scans or seen_days < rule.min_days:
            return None  # later starts only have fewer
        if with_defect / scans >= rule.min_share:
            return int(start), int(hit_days[-1]), seen_days, with_defect, scans
    return None


def detect_probe_faults(
    rows: ScoreRows,
    listed: NDArray[np.bool_],
    *,
    until: date,
    rule: ProbeRule | None = None,
    model_version: str | None = None,
) -> EquipmentResult:
    """Apply ``rule`` to every probe; ``listed[i]``: scan ``i`` of ``rows`` lists the
    rule's defect. ``rows`` must cover the look-back."""
    rule = rule or ProbeRule()
    since = rule.since(until)
    result = EquipmentResult(rule, since, until, model_version)
    keep = rows.mask(since=since, until=until, model_version=model_version) & rows.judged
    stations, transducers = rows.codes["station"], rows.codes["transducer"]
    width = len(rows.labels["transducer"]) or 1
    probe = stations.astype(np.int64) * width + transducers
    selected = np.flatnonzero(keep)
    probes = np.unique(probe[selected])
    result.probes = int(probes.size)
    for code in probes:
        mine = selected[probe[selected] == code]
        found = _probe_alert(rule, rows.day[mine], listed[mine])
        if found is None:
            continue
        first, last, days, hits, scans = found
        s, t = divmod(int(code), width)
        result.alerts.append(
            ProbeAlert(
                station=rows.labels["station"][s],
                transducer=rows.labels["transducer"][t],
                defect=rule.defect,
                first_seen=date.fromordinal(first),
                last_seen=date.fromordinal(last),
                days=days,
                scans_with_defect=hits,
                scans=scans,
                share=hits / scans,
            )
        )
    result.alerts.sort(key=lambda a: (-a.share, a.station or "", a.transducer or ""))
    return result
