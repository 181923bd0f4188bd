"""Label protocols: how training and evaluation versions of a clean image are drawn.

``paper`` (reproduction of the published method): three classes with fixed labels,
    original = 100, JPEG = 60, Gaussian blur = 30; JPEG quality uniform in [10, 40], blur
    sigma uniform in [1.5, 3.0] px.

``graded`` (the previous shipped model): original, one JPEG (quality uniform in [5, 100])
    and one Gaussian blur (sigma uniform in [0, 4] px) per image, labels from the graded
    JPEG and blur curves of :mod:`model.degradations`.

``defects`` (the shipped model): every defect of :mod:`model.defects`, on linear, curved and
    sector fields of view (:mod:`model.geometry`), with screen text and grey bars drawn
    around the image, and in a tenth of the versions a colour-flow (Doppler) box as its grey
    conversion shows it. Per source image and epoch: two clean versions (a linear, curved or
    sector view, a third each, so that a fan's black surround is learned as normal) and three
    degraded ones (half of them on the image's own linear view);
    a degraded version carries one defect (80 %) or two (20 %, never both gains, never
    ``no_signal`` with another), severities uniform over each defect's range (``no_signal``
    at full severity in a third of its draws: blank frames). Half of the versions are also
    cut to the box the worker's border heuristic finds and resized back, as the worker does
    with PNG/JPEG files and screens without ultrasound regions, so that what training shows
    is what scoring sees (a ``no_signal`` screen, for one, is cut to its ring-down band).

    Targets per version: the score label (the combination rule of model.degradations) and,
    per defect, ``min(1, damage / 0.25)``: 0 while the defect is invisible, 1 once it alone
    would take the image out of "good" (label 80).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.defects import DEFECTS
from model.degradations import (
    CURVES,
    apply_defects,
    blur,
    combined_label,
    defect_label,
    graded_blur_label,
    graded_jpeg_label,
    jpeg,
)
from model.geometry import Geometry, linear, random_geometry
from model.screen import colour_flow, decorate, dual_view, inference_crop

__all__ = [
    "KINDS",
    "LADDER_GAP",
    "PROTOCOLS",
    "RANGES",
    "TARGET_DAMAGE",
    "DefectProtocol",
    "Degraded",
    "Protocol",
    "colour_flow",
    "decorate",
    "defect_targets",
    "get_protocol",
    "inference_crop",
]

KINDS = ("original", "jpeg", "blur")

# Severity range of each defect in training and evaluation (mildest first).
RANGES: dict[str, tuple[float, float]] = {
    "low_gain": (0.0, 30.0),
    "high_gain": (0.0, 30.0),
    "low_contrast": (0.0, 60.0),
    "noise": (0.0, 30.0),
    "depth_attenuation": (0.0, 22.0),
    "shadowing": (0.0, 0.8),
    "no_signal": (0.0, 1.0),
    "blur": (0.0, 4.0),
    "compression": (100.0, 5.0),  # JPEG quality: milder is higher
    "dead_elements": (0.0, 10.0),
}
TARGET_DAMAGE = 0.25  # the damage at which a defect's target reaches 1 (label 80)
LADDER_GAP = 4.0  # the smallest label difference between the rungs of a training ladder
_EXCLUSIVE = ({"low_gain", "high_gain"},)


@dataclass(frozen=True)
class Degraded:
    """One pseudo-labelled version of a source image."""

    image: np.ndarray
    kind: str  # original | jpeg | blur (paper, graded) | a defect name | "mixed" (defects)
    severity: float  # of ``kind`` (0 for the original; mixed: of the first defect)
    label: float
    defects: tuple[tuple[str, float], ...] = ()
    targets: tuple[float, ...] | None = None  # per DEFECTS name; None: not trained on defects
    geometry: str = "linear"
    cropped: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def defect_targets(defects: Sequence[tuple[str, float]]) -> tuple[float, ...]:
    """The defect head's target per name: ``min(1, damage / TARGET_DAMAGE)``."""
    out = [0.0] * len(DEFECTS)
    for name, severity in defects:
        damage = (100.0 - defect_label(name, severity)) / 80.0
        out[DEFECTS.index(name)] = min(1.0, damage / TARGET_DAMAGE)
    return tuple(out)


# --- paper and graded -----------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """The JPEG/blur protocols: severity ranges and the label of each (kind, severity)."""

    name: str
    jpeg_quality: tuple[float, float]
    blur_sigma: tuple[float, float]

    def label(self, kind: str, severity: float) -> float:
        """The pseudo-label of a version of kind ``kind`` at ``severity``."""
        if kind == "original":
            return 100.0
        if self.name == "paper":
            return 60.0 if kind == "jpeg" else 30.0
        if kind == "jpeg":
            return graded_jpeg_label(severity)
        return graded_blur_label(severity)

    def apply(self, image: np.ndarray, kind: str, severity: float) -> Degraded:
        """Degrade ``image`` as ``kind`` at ``severity`` and label it."""
        if kind == "original":
            out = image
        elif kind == "jpeg":
            out = jpeg(image, severity)
        elif kind == "blur":
            out = blur(image, severity)
        else:
            raise ValueError(f"unknown degradation {kind!r}; expected one of {KINDS}")
        return Degraded(out, kind, float(severity), self.label(kind, severity))

    def draw(self, kind: str, rng: np.random.Generator, stratum: tuple[int, int] = (0, 1)) -> float:
        """A severity for ``kind``: uniform over its range, or over stratum ``i`` of ``n``."""
        if kind == "original":
            return 0.0
        lo, hi = self.jpeg_quality if kind == "jpeg" else self.blur_sigma
        i, n = stratum
        width = (hi - lo) / n
        return float(rng.uniform(lo + i * width, lo + (i + 1) * width))

    def sample(self, image: np.ndarray, kind: str, rng: np.random.Generator) -> Degraded:
        """A random version of ``kind`` with its severity drawn from the protocol's range."""
        return self.apply(image, kind, self.draw(kind, rng))

    def version(self, image: np.ndarray, slot: int, rng: np.random.Generator) -> Degraded:
        """Training version ``slot`` of an image: the original, a JPEG or a blur."""
        return self.sample(image, KINDS[slot % len(KINDS)], rng)

    @property
    def versions_per_image(self) -> int:
        return len(KINDS)

    def eval_versions(
        self, image: np.ndarray, index: int, levels: int, seed: int
    ) -> list[Degraded]:
        """The fixed evaluation versions of one image: the original plus, per kind,
        ``levels`` severities from equal strata of the range (``paper``: one)."""
        per_kind = 1 if self.name == "paper" else levels
        rng = np.random.default_rng([seed, index])
        out = [self.apply(image, "original", 0.0)]
        for kind in ("jpeg", "blur"):
            for level in range(per_kind):
                out.append(self.apply(image, kind, self.draw(kind, rng, (level, per_kind))))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (kept in checkpoints)."""
        return {
            "name": self.name,
            "jpeg_quality": list(self.jpeg_quality),
            "blur_sigma": list(self.blur_sigma),
            "labels": (
                "original 100, jpeg 60, blur 30"
                if self.name == "paper"
                else "original 100; jpeg q>=90: 100, else 20+80*((q-5)/85)^0.6; "
                "blur s<=0.4: 100, else 100-80*((s-0.4)/3.6)^0.75"
            ),
        }


# --- defects ---------------------------------------------------------------------------


def _draw_severity(name: str, rng: np.random.Generator) -> float:
    lo, hi = RANGES[name]
    if name == "no_signal" and rng.random() < 1.0 / 3.0:
        return 1.0
    return float(rng.uniform(min(lo, hi), max(lo, hi)))


@dataclass(frozen=True)
class DefectProtocol:
    """The ``defects`` protocol (see the module docstring)."""

    name: str = "defects"
    pair_share: float = 0.2
    crop_share: float = 0.5
    flow_share: float = 0.1
    dual_share: float = 0.0  # versions shown as a dual screen (set by --dual-share)
    geometry_weights: tuple[float, float, float] = (0.5, 0.25, 0.25)
    clean_geometry_weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    clean_per_image: int = 2
    degraded_per_image: int = 3

    @property
    def versions_per_image(self) -> int:
        return self.clean_per_image + self.degraded_per_image

    def make(
        self,
        image: np.ndarray,
        defects: Sequence[tuple[str, float]],
        geometry: Geometry,
        layout_seed: Sequence[int],
        dynamic_range: float = 60.0,
        decorate_seed: Sequence[int] | None = None,
        crop: bool = False,
        blur_kind: str | None = None,
        flow_seed: Sequence[int] | None = None,
        dual_seed: Sequence[int] | None = None,
    ) -> Degraded:
        """One version of a clean ``image``: masked to ``geometry``, ``defects`` applied,
        decorated when ``decorate_seed`` is given (before compression, as on a screen
        export), optionally cut as the worker would cut it."""
        base = image.copy()
        base[~geometry.mask] = 0
        display = [d for d in defects if d[0] == "compression"]
        acquired = [d for d in defects if d[0] != "compression"]
        out = (
            apply_defects(base, acquired, layout_seed, geometry, dynamic_range, blur_kind=blur_kind)
            if acquired
            else base
        )
        if flow_seed is not None:
            out = colour_flow(out, geometry, np.random.default_rng(list(flow_seed)))
        if dual_seed is not None:
            out = dual_view(out, np.random.default_rng(list(dual_seed)))
        if decorate_seed is not None:
            out = decorate(out, geometry, np.random.default_rng(list(decorate_seed)))
        if display:
            out = apply_defects(out, display, layout_seed, geometry)
        cropped = False
        if crop:
            out, cropped = inference_crop(out, image.shape[0])
        labels = [defect_label(n, s) for n, s in defects]
        kind = "original" if not defects else defects[0][0] if len(defects) == 1 else "mixed"
        return Degraded(
            image=out,
            kind=kind,
            severity=float(defects[0][1]) if defects else 0.0,
            label=combined_label(labels),
            defects=tuple((n, float(s)) for n, s in defects),
            targets=defect_targets(defects),
            geometry=geometry.kind,
            cropped=cropped,
        )

    def draw_defects(self, rng: np.random.Generator) -> list[tuple[str, float]]:
        """One defect, or two compatible ones, with random severities."""
        first = str(rng.choice(DEFECTS))
        chosen = [first]
        if first != "no_signal" and rng.random() < self.pair_share:
            others = [
                d
                for d in DEFECTS
                if d not in (first, "no_signal")
                and not any({first, d} <= pair for pair in _EXCLUSIVE)
            ]
            chosen.append(str(rng.choice(others)))
        return [(name, _draw_severity(name, rng)) for name in chosen]

    def plan(self, shape: tuple[int, int], slot: int, rng: np.random.Generator) -> dict[str, Any]:
        """What training version ``slot`` of an image of ``shape`` will be (the arguments of
        :meth:`make` but the image): clean for the first ``clean_per_image`` slots, else one
        or two random defects; random geometry, decoration, crop, flow and dual screen."""
        h, w = shape
        clean = slot % self.versions_per_image < self.clean_per_image
        weights = self.clean_geometry_weights if clean else self.geometry_weights
        geometry = random_geometry(rng, h, w, weights)
        defects = [] if clean else self.draw_defects(rng)
        seed = [int(x) for x in rng.integers(0, 2**31, 2)]
        extra: dict[str, Any] = {}
        if self.dual_share > 0 and rng.random() < self.dual_share:  # no draw when off
            extra["dual_seed"] = [*seed, 5]
        return {
            "defects": defects,
            "geometry": geometry,
            "layout_seed": seed,
            "dynamic_range": float(rng.uniform(50.0, 65.0)),
            "decorate_seed": seed if rng.random() < 0.6 else None,
            "crop": bool(rng.random() < self.crop_share),
            "flow_seed": [*seed, 3] if rng.random() < self.flow_share else None,
            **extra,
        }

    def version(self, image: np.ndarray, slot: int, rng: np.random.Generator) -> Degraded:
        """Training version ``slot`` of an image (see :meth:`plan`)."""
        return self.make(image, **self.plan(image.shape, slot, rng))

    def ladder(
        self,
        image: np.ndarray,
        slot: int,
        rng: np.random.Generator,
        rungs: int = 2,
        clean: bool = False,
    ) -> list[Degraded]:
        """Version ``slot`` of an image and ``rungs - 1`` siblings: the same view, layout,
        dynamic range, decoration, crop and overlays, the first defect at other severities
        (each label at least ``LADDER_GAP`` from the others'); with ``clean``, last, the
        same view with no defect at all (label 100). A clean slot has no siblings.

        Training compares the scores of such siblings (``--rank-weight``): the one image
        with more of a defect must score lower, which is what a severity ladder measures.
        """
        plan = self.plan(image.shape, slot, rng)
        out = [self.make(image, **plan)]
        if not plan["defects"]:
            return out
        (name, _), *rest = plan["defects"]
        for _ in range(rungs - 1):
            taken = [defect_label(name, v.defects[0][1]) for v in out]
            severity = _draw_severity(name, rng)
            for _attempt in range(8):
                if min(abs(defect_label(name, severity) - t) for t in taken) >= LADDER_GAP:
                    break
                severity = _draw_severity(name, rng)
            else:
                continue
            out.append(self.make(image, **{**plan, "defects": [(name, severity), *rest]}))
        if clean:
            out.append(self.make(image, **{**plan, "defects": []}))
        return out

    def eval_versions(
        self, image: np.ndarray, index: int, levels: int, seed: int
    ) -> list[Degraded]:
        """The fixed evaluation versions of one image: the original (the image as it is),
        clean curved and sector views, and per defect ``levels`` severities from equal
        strata of its range, each on a linear, curved or sector view (drawn), no crop."""
        rng = np.random.default_rng([seed, index])
        h, w = image.shape
        whole = linear(h, w)
        out = [self.make(image, [], whole, [seed, index])]
        for kind in ("curved", "sector"):
            geometry = random_geometry(rng, h, w, kind=kind)
            clean = self.make(image, [], geometry, [seed, index], decorate_seed=[seed, index, 1])
            out.append(Degraded(**{**clean.__dict__, "kind": f"clean_{kind}"}))
        for d, name in enumerate(DEFECTS):
            lo, hi = RANGES[name]
            for level in range(levels):
                a = lo + (hi - lo) * level / levels
                b = lo + (hi - lo) * (level + 1) / levels
                severity = float(rng.uniform(min(a, b), max(a, b)))
                geometry = random_geometry(rng, h, w, self.geometry_weights)
                out.append(
                    self.make(
                        image,
                        [(name, severity)],
                        geometry,
                        layout_seed=[seed, index, d, level],
                        dynamic_range=float(rng.uniform(50.0, 65.0)),
                    )
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (kept in checkpoints)."""
        return {
            "name": self.name,
            "defects": list(DEFECTS),
            "ranges": {k: list(v) for k, v in RANGES.items()},
            "curves": {
                k: {"invisible": c.invisible, "useless": c.useless, "gamma": c.gamma}
                for k, c in CURVES.items()
            },
            "compression": "JPEG quality q: 100 if q >= 90, else 20+80*((q-5)/85)^0.6",
            "combination": "100 - 80 * (1 - prod(1 - damage))",
            "target": f"min(1, damage / {TARGET_DAMAGE})",
            "pair_share": self.pair_share,
            "crop_share": self.crop_share,
            "flow_share": self.flow_share,
            "dual_share": self.dual_share,
            "geometry_weights": list(self.geometry_weights),
            "clean_geometry_weights": list(self.clean_geometry_weights),
            "versions_per_image": [self.clean_per_image, self.degraded_per_image],
        }


AnyProtocol = Protocol | DefectProtocol

PROTOCOLS: dict[str, AnyProtocol] = {
    "paper": Protocol("paper", jpeg_quality=(10.0, 40.0), blur_sigma=(1.5, 3.0)),
    "graded": Protocol("graded", jpeg_quality=(5.0, 100.0), blur_sigma=(0.0, 4.0)),
    "defects": DefectProtocol(),
}


def get_protocol(name: str) -> AnyProtocol:
    """The protocol called ``name`` (``paper``, ``graded`` or ``defects``)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}"
        ) from None
