"""Synthetic documents drawn with PIL: report pages, worksheets, text pages, the scanned look."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from model.nonultrasound.augment import _grey
from model.nonultrasound.table import MAX_SIDE
from model.nonultrasound.text import (
    _TITLES,
    _WORD_SET,
    _char_width,
    _font,
    _name,
    _snap,
    _value,
    _word,
    _word_mask,
    _words,
)


@dataclass
class _Page:
    """A PIL canvas with its colours and the three fonts (regular, bold, italic)."""

    im: Image.Image
    draw: ImageDraw.ImageDraw
    fonts: tuple[str, str, str]
    bg: tuple[int, int, int]
    fg: tuple[int, int, int]
    accent: tuple[int, int, int]
    dark: bool

    @property
    def w(self) -> int:
        return self.im.width

    @property
    def h(self) -> int:
        return self.im.height

    def font(self, size: int, style: int = 0) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return _font(self.fonts[style], _snap(size))

    def text(self, x: float, y: float, s: str, size: int, style: int = 0, fill: Any = None) -> None:
        """Draw ``s`` word by word from cached glyph masks (several times faster than
        rendering each line, as the words repeat)."""
        name, size = self.fonts[style], _snap(size)
        colour = self.fg if fill is None else fill
        space = _word_mask(name, size, " ")[1]
        for word in s.split(" "):
            # vocabulary words whole; numbers, names and codes glyph by glyph, so that the
            # cache stays small and warm
            pieces = [word] if word.strip(",.:").lower() in _WORD_SET else list(word)
            for piece in pieces:
                mask, advance = _word_mask(name, size, piece)
                if mask is not None:
                    self.im.paste(colour, (round(x), round(y)), mask)
                x += advance
            x += space

    def chars(self, width: float, size: int, style: int = 0) -> int:
        return max(4, int(width / _char_width(self.fonts[style], _snap(size)) * 0.95))

    def paragraph(
        self, rng: np.random.Generator, x: float, y: float, width: float, size: int, lines: int
    ) -> float:
        n = self.chars(width, size)
        step = size * rng.uniform(1.2, 1.55)
        for k in range(lines):
            target = n if k < lines - 1 else int(n * rng.uniform(0.3, 0.9))
            words: list[str] = []
            length = 0
            while True:
                wd = _word(rng)
                if length + len(wd) + 1 > target:
                    break
                words.append(wd)
                length += len(wd) + 1
            if y + step > self.h:
                break
            self.text(x, y, " ".join(words), size)
            y += step
        return y

    def mix(self, t: float) -> tuple[int, int, int]:
        """A colour between the background (t=0) and the foreground (t=1)."""
        return tuple(int(b + (f - b) * t) for b, f in zip(self.bg, self.fg, strict=True))  # type: ignore[return-value]


def _new_page(
    rng: np.random.Generator, fonts: tuple[str, str, str], w: int, h: int, dark_p: float = 0.15
) -> _Page:
    dark = bool(rng.random() < dark_p)
    if dark:
        bg = tuple(int(v) for v in rng.integers(10, 60, size=3))
        fg = tuple(int(v) for v in rng.integers(200, 256, size=3))
    else:
        base = int(rng.integers(225, 256))
        tint = rng.integers(-12, 6, size=3) if rng.random() < 0.3 else np.zeros(3, int)
        bg = tuple(int(np.clip(base + t, 0, 255)) for t in tint)
        fg = tuple(int(v) for v in rng.integers(0, 60, size=3))
    accent = tuple(int(v) for v in rng.integers(20, 220, size=3))
    im = Image.new("RGB", (w, h), bg)
    return _Page(im, ImageDraw.Draw(im), fonts, bg, fg, accent, dark)  # type: ignore[arg-type]


def _logo(p: _Page, rng: np.random.Generator, x: float, y: float, s: float) -> None:
    d, c = p.draw, p.accent
    kind = int(rng.integers(5))
    if kind == 0:  # cross in a circle
        d.ellipse((x, y, x + s, y + s), fill=c)
        t = s * 0.18
        d.rectangle((x + s / 2 - t, y + s * 0.2, x + s / 2 + t, y + s * 0.8), fill=p.bg)
        d.rectangle((x + s * 0.2, y + s / 2 - t, x + s * 0.8, y + s / 2 + t), fill=p.bg)
    elif kind == 1:  # initials in a rounded square
        d.rounded_rectangle((x, y, x + s, y + s), radius=s * 0.2, fill=c)
        letters = "".join(chr(65 + int(i)) for i in rng.integers(26, size=int(rng.integers(1, 4))))
        size = int(s / (len(letters) * 0.7 + 0.6))
        p.text(x + s * 0.12, y + s * 0.2, letters, size, 1, fill=p.bg)
    elif kind == 2:  # rings
        for k in range(3):
            m = s * 0.17 * k
            d.ellipse((x + m, y + m, x + s - m, y + s - m), outline=c, width=max(2, int(s * 0.07)))
    elif kind == 3:  # diamond with a dot
        d.polygon([(x + s / 2, y), (x + s, y + s / 2), (x + s / 2, y + s), (x, y + s / 2)], fill=c)
        d.ellipse((x + s * 0.38, y + s * 0.38, x + s * 0.62, y + s * 0.62), fill=p.bg)
    else:  # leaves
        d.ellipse((x, y + s * 0.25, x + s * 0.6, y + s * 0.75), fill=c)
        d.ellipse((x + s * 0.4, y, x + s, y + s * 0.6), fill=p.mix(0.5))


def _grid(
    p: _Page,
    rng: np.random.Generator,
    x: float,
    y: float,
    width: float,
    rows: int,
    cols: int,
    size: int,
    fill_cells: float,
) -> float:
    """A ruled table with a shaded header row; returns the y below it."""
    rh = size * rng.uniform(1.6, 2.2)
    cw = width / cols
    line = p.mix(rng.uniform(0.4, 0.9))
    shade = p.mix(0.12) if rng.random() < 0.6 else p.bg
    p.draw.rectangle((x, y, x + width, y + rh), fill=shade)
    header = [_words(rng, 1).title() for _ in range(cols)]
    for r in range(rows + 1):
        yy = y + r * rh
        if yy + rh > p.h:
            break
        for c in range(cols):
            cell = header[c] if r == 0 else (_value(rng) if rng.random() < fill_cells else "")
            cell = cell[: p.chars(cw - 6, size)]
            p.text(x + c * cw + 4, yy + rh * 0.18, cell, size, 1 if r == 0 else 0)
        p.draw.line((x, yy, x + width, yy), fill=line, width=1)
    bottom = min(y + (rows + 1) * rh, p.h - 1)
    p.draw.line((x, bottom, x + width, bottom), fill=line, width=1)
    if rng.random() < 0.7:
        for c in range(cols + 1):
            p.draw.line((x + c * cw, y, x + c * cw, bottom), fill=line, width=1)
    return bottom + size


def _checkbox(p: _Page, rng: np.random.Generator, x: float, y: float, s: float) -> None:
    p.draw.rectangle((x, y, x + s, y + s), outline=p.fg, width=max(1, int(s / 10)))
    r = rng.random()
    if r < 0.25:  # ticked
        p.draw.line((x + s * 0.15, y + s * 0.55, x + s * 0.4, y + s * 0.85), fill=p.fg, width=2)
        p.draw.line((x + s * 0.4, y + s * 0.85, x + s * 0.9, y + s * 0.1), fill=p.fg, width=2)
    elif r < 0.4:  # crossed
        p.draw.line((x + 2, y + 2, x + s - 2, y + s - 2), fill=p.fg, width=2)
        p.draw.line((x + 2, y + s - 2, x + s - 2, y + 2), fill=p.fg, width=2)


def _page_size(rng: np.random.Generator) -> tuple[int, int]:
    w = int(rng.integers(520, 800))
    if rng.random() < 0.15:  # landscape
        return min(MAX_SIDE, int(w * rng.uniform(1.25, 1.45))), w
    return w, min(MAX_SIDE, int(w * rng.uniform(1.25, 1.45)))


def _report_page(
    rng: np.random.Generator, fonts: tuple[str, str, str], dark_p: float = 0.15
) -> np.ndarray:
    p = _new_page(rng, fonts, *_page_size(rng), dark_p=dark_p)
    m = p.w * rng.uniform(0.05, 0.1)
    size = int(p.w / rng.uniform(42, 60))
    y = m
    s = p.w * rng.uniform(0.06, 0.11)
    logo_left = rng.random() < 0.6
    _logo(p, rng, m if logo_left else p.w - m - s, y, s)
    tx = m + s * 1.3 if logo_left else m
    p.text(tx, y, _words(rng, int(rng.integers(2, 4))).title(), int(size * 1.6), 1)
    p.text(tx, y + size * 2.2, f"{_words(rng, 3).title()} {int(rng.integers(1, 300))}", size, 2)
    y += s + size
    p.draw.line((m, y, p.w - m, y), fill=p.accent, width=int(rng.integers(1, 4)))
    y += size
    title = _TITLES[int(rng.integers(len(_TITLES)))]
    p.text(m, y, title, int(size * rng.uniform(1.3, 2.0)), 1)
    y += size * 3
    boxed = rng.random() < 0.4
    col_w = (p.w - 2 * m) / 2
    rows = int(rng.integers(2, 5))
    for r in range(rows):
        for c in range(2):
            x0 = m + c * col_w
            label = _words(rng, 1).title() + ":"
            p.text(x0 + 4, y, label, size, 1)
            p.text(x0 + 4 + size * 6, y, _value(rng)[: p.chars(col_w - size * 7, size)], size)
            if boxed:
                p.draw.rectangle((x0, y - 3, x0 + col_w, y + size * 1.6), outline=p.mix(0.5))
        y += size * 1.9 if not boxed else size * 1.6 + 3
        if r == rows - 1:
            y += size
    while y < p.h - m - size * 6:
        if rng.random() < 0.25 and y < p.h - m - size * 10:
            y = _grid(
                p,
                rng,
                m,
                y,
                p.w - 2 * m,
                int(rng.integers(3, 8)),
                int(rng.integers(3, 6)),
                size,
                0.85,
            )
        else:
            p.text(m, y, _words(rng, int(rng.integers(1, 3))).upper() + ":", size, 1)
            y += size * 1.6
            y = p.paragraph(rng, m, y, p.w - 2 * m, size, int(rng.integers(2, 7))) + size * 0.8
    yy = p.h - m - size * 3
    p.draw.line((m, yy, m + p.w * 0.3, yy), fill=p.fg, width=1)
    p.text(m, yy + 4, f"{_name(rng)}, {_words(rng, 1)}", size, 2)
    p.text(p.w - m - size * 6, p.h - m, f"Page {int(rng.integers(1, 4))}", int(size * 0.8))
    return _finish(p, rng)


def _worksheet(
    rng: np.random.Generator, fonts: tuple[str, str, str], dark_p: float = 0.08
) -> np.ndarray:
    p = _new_page(rng, fonts, *_page_size(rng), dark_p=dark_p)
    m = p.w * rng.uniform(0.05, 0.09)
    size = int(p.w / rng.uniform(40, 55))
    y = m
    if rng.random() < 0.5:
        _logo(p, rng, p.w - m - size * 3, y, size * 3)
    p.text(m, y, _TITLES[int(rng.integers(len(_TITLES)))], int(size * 1.7), 1)
    y += size * 3
    y = p.paragraph(rng, m, y, p.w - 2 * m, size, int(rng.integers(1, 4))) + size
    q = 1
    while y < p.h - m - size * 3:
        kind = int(rng.integers(5))
        if kind == 0:  # fill-in lines, one or two per row
            per = int(rng.integers(1, 3))
            cw = (p.w - 2 * m) / per
            for c in range(per):
                label = f"{_words(rng, 1).title()}:"
                x0 = m + c * cw
                p.text(x0, y, label, size)
                lx = x0 + _char_width(p.fonts[0], size) * (len(label) + 1)
                p.draw.line((lx, y + size * 1.1, x0 + cw - size, y + size * 1.1), fill=p.fg)
            y += size * 2.2
        elif kind == 1:  # checkbox question
            p.text(m, y, f"{q}. {_words(rng, int(rng.integers(3, 9))).capitalize()}?", size)
            q += 1
            y += size * 1.7
            x = m + size
            for _ in range(int(rng.integers(2, 6))):
                opt = _words(rng, int(rng.integers(1, 3)))
                ow = size * 1.6 + _char_width(p.fonts[0], size) * len(opt) + size
                if x + ow > p.w - m:
                    x, y = m + size, y + size * 1.7
                _checkbox(p, rng, x, y, size)
                p.text(x + size * 1.5, y - size * 0.1, opt, size)
                x += ow
            y += size * 2.2
        elif kind == 2 and y < p.h - m - size * 10:  # table to fill
            y = _grid(
                p,
                rng,
                m,
                y,
                p.w - 2 * m,
                int(rng.integers(2, 6)),
                int(rng.integers(3, 6)),
                size,
                rng.uniform(0.0, 0.5),
            )
        elif kind == 3 and y < p.h - m - size * 8:  # comment box
            bh = size * rng.uniform(4, 8)
            p.draw.rectangle((m, y, p.w - m, y + bh), outline=p.fg, width=int(rng.integers(1, 3)))
            p.text(m + 4, y + 4, _words(rng, 2).title(), int(size * 0.9), 2)
            y += bh + size
        else:  # rating scale
            p.text(m, y, f"{q}. {_words(rng, int(rng.integers(3, 7))).capitalize()}", size)
            q += 1
            x = m + p.w * 0.55
            pick = int(rng.integers(5))
            for k in range(5):
                cx = x + k * size * 2.2
                box = (cx, y, cx + size * 1.2, y + size * 1.2)
                p.draw.ellipse(box, outline=p.fg, fill=p.fg if k == pick else None)
            y += size * 2.2
    return _finish(p, rng)


def _text_page(
    rng: np.random.Generator, fonts: tuple[str, str, str], dark_p: float = 0.2
) -> np.ndarray:
    p = _new_page(rng, fonts, *_page_size(rng), dark_p=dark_p)
    m = p.w * rng.uniform(0.06, 0.12)
    size = int(p.w / rng.uniform(45, 70))
    y = m
    p.text(m, y, _words(rng, int(rng.integers(3, 7))).title(), int(size * rng.uniform(1.6, 2.4)), 1)
    y += size * 3.5
    if rng.random() < 0.5:
        p.text(m, y, f"{_name(rng)}, {_name(rng)}", size, 2)
        y += size * 2.5
    cols = 1 if rng.random() < 0.5 else 2
    gap = size * 2
    cw = (p.w - 2 * m - gap * (cols - 1)) / cols
    top = y
    for c in range(cols):
        x, y = m + c * (cw + gap), top
        while y < p.h - m - size * 3:
            r = rng.random()
            if r < 0.15:
                p.text(x, y, f"{int(rng.integers(1, 9))}. {_words(rng, 2).title()}", size, 1)
                y += size * 1.8
            elif r < 0.22 and y < p.h - m - cw * 0.6:  # a figure placeholder with a caption
                fh = cw * rng.uniform(0.35, 0.6)
                p.draw.rectangle((x, y, x + cw, y + fh), fill=p.mix(rng.uniform(0.1, 0.4)))
                p.draw.line((x, y + fh, x + cw, y), fill=p.mix(0.6), width=2)
                y += fh + size * 0.5
                p.text(x, y, f"Figure {int(rng.integers(1, 9))}. {_words(rng, 4)}", size, 2)
                y += size * 2
            else:
                y = p.paragraph(rng, x, y, cw, size, int(rng.integers(3, 10))) + size * 0.6
    p.text(p.w / 2, p.h - m * 0.6, str(int(rng.integers(1, 400))), size)
    return _finish(p, rng)


def _finish(p: _Page, rng: np.random.Generator) -> np.ndarray:
    """Sometimes the look of a scanned or photocopied sheet: slight rotation, blur,
    uneven illumination, grain, a dark scanner-bed border; sometimes greyscale."""
    im = p.im
    if rng.random() < 0.45:  # scanned or photocopied, mostly in greyscale
        if rng.random() < 0.7:
            im = im.convert("L")
        bed: Any = int(rng.integers(0, 90)) if rng.random() < 0.4 else p.bg
        if im.mode == "L":
            bed = bed if isinstance(bed, int) else int(np.mean(bed))
        elif isinstance(bed, int):
            bed = (bed, bed, bed)
        # nearest-neighbour rotation, then the scanner's softness hides its jagged edges
        im = im.rotate(rng.uniform(-3.0, 3.0), resample=Image.Resampling.NEAREST, fillcolor=bed)
        im = im.filter(ImageFilter.BoxBlur(float(rng.uniform(0.4, 1.0))))
        a = np.asarray(im).astype(np.float32)
        h, w = a.shape[:2]
        gy = np.linspace(rng.uniform(0.82, 1.0), rng.uniform(0.9, 1.05), h, dtype=np.float32)
        gx = np.linspace(rng.uniform(0.88, 1.0), rng.uniform(0.92, 1.04), w, dtype=np.float32)
        light = gy[:, None] * gx[None, :]
        grain = rng.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(2.0, 9.0))
        if a.ndim == 3:
            light, grain = light[..., None], grain[..., None]
        out = np.clip(a * light + grain, 0, 255).astype(np.uint8)
    else:
        out = np.asarray(im)
        if rng.random() < 0.2:
            out = _grey(out)
    return out
