"""Synthetic charts and dashboards drawn with matplotlib (Agg)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from model.nonultrasound.table import MAX_SIDE
from model.nonultrasound.text import _value, _words

_CHART_STYLES = {
    "std": (
        "default",
        "classic",
        "ggplot",
        "bmh",
        "grayscale",
        "dark_background",
        "seaborn-v0_8-whitegrid",
        "seaborn-v0_8-darkgrid",
    ),
    "alt_style": ("Solarize_Light2", "fivethirtyeight"),
}


_CHART_KINDS = ("line", "bar", "scatter", "pie", "hist", "heatmap", "table")


_STAT_KINDS = ("box", "violin", "errorbar", "area")


_TITLE_Y = 1.02  # a fixed title height skips matplotlib's costly automatic placement


_CMAPS = (
    "viridis",
    "magma",
    "plasma",
    "cividis",
    "inferno",
    "coolwarm",
    "RdYlGn",
    "Blues",
    "Greys",
    "gray",
    "YlOrRd",
    "Spectral",
    "turbo",
    "bone",
)


def _colours(rng: np.random.Generator, k: int) -> list[Any] | None:
    """Series colours: the style's cycle (None), random RGB, or samples of a colour map."""
    r = rng.random()
    if r < 0.35:
        return None
    if r < 0.65:
        return [tuple(float(v) for v in c) for c in rng.uniform(0, 1, size=(k, 3))]
    import matplotlib

    cmap = matplotlib.colormaps[_CMAPS[int(rng.integers(len(_CMAPS)))]]
    return [cmap(float(t)) for t in np.linspace(0.1, 0.9, k)]


def _labels(ax: Any, rng: np.random.Generator) -> None:
    if rng.random() < 0.8:
        ax.set_title(_words(rng, int(rng.integers(1, 5))).title(), y=_TITLE_Y)
    if rng.random() < 0.6:
        ax.set_xlabel(_words(rng, int(rng.integers(1, 3))))
    if rng.random() < 0.6:
        ax.set_ylabel(_words(rng, int(rng.integers(1, 3))))


def _panel(
    ax: Any, kind: str, rng: np.random.Generator, nbins: int = 6, sparse: bool = False
) -> None:
    """Draw one chart of ``kind`` with random data on ``ax`` (about ``nbins`` ticks;
    ``sparse``: no y ticks, as dashboards often draw them, and much cheaper)."""
    k = int(rng.integers(1, 5))
    cols = _colours(rng, max(k, 8))
    _draw_panel(ax, kind, rng, k, cols)
    if kind not in ("pie", "table"):
        ax.locator_params(nbins=nbins)
        if sparse:
            from matplotlib.ticker import NullLocator

            ax.yaxis.set_major_locator(NullLocator())
            ax.spines[["left", "right", "top"]].set_visible(False)


#: One drawing function per chart kind: ``(ax, rng, k, cols)``, ``k`` series in colours ``cols``.
_PanelDrawer = Callable[[Any, np.random.Generator, int, Any], None]


def _draw_panel(ax: Any, kind: str, rng: np.random.Generator, k: int, cols: Any) -> None:
    """One chart of ``kind``: ``k`` series of random data, in colours ``cols`` (or the style's)."""
    draw = _PANELS.get(kind)
    if draw is None:
        raise ValueError(f"unknown chart kind {kind!r}")
    draw(ax, rng, k, cols)


def _line(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """Random-walk lines, maybe with markers and a legend."""
    n = int(rng.integers(8, 150))
    x = np.arange(n)
    for j in range(k):
        y = np.cumsum(rng.normal(rng.uniform(-0.2, 0.3), 1.0, n)) + rng.uniform(0, 20)
        ax.plot(
            x,
            y,
            color=None if cols is None else cols[j],
            lw=rng.uniform(0.8, 2.5),
            marker="o" if n < 30 and rng.random() < 0.5 else None,
            label=_words(rng, 1),
        )
    if rng.random() < 0.5:
        ax.legend(fontsize="small")
    ax.grid(rng.random() < 0.5)
    _labels(ax, rng)


def _bar(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """Grouped or stacked bars, vertical or horizontal, with category names."""
    m = int(rng.integers(3, 11))
    k = min(k, 3)
    names = [_words(rng, 1)[:8] for _ in range(m)]
    x = np.arange(m)
    bottom = np.zeros(m)
    stacked = rng.random() < 0.4
    horiz = rng.random() < 0.3
    width = 0.8 / (1 if stacked else k)
    for j in range(k):
        v = rng.uniform(1, 10, m)
        pos = x if stacked else x + (j - (k - 1) / 2) * width
        colour = None if cols is None else cols[j]
        if horiz:
            ax.barh(pos, v, height=width, left=bottom, color=colour)
        else:
            ax.bar(pos, v, width=width, bottom=bottom, color=colour)
        if stacked:
            bottom = bottom + v
    (ax.set_yticks if horiz else ax.set_xticks)(x, names, fontsize="small")
    _labels(ax, rng)


def _scatter(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """Point clouds, some coloured by value through a colour map."""
    for j in range(k):
        n = int(rng.integers(20, 300))
        c = rng.normal(0, 3, 2)
        pts = rng.normal(c, rng.uniform(0.5, 2.0), (n, 2))
        if rng.random() < 0.3:
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                c=pts[:, 1],
                s=rng.uniform(4, 40),
                cmap=_CMAPS[int(rng.integers(len(_CMAPS)))],
            )
        else:
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=rng.uniform(4, 40),
                alpha=rng.uniform(0.4, 1),
                color=None if cols is None else cols[j],
            )
    _labels(ax, rng)


def _pie(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """A pie or doughnut chart, maybe with percentages."""
    m = int(rng.integers(3, 9))
    ax.pie(
        rng.uniform(1, 10, m),
        labels=[_words(rng, 1)[:10] for _ in range(m)],
        colors=None if cols is None else cols[:m],
        autopct="%1.0f%%" if rng.random() < 0.5 else None,
        wedgeprops={"width": rng.uniform(0.3, 0.6)} if rng.random() < 0.4 else None,
        textprops={"fontsize": "small"},
    )
    if rng.random() < 0.6:
        ax.set_title(_words(rng, 3).title(), y=_TITLE_Y)


def _hist(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """Histograms of normal samples (bars, filled or stepped outlines)."""
    histtype = ("bar", "stepfilled", "step")[int(rng.integers(3))]
    for j in range(1 if histtype == "bar" else min(k, 3)):
        v = rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 2), int(rng.integers(100, 3000)))
        ax.hist(
            v,
            bins=int(rng.integers(8, 25 if histtype == "bar" else 60)),
            alpha=rng.uniform(0.5, 1.0),
            histtype=histtype,
            color=None if cols is None else cols[j],
        )
    _labels(ax, rng)


def _heatmap(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """A smoothed random field as an image, maybe with values and a colour bar."""
    hh, ww = int(rng.integers(4, 30)), int(rng.integers(4, 30))
    data = rng.normal(0, 1, (hh, ww)).cumsum(axis=int(rng.integers(2)))
    im = ax.imshow(data, cmap=_CMAPS[int(rng.integers(len(_CMAPS)))], aspect="auto")
    if hh * ww <= 64 and rng.random() < 0.6:
        for (i, j), v in np.ndenumerate(data):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7)
    if rng.random() < 0.6:
        ax.figure.colorbar(im, ax=ax)
    _labels(ax, rng)


def _table(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """A table of made-up values with a header row."""
    rows, ncol = int(rng.integers(3, 9)), int(rng.integers(2, 6))
    cells = [[_value(rng)[:12] for _ in range(ncol)] for _ in range(rows)]
    ax.axis("off")
    header_colour = cols[0] if cols is not None else None
    table = ax.table(
        cellText=cells,
        colLabels=[_words(rng, 1).title() for _ in range(ncol)],
        loc="center",
        colColours=[header_colour] * ncol if header_colour else None,
    )
    table.auto_set_font_size(False)
    table.set_fontsize(float(rng.uniform(6, 10)))
    table.scale(1, float(rng.uniform(1.0, 1.6)))
    if rng.random() < 0.7:
        ax.set_title(_words(rng, 3).title(), y=_TITLE_Y)


def _box(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """Box plots of normal groups, maybe filled or horizontal."""
    groups = _groups(rng, k)
    patch, horizontal = rng.random() < 0.5, rng.random() < 0.3
    # ``orientation`` since matplotlib 3.10 (``vert`` is deprecated from 3.11)
    new_api = "orientation" in inspect.signature(ax.boxplot).parameters
    turn = {"orientation": "horizontal"} if new_api else {"vert": False}
    ax.boxplot(groups, patch_artist=patch, **(turn if horizontal else {}))
    _labels(ax, rng)


def _violin(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """Violin plots of normal groups, maybe with their means."""
    groups = _groups(rng, k)
    ax.violinplot(groups, showmeans=rng.random() < 0.5)
    _labels(ax, rng)


def _groups(rng: np.random.Generator, k: int) -> list[np.ndarray]:
    return [rng.normal(rng.uniform(-2, 2), rng.uniform(0.3, 2), 80) for _ in range(k + 2)]


def _errorbar(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """Series of points with error bars."""
    x = np.arange(int(rng.integers(4, 15)))
    for j in range(k):
        ax.errorbar(
            x + j * 0.1,
            rng.uniform(2, 10, len(x)),
            yerr=rng.uniform(0.2, 2, len(x)),
            fmt="o-" if rng.random() < 0.5 else "s",
            capsize=3,
            color=None if cols is None else cols[j],
        )
    _labels(ax, rng)


def _area(ax: Any, rng: np.random.Generator, k: int, cols: Any) -> None:
    """A stacked area chart."""
    x = np.arange(int(rng.integers(10, 80)))
    ys = np.abs(rng.normal(1, 0.5, (k + 1, len(x)))).cumsum(axis=1)
    ax.stackplot(x, ys, colors=None if cols is None else cols[: k + 1], alpha=0.85)
    _labels(ax, rng)


_PANELS: dict[str, _PanelDrawer] = {
    "line": _line,
    "bar": _bar,
    "scatter": _scatter,
    "pie": _pie,
    "hist": _hist,
    "heatmap": _heatmap,
    "table": _table,
    "box": _box,
    "violin": _violin,
    "errorbar": _errorbar,
    "area": _area,
}


def _rectangle(
    xy: tuple[float, float], w: float, h: float, colour: Any, transform: Any, alpha: float
) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, facecolor=colour, transform=transform, alpha=alpha, zorder=-1)


def _kpi_band(ax: Any, rng: np.random.Generator, n: int) -> None:
    """A dashboard's row of ``n`` KPI tiles (big number, label, maybe a sparkline), drawn in
    one axes: a tile per axes would cost a matplotlib axes each."""
    ax.axis("off")
    cols = _colours(rng, n)
    for i in range(n):
        x0, w = i / n + 0.01, 1 / n - 0.02
        if rng.random() < 0.6:
            colour = cols[i] if cols is not None else (0.5, 0.5, 0.5)
            alpha = float(rng.uniform(0.15, 1))
            ax.add_patch(_rectangle((x0, 0.02), w, 0.96, colour, ax.transAxes, alpha))
        value = f"{rng.uniform(0, 10 ** int(rng.integers(1, 5))):,.{int(rng.integers(0, 2))}f}"
        unit = ("", "%", " k", " ms")[int(rng.integers(4))]
        size = float(rng.uniform(14, 24))
        ax.text(x0 + 0.03 * w, 0.5, value + unit, fontsize=size, transform=ax.transAxes,
                weight="bold")  # fmt: skip
        label = _words(rng, 2).title()
        ax.text(x0 + 0.03 * w, 0.15, label, fontsize=size / 2.2, transform=ax.transAxes)
        if rng.random() < 0.5:
            y = np.cumsum(rng.normal(0, 1, 30))
            y = (y - y.min()) / (np.ptp(y) + 1e-9)
            xs = np.linspace(x0 + 0.6 * w, x0 + 0.95 * w, 30)
            ax.plot(xs, 0.15 + 0.3 * y, transform=ax.transAxes, lw=1.2)


def _chart_image(rng: np.random.Generator, style: str, generator: str) -> np.ndarray:
    """A chart (one panel) or a dashboard (2 to 4 charts, maybe under a band of KPI tiles),
    drawn with matplotlib Agg."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kinds: tuple[str, ...] = _STAT_KINDS if generator == "stat_chart" else _CHART_KINDS
    nbins = int(rng.integers(4, 8))
    header = 0
    if generator == "dashboard":
        nr, nc = [(1, 2), (1, 2), (1, 3), (2, 2), (2, 1), (2, 1)][int(rng.integers(6))]
        header = int(rng.random() < 0.6)
        kinds = tuple(kd for kd in _CHART_KINDS if kd != "table")
        nbins = int(rng.integers(3, 6))
        fw = rng.uniform(2.6, 3.6) * nc
        fh = rng.uniform(2.0, 2.8) * nr + header * rng.uniform(0.8, 1.2)
        dpi = float(rng.uniform(60, 85))
    else:
        nr = nc = 1
        fw, fh = rng.uniform(3.5, 8.0), rng.uniform(2.6, 6.0)
        dpi = float(rng.uniform(60, 110))
    scale = min(1.0, MAX_SIDE / (max(fw, fh) * dpi))
    with matplotlib.style.context(style):
        fig = Figure(figsize=(fw, fh), dpi=dpi * scale)
        canvas = FigureCanvasAgg(fig)
        grid = fig.add_gridspec(nr + header, nc, height_ratios=[0.45] * header + [1.0] * nr)
        if header:
            _kpi_band(fig.add_subplot(grid[0, :]), rng, nc + int(rng.integers(0, 3)))
        for r in range(nr):
            for c in range(nc):
                kind = kinds[int(rng.integers(len(kinds)))]
                # dashboards of 3 or 4 charts: no y ticks (ticks are matplotlib's main cost)
                sparse = generator == "dashboard" and (nr * nc > 2 or rng.random() < 0.5)
                _panel(fig.add_subplot(grid[header + r, c]), kind, rng, nbins, sparse)
        if generator == "dashboard" and rng.random() < 0.7:
            fig.suptitle(_words(rng, int(rng.integers(2, 5))).title(), fontsize="large")
        fig.subplots_adjust(
            left=float(rng.uniform(0.08, 0.15)),
            right=float(rng.uniform(0.9, 0.97)),
            bottom=float(rng.uniform(0.1, 0.18)),
            top=float(rng.uniform(0.82, 0.9)),
            wspace=0.35,
            hspace=0.45,
        )
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
