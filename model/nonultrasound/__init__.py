"""Images that are not ultrasound, for training and evaluating the "not ultrasound" gate.

Everything ships offline: synthetic generators (report pages, worksheets, text pages and
screenshot-like forms drawn with PIL in matplotlib's bundled fonts; charts and dashboards drawn
with matplotlib Agg), photographs bundled with scikit-image and matplotlib, and CT / MR / NM
slices bundled with pydicom and matplotlib. scikit-image is optional: without it, its sources
are absent (logged once). A listed file that is missing locally is absent too; nothing is
downloaded.

Categories: ``document`` (report pages, worksheets, text pages, UI forms, logos, scanned
text), ``chart`` (plots, dashboards, tables, test graphics), ``photo`` (photographs, micrographs,
icons), ``ct_mr`` (CT, MR and other non-ultrasound medical slices: NM, SEG masks, a phantom).

Splits. A source is a group: every image of it lies in exactly one split. Files (photos,
DICOM) are split by file, about 60/15/25 % per category; one image in several encodings or
crops is one group (``pydicom:MR_small`` is 8 files, ``skimage:chelsea`` is ``cat`` and
``chelsea``, the stereo pair is one group, ``pydicom:NM_bone`` is one scan in two codecs)::

    split    category  sources (groups)
    train    document  skimage:text, skimage:logo, pydicom:GDCMJ2K_TextGBR
             chart     skimage:colorwheel
             photo     skimage: astronaut, camera, coins, horse, hubble_deep_field,
                       immunohistochemistry, moon, retina, grass, microaneurysms,
                       lfw_subset, stereo_motorcycle; matplotlib:Minduka
             ct_mr     pydicom: CT_small, J2K_pixelrep_mismatch, NM_bone, liver_seg;
                       matplotlib:s1045
    val      document  matplotlib:logo2
             chart     skimage:checkerboard
             photo     skimage: chelsea, clock, brick
             ct_mr     pydicom:MR_small, skimage:shepp_logan
    heldout  document  skimage:page
             photo     matplotlib:grace_hopper; skimage: coffee, rocket, gravel, cell
             ct_mr     pydicom: 693_J2KI, examples_overlay

Synthetic sources are named ``generator:variant#split``; the split fixes the seed range of
the images (train seeds [0, 1e6), val [1e6, 1.1e6), heldout [2e6, 2.1e6)), and some variants
exist only in heldout, so that the held-out set is not just new seeds of training layouts::

    generator    category  variant    fonts / styles                              splits
    report_page  document  dejavu     DejaVu Sans, Serif, Mono                    train val heldout
    worksheet    document  dejavu     (same)                                      train val heldout
    text_page    document  dejavu     (same)                                      train val heldout
    ui_form      document  dejavu     (same)                                      train val heldout
    (all four)   document  stix_cm    STIX General, Computer Modern               heldout
    report_page, text_page, ui_form
                 document  dejavu_dark  DejaVu, every page in dark mode (light    train
                                      text on a dark background; in the other
                                      variants 8-35 % of pages are dark)
    chart        chart     std        line bar scatter pie hist heatmap table;    train val heldout
                                      styles default classic ggplot bmh grayscale
                                      dark_background seaborn whitegrid/darkgrid
    dashboard    chart     std        2 to 4 of the kinds above (no table), maybe train val heldout
                                      under a band of KPI tiles
    chart        chart     alt_style  styles Solarize_Light2, fivethirtyeight     heldout
    stat_chart   chart     std        box, violin, error-bar, area plots          heldout

Left out of pydicom's files: every ultrasound one (``examples_*.dcm``, ``ExplVR_BigEnd.dcm``;
a Modality or SOP class of US raises), those that do not decode here (``JPEG-lossy.dcm``, the
``NM_bone`` scan again; ``JPEG2000-embedded-sequence-delimiter.dcm``; ``MR_truncated.dcm``),
16 x 16 and 10 x 10 slices (``dicomdirtests``, ``rtdose*``) and colour test patterns
(``SC_rgb_*``, ``image_dfl.dcm``).

``sample`` takes the categories in round robin, and within a category every source once per
round in a seeded order, so a source with many files weighs no more than a generator.
Every split has the four categories when scikit-image is present; without it, heldout still
has all four (grace_hopper, the DICOM slices, synthetic pages and charts) and val has no photo.

Augmentation (``augment=True``) acts on one image at a time, so it never mixes splits: random
crop, scale, rotation by 90/180/270, flip, brightness/contrast, greyscale, JPEG re-encode and
downsizing. DICOM slices are rendered with a header window (linear VOI after
``pydicom.pixels.apply_rescale``) or a random percentile window, frames chosen at random.
Outputs are uint8 (H, W) grey or (H, W, 3) RGB with every side in [128, 1024].
"""

from __future__ import annotations

import functools

import numpy as np

# The package re-exports the private names its tests reach through ``model.nonultrasound``.
from model.nonultrasound.augment import (
    _augment,
    _fit,
)
from model.nonultrasound.files import (  # noqa: F401
    _US_SOP_CLASSES,
    _decode,
    _load,
    _loads,
    _read_dicom,
    _skimage_data,
    _Slice,
    _UltrasoundFileError,
)
from model.nonultrasound.rendering import (  # noqa: F401
    _generate,
    _render,
    _window,
)
from model.nonultrasound.table import (  # noqa: F401
    _FILE_SOURCES,
    _SOURCES,
    _SYNTHETIC_SOURCES,
    _SYNTHETIC_TABLE,
    CATEGORIES,
    MAX_SIDE,
    MIN_SIDE,
    SEED_RANGES,
    SPLITS,
    NonUltrasoundImage,
    _Source,
)

__all__ = ["CATEGORIES", "SPLITS", "NonUltrasoundImage", "heldout_set", "sample", "sources"]


def sources(split: str) -> list[str]:
    """Names of the sources (groups) available offline in ``split``, in table order."""
    return [s.name for s in _available(_check_split(split))]


def sample(split: str, n: int, seed: int, augment: bool = True) -> list[NonUltrasoundImage]:
    """``n`` images of ``split``: categories in round robin over those available there, and
    within a category every source once per round in a seeded random order. The same
    ``seed`` gives the same images, and the first ``m`` images of a larger sample."""
    avail = _available(_check_split(split))
    by_cat = {c: [s for s in avail if s.category == c] for c in CATEGORIES}
    cats = [c for c in CATEGORIES if by_cat[c]]
    if not cats:
        raise RuntimeError(f"no non-ultrasound source is available offline in split {split!r}")
    out = []
    for i in range(n):
        k, category = i // len(cats), cats[i % len(cats)]
        pool = by_cat[category]
        block, pos = divmod(k, len(pool))
        key = [seed, SPLITS.index(split), CATEGORIES.index(category), block]
        src = pool[int(np.random.default_rng(key).permutation(len(pool))[pos])]
        rng = np.random.default_rng([seed, SPLITS.index(split), i])
        image = _render(src, rng)
        if augment:
            image = _augment(image, rng)
        out.append(NonUltrasoundImage(_fit(image), category, src.name, split))
    return out


def heldout_set(n_per_category: int = 50, seed: int = 0) -> list[NonUltrasoundImage]:
    """The fixed evaluation set: ``n_per_category`` augmented held-out images per category
    available offline (all four when the bundled files are present)."""
    cats = {s.category for s in _available("heldout")}
    return sample("heldout", n_per_category * len(cats), seed=seed, augment=True)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    return split


@functools.cache
def _available(split: str) -> tuple[_Source, ...]:
    out = []
    for src in _SOURCES:
        if src.split != split:
            continue
        if src.library == "synthetic":
            out.append(src)
            continue
        if src.library == "skimage" and _skimage_data() is None:
            continue
        ok_items = [item for item in src.items if _loads(src.library, item)]
        if ok_items:
            out.append(src)
    return tuple(out)
