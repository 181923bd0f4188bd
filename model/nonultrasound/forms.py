"""Synthetic screenshot-like UI forms drawn with PIL."""

from __future__ import annotations

import numpy as np

from model.nonultrasound.pages import _checkbox, _new_page, _Page
from model.nonultrasound.table import MAX_SIDE
from model.nonultrasound.text import _TITLES, _char_width, _value, _words


def _ui_form(
    rng: np.random.Generator, fonts: tuple[str, str, str], dark_p: float = 0.35
) -> np.ndarray:
    """A screenshot-like window: title bar and menu, maybe a sidebar, a heading, maybe tabs,
    rows of fields, buttons and a status bar."""
    w = int(rng.integers(560, MAX_SIDE + 1))
    h = int(np.clip(w * rng.uniform(0.55, 0.85), 300, MAX_SIDE))
    p = _new_page(rng, fonts, w, h, dark_p=dark_p)
    size = int(rng.integers(11, 17))
    y = _window_bars(p, rng, w, size)
    left = _sidebar(p, rng, y, w, h, size) if rng.random() < 0.6 else 0.0
    x0, x1 = left + size * 2, w - size * 2
    yy = y + size * 1.5
    p.text(x0, yy, _TITLES[int(rng.integers(len(_TITLES)))], int(size * 1.5), 1)
    yy += size * 3
    if rng.random() < 0.4:
        yy = _tabs(p, rng, x0, yy, size)
    field_w = (x1 - x0) * rng.uniform(0.45, 0.7)
    label_w = (x1 - x0) * 0.25
    while yy < h - size * 7:
        yy = _form_row(p, rng, (x0, x0 + label_w, x1), yy, field_w, size) + size * 2.6
    _buttons(p, rng, x1, h, size)
    p.draw.rectangle((0, h - size * 1.6, w, h), fill=p.mix(0.08))
    p.text(size, h - size * 1.5, _words(rng, 4), int(size * 0.85))
    return np.asarray(p.im)


def _window_bars(p: _Page, rng: np.random.Generator, w: int, size: int) -> float:
    """The title bar (title, three window buttons) and the menu bar; returns the y below."""
    d = p.draw
    bar = int(size * rng.uniform(1.8, 2.4))
    d.rectangle((0, 0, w, bar), fill=p.accent if rng.random() < 0.5 else p.mix(0.15))
    p.text(size, bar * 0.22, _words(rng, 3).title(), size, 1)
    for k in range(3):
        cx = w - (k + 1) * bar
        d.ellipse((cx + bar * 0.3, bar * 0.3, cx + bar * 0.7, bar * 0.7), fill=p.mix(0.5))
    y: float = bar
    d.rectangle((0, y, w, y + bar * 0.9), fill=p.mix(0.06))
    x: float = size
    for _ in range(int(rng.integers(3, 7))):
        word = _words(rng, 1).title()
        p.text(x, y + bar * 0.15, word, size)
        x += _char_width(p.fonts[0], size) * (len(word) + 3)
    return y + bar * 0.9


def _sidebar(p: _Page, rng: np.random.Generator, y: float, w: int, h: int, size: int) -> float:
    """A sidebar with one highlighted row; returns its width."""
    left = w * rng.uniform(0.16, 0.26)
    p.draw.rectangle((0, y, left, h), fill=p.mix(0.1))
    sel = int(rng.integers(8))
    for k in range(int(rng.integers(5, 14))):
        yy = y + size + k * size * 2
        if k == sel:
            p.draw.rectangle((0, yy - size * 0.4, left, yy + size * 1.4), fill=p.accent)
        p.text(size, yy, _words(rng, int(rng.integers(1, 3))).title(), size)
    return left


def _tabs(p: _Page, rng: np.random.Generator, x0: float, yy: float, size: int) -> float:
    """A row of tabs, the first selected; returns the y below."""
    tx = x0
    for k in range(int(rng.integers(2, 5))):
        label = _words(rng, 1).title()
        tw = _char_width(p.fonts[0], size) * len(label) + size * 2
        fill = p.accent if k == 0 else p.mix(0.1)
        p.draw.rounded_rectangle((tx, yy, tx + tw, yy + size * 2), radius=4, fill=fill)
        p.text(tx + size, yy + size * 0.4, label, size)
        tx += tw + 4
    return yy + size * 3


def _form_row(
    p: _Page,
    rng: np.random.Generator,
    xs: tuple[float, float, float],
    yy: float,
    field_w: float,
    size: int,
) -> float:
    """One form row: its label at ``xs[0]`` and its field from ``xs[1]`` to ``xs[2]`` (a text
    input or dropdown, checkboxes or radio buttons, or a striped list); returns the y of the
    row's last line."""
    x0, fx, x1 = xs
    d = p.draw
    kind = rng.random()
    p.text(x0, yy + size * 0.3, _words(rng, int(rng.integers(1, 3))).title(), size)
    if kind < 0.55:  # text input or dropdown
        d.rounded_rectangle(
            (fx, yy, fx + field_w, yy + size * 1.9),
            radius=3,
            outline=p.mix(0.45),
            fill=p.mix(0.03),
        )
        if rng.random() < 0.7:
            val = _value(rng)[: p.chars(field_w - size * 3, size)]
            p.text(fx + 6, yy + size * 0.3, val, size, fill=p.mix(0.8))
        if rng.random() < 0.3:
            tx = fx + field_w - size * 1.6
            d.polygon(
                [
                    (tx, yy + size * 0.7),
                    (tx + size, yy + size * 0.7),
                    (tx + size / 2, yy + size * 1.3),
                ],
                fill=p.fg,
            )
    elif kind < 0.8:  # checkboxes or radio buttons
        x = fx
        for _ in range(int(rng.integers(2, 5))):
            label = _words(rng, 1)
            if rng.random() < 0.5:
                _checkbox(p, rng, x, yy + size * 0.3, size)
            else:
                d.ellipse((x, yy + size * 0.3, x + size, yy + size * 1.3), outline=p.fg)
            p.text(x + size * 1.5, yy + size * 0.2, label, size)
            x += size * 3 + _char_width(p.fonts[0], size) * len(label)
    else:  # striped list
        rows = int(rng.integers(2, 6))
        for r in range(rows):
            ry = yy + r * size * 1.8
            if r % 2:
                d.rectangle((fx, ry, x1, ry + size * 1.8), fill=p.mix(0.07))
            p.text(fx + 4, ry + size * 0.3, _words(rng, 4)[: p.chars(x1 - fx, size)], size)
        yy += (rows - 1) * size * 1.8
    return yy


def _buttons(p: _Page, rng: np.random.Generator, x1: float, h: int, size: int) -> None:
    """One to three buttons at the bottom right, the first in the accent colour."""
    bx: float = x1
    for k in range(int(rng.integers(1, 4))):
        label = _words(rng, 1).title()
        bw = _char_width(p.fonts[0], size) * len(label) + size * 3
        bx -= bw + size
        button = p.accent if k == 0 else None
        p.draw.rounded_rectangle(
            (bx, h - size * 4.5, bx + bw, h - size * 2.3),
            radius=int(size * 0.4),
            fill=button,
            outline=p.mix(0.5),
        )
        p.text(bx + size * 1.5, h - size * 4.1, label, size)
