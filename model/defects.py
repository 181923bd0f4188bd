"""The defect vocabulary: the names the model gives to what is wrong with a frame.

These exact names are used everywhere (``usqa score --json``, the ledger, log lines,
reports); this module owns them and imports nothing heavy, so ``db`` and ``worker`` may use
it without torch. The order below is the order of the model's defect outputs.

How a frame's probabilities become a scan's list (:func:`scan_defects`):

- a frame *shows* a defect when its probability is at least the defect threshold
  (``USQA_DEFECT_THRESHOLD``, default 0.5);
- a scan's probability of a defect is the mean of its frames' probabilities, and its
  ``frames`` share is the share of its scored frames that show it;
- the scan lists the defects whose mean probability is at least the threshold, most
  probable first; the first one is the scan's ``first_defect``. A single frame's list is
  simply the defects its probabilities reach. A cine in which the probe was lifted for a
  third of the loop therefore lists ``no_signal`` only if its mean probability reaches the
  threshold; the ``frames`` share tells how much of the loop was affected either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ADVICE",
    "DEFAULT_THRESHOLD",
    "DEFECTS",
    "DESCRIPTIONS",
    "DefectCall",
    "frame_first_defects",
    "scan_defects",
]

DEFECTS: tuple[str, ...] = (
    "low_gain",
    "high_gain",
    "low_contrast",
    "noise",
    "depth_attenuation",
    "shadowing",
    "no_signal",
    "blur",
    "compression",
    "dead_elements",
)

DESCRIPTIONS: dict[str, str] = {
    "low_gain": "overall gain too low: tissue sinks to black",
    "high_gain": "overall gain too high: washed out, bright areas saturated",
    "low_contrast": "dynamic range too wide: a flat grey image",
    "noise": "electronic noise (low signal-to-noise): dark regions fill with grain",
    "depth_attenuation": "the far field fades: penetration, time-gain compensation or "
    "frequency wrong",
    "shadowing": "dark bands along scan lines: acoustic shadows or partial loss of probe contact",
    "no_signal": "no tissue echo (probe lifted or in air, at most near-field reverberation), "
    "or a blank frame",
    "blur": "defocus, motion or low resolution",
    "compression": "lossy (JPEG) compression damage",
    "dead_elements": "dark streaks along scan lines from failed transducer elements "
    "(an equipment fault)",
}

# What a sonographer usually changes at the scanner (shown beside a defect in reports).
ADVICE: dict[str, str] = {
    "low_gain": "raise the overall gain",
    "high_gain": "lower the overall gain",
    "low_contrast": "lower the dynamic range (compression) setting",
    "noise": "lower the gain or the time-gain compensation at depth, or use a lower frequency",
    "depth_attenuation": "raise the far-field TGC, lower the frequency or reduce the depth",
    "shadowing": "add gel and keep the whole probe face in contact; angle between ribs",
    "no_signal": "the probe was not in contact: rescan",
    "blur": "hold the probe still, set the focus at the depth of interest",
    "compression": "export or store without lossy compression",
    "dead_elements": "the probe may be faulty: have it tested",
}

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class DefectCall:
    """One defect a scan shows: its mean probability over the scored frames and the share
    of those frames whose own probability reached the threshold."""

    name: str
    probability: float
    frames: float

    def as_dict(self) -> dict[str, float | str]:
        return {
            "name": self.name,
            "probability": round(self.probability, 3),
            "frames": round(self.frames, 3),
        }


def _matrix(
    probabilities: Sequence[Sequence[float]] | np.ndarray, names: Sequence[str]
) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(names):
        raise ValueError(
            f"defect probabilities of shape {p.shape}: expected (frames, {len(names)})"
        )
    return p


def scan_defects(
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    names: Sequence[str] = DEFECTS,
) -> tuple[DefectCall, ...]:
    """The defects a scan lists, most probable first, from per-frame probabilities
    ``(frames, len(names))`` (see the module docstring). Empty for a clean scan or when
    there are no frames."""
    p = _matrix(probabilities, names)
    if p.shape[0] == 0:
        return ()
    mean = p.mean(axis=0)
    share = (p >= threshold).mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    return tuple(
        DefectCall(names[i], float(mean[i]), float(share[i])) for i in order if mean[i] >= threshold
    )


def frame_first_defects(
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    names: Sequence[str] = DEFECTS,
) -> list[str | None]:
    """Per frame, the most probable defect at or above ``threshold`` (None: none)."""
    p = _matrix(probabilities, names)
    out: list[str | None] = []
    for row in p:
        i = int(np.argmax(row)) if row.size else -1
        out.append(names[i] if i >= 0 and row[i] >= threshold else None)
    return out
