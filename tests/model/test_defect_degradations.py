"""The defect degradations: documented ranges, strictly falling labels, the display model,
scan-line geometry (linear and fans), nested ladders and the combination rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from model.defects import DEFECTS
from model.degradations import (
    CURVES,
    Envelope,
    apply_defects,
    combined_label,
    defect_label,
)
from model.geometry import fan, linear, random_geometry
from model.protocols import RANGES, TARGET_DAMAGE, DefectProtocol, defect_targets


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    """A speckle-like grey image (seeded), mean grey about 100."""
    rng = np.random.default_rng(3)
    field = rng.rayleigh(1.0, (128, 128)) * 60.0 + 40.0
    return np.clip(field, 1, 255).astype(np.uint8)


def _steps(name: str, n: int = 12) -> np.ndarray:
    mild, strong = RANGES[name]
    return np.linspace(mild, strong, n)


@pytest.mark.parametrize("name", DEFECTS)
def test_every_label_is_100_when_invisible_and_falls_strictly_to_20(name: str) -> None:
    mild, strong = RANGES[name]
    assert defect_label(name, mild) == 100.0
    assert defect_label(name, strong) == pytest.approx(20.0, abs=1e-9)
    if name == "compression":
        assert defect_label(name, 90) == 100.0 and defect_label(name, 89) < 100.0
        visible = np.linspace(89, 5, 30)
    else:
        curve = CURVES[name]
        assert defect_label(name, curve.invisible) == 100.0
        assert curve.useless <= max(mild, strong) + 1e-9  # the range reaches "useless"
        visible = np.linspace(curve.invisible + 1e-3, curve.useless, 30)
    labels = [defect_label(name, float(s)) for s in visible]
    assert all(b < a for a, b in itertools.pairwise(labels))
    assert min(labels) >= 20.0 and max(labels) < 100.0


def test_an_unknown_defect_is_refused(tissue: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown defect"):
        defect_label("glare", 1.0)
    with pytest.raises(ValueError, match="distinct names"):
        apply_defects(tissue, [("glare", 1.0)], 0)
    with pytest.raises(ValueError, match="distinct names"):
        apply_defects(tissue, [("noise", 1.0), ("noise", 2.0)], 0)


def test_the_combination_rule() -> None:
    assert combined_label([]) == 100.0
    assert combined_label([70.0]) == pytest.approx(70.0)
    pair = combined_label([60.0, 80.0])
    # damages 0.5 and 0.25: 1 - 0.5 * 0.75 = 0.625
    assert pair == pytest.approx(100.0 - 80.0 * 0.625)
    assert pair < 60.0
    assert combined_label([100.0, 55.0]) == pytest.approx(55.0)
    assert combined_label([20.0, 90.0]) == pytest.approx(20.0)


def test_the_display_model_round_trips_an_image(tissue: np.ndarray) -> None:
    g = linear(*tissue.shape)
    for dr in (50.0, 60.0, 65.0):
        env = Envelope.from_image(tissue, g, np.random.default_rng(0), dr)
        np.testing.assert_array_equal(env.image(), tissue)
    black = np.zeros_like(tissue)
    assert Envelope.from_image(black, g, np.random.default_rng(0)).amplitude.max() == 0.0


@pytest.mark.parametrize("name", ["low_gain", "depth_attenuation", "shadowing", "dead_elements"])
def test_severity_zero_changes_nothing(tissue: np.ndarray, name: str) -> None:
    np.testing.assert_array_equal(apply_defects(tissue, [(name, 0.0)], 1), tissue)


def test_gain_contrast_and_noise_move_the_image_the_way_a_scanner_does(
    tissue: np.ndarray,
) -> None:
    image = tissue.copy()
    image[40:80, 40:80] = 0  # a cyst: no echo
    means = [apply_defects(image, [("low_gain", s)], 1).mean() for s in (0, 8, 16, 30)]
    assert all(b < a for a, b in itertools.pairwise(means))
    bright = [apply_defects(image, [("high_gain", s)], 1) for s in (4, 12, 24)]
    assert all(b.mean() > a.mean() for a, b in itertools.pairwise(bright))
    assert (bright[-1] == 255).mean() > 0.1  # saturation
    assert bright[-1][40:80, 40:80].mean() > 20  # the noise floor shows in the cyst
    flat = [apply_defects(image, [("low_contrast", s)], 1) for s in (0, 20, 60)]
    assert all(b.std() < a.std() for a, b in itertools.pairwise(flat))
    assert np.percentile(flat[-1], 5) > 60  # a grey floor
    noisy = [apply_defects(image, [("noise", s)], 1)[40:80, 40:80] for s in (5, 15, 25)]
    assert all(b.mean() > a.mean() for a, b in itertools.pairwise(noisy))


def test_depth_attenuation_darkens_the_far_field(tissue: np.ndarray) -> None:
    out = apply_defects(tissue, [("depth_attenuation", 15.0)], 4)
    top, bottom = out[:20].mean(), out[-20:].mean()
    assert bottom < 0.4 * top
    assert abs(float(out[:10].mean()) - float(tissue[:10].mean())) < 25


def test_linear_shadows_are_vertical(tissue: np.ndarray) -> None:
    flat = np.full_like(tissue, 150)
    for seed in range(6):
        out = apply_defects(flat, [("shadowing", 0.4)], [seed, 1])
        dark = out.astype(float) < 100
        columns = dark[-30:].mean(axis=0) > 0.9  # fully shadowed columns near the bottom
        assert columns.any()
        # a column shadowed at the bottom is shadowed over the lower third all the way
        lower = dark[-40:, columns].mean()
        assert lower > 0.85


def test_every_shadow_layout_reaches_the_top_of_the_range() -> None:
    """The label keeps falling to the top of the range, so the image must keep changing:
    no layout (narrow acoustic shadows, ribs, a contact wedge) may saturate below it."""
    flat = np.full((96, 96), 150, np.uint8)
    for seed in range(40):
        for kind in ("linear", "curved", "sector"):
            g = random_geometry(np.random.default_rng(seed), 96, 96, kind=kind)
            a, b = (
                apply_defects(flat, [("shadowing", s)], [seed, 5], geometry=g).astype(float)
                for s in (0.65, 0.75)
            )
            assert np.abs(a - b).mean() > 0.3, (seed, kind)


def test_sector_shadows_radiate_from_the_apex() -> None:
    h = w = 128
    g = fan(h, w, (w / 2, -4.0), math.radians(40), 6.0, 128.0, kind="sector")
    flat = np.full((h, w), 150, dtype=np.uint8)
    flat[~g.mask] = 0
    out = apply_defects(flat, [("shadowing", 0.3)], [2, 9], geometry=g)
    dark = (out < 30) & g.mask
    ys, xs = np.nonzero(dark[h // 2 :])
    ys = ys + h // 2
    angles = np.degrees(np.arctan2(xs + 0.5 - w / 2, ys + 0.5 + 4.0))
    widths = [np.ptp(xs[ys == y]) for y in (70, 110) if (ys == y).any()]
    assert len(widths) == 2 and widths[1] > widths[0]  # wider with depth, in pixels
    per_row = [np.ptp(angles[ys == y]) for y in (70, 110)]
    assert abs(per_row[1] - per_row[0]) < 3.0  # the same angles at every depth
    assert not dark[~g.mask].any()


def test_outside_the_field_of_view_stays_black(tissue: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    for kind in ("curved", "sector"):
        height, width = tissue.shape
        g = random_geometry(rng, height, width, kind=kind)
        base = tissue.copy()
        base[~g.mask] = 0
        for name in DEFECTS:
            if name == "compression":
                continue
            _mild, strong = RANGES[name]
            out = apply_defects(base, [(name, strong)], [1, 2], geometry=g)
            assert out[~g.mask].max() == 0, name


@pytest.mark.parametrize("name", ["shadowing", "dead_elements", "depth_attenuation"])
def test_a_ladder_with_one_seed_is_nested(tissue: np.ndarray, name: str) -> None:
    """The same layout, stronger: what is dark at a mild step is dark at a stronger one."""
    steps = _steps(name, 6)[1:]
    darks = [apply_defects(tissue, [(name, float(s))], [5, 5]) < 20 for s in steps]
    for mild, strong in itertools.pairwise(darks):
        assert (mild & ~strong).mean() < 0.01
        assert strong.sum() >= mild.sum()


def test_dead_elements_are_narrow_full_depth_streaks(tissue: np.ndarray) -> None:
    flat = np.full_like(tissue, 140)
    out = apply_defects(flat, [("dead_elements", 4.0)], [3, 3])
    dim = out.astype(float).mean(axis=0) < 120  # columns darkened over the whole depth
    assert 2 <= dim.sum() <= 30
    assert (out[:, dim] < 130).mean() > 0.95


def test_no_signal_at_full_severity_leaves_no_tissue() -> None:
    # 256 rows deep, the depth training and scoring see: the ring-down fades over some
    # 100-200 px, so a frame only 128 px deep can still ring at its bottom
    rng = np.random.default_rng(3)
    tissue = np.clip(rng.rayleigh(1.0, (256, 128)) * 60.0 + 40.0, 1, 255).astype(np.uint8)
    for seed in range(5):
        out = apply_defects(tissue, [("no_signal", 1.0)], [seed])
        assert abs(np.corrcoef(out.ravel(), tissue.ravel())[0, 1]) < 0.1
        # what is left is ring-down (bands along depth), black or faint noise
        assert out[-16:].mean() < 0.6 * tissue[-16:].mean()


def test_defect_targets_ramp_to_one_at_the_good_boundary() -> None:
    assert defect_targets([]) == (0.0,) * len(DEFECTS)
    t = defect_targets([("low_gain", 1.0)])
    assert t[DEFECTS.index("low_gain")] == 0.0  # below what is visible
    curve = CURVES["noise"]
    half = defect_targets([("noise", curve.severity_at(TARGET_DAMAGE / 2))])
    assert half[DEFECTS.index("noise")] == pytest.approx(0.5, abs=1e-6)
    full = defect_targets([("noise", 20.0), ("blur", 4.0)])
    assert full[DEFECTS.index("noise")] == 1.0 and full[DEFECTS.index("blur")] == 1.0
    assert sum(full) == 2.0


def test_the_protocol_draws_compatible_pairs_and_labels_them() -> None:
    protocol = DefectProtocol()
    rng = np.random.default_rng(0)
    pairs = 0
    for _ in range(2000):
        drawn = protocol.draw_defects(rng)
        names = {n for n, _ in drawn}
        assert len(names) == len(drawn) <= 2
        assert not {"low_gain", "high_gain"} <= names
        assert "no_signal" not in names or len(drawn) == 1
        for name, severity in drawn:
            lo, hi = sorted(RANGES[name])
            assert lo <= severity <= hi
        pairs += len(drawn) == 2
    assert 0.1 < pairs / 2000 < 0.25


def test_versions_are_reproducible_and_labelled(tissue: np.ndarray) -> None:
    protocol = DefectProtocol()
    image = np.pad(tissue, ((0, 128), (0, 128)), mode="reflect")[:256, :256]
    a = [protocol.version(image, s, np.random.default_rng([1, s])) for s in range(4)]
    b = [protocol.version(image, s, np.random.default_rng([1, s])) for s in range(4)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        assert x.label == y.label and x.targets == y.targets
    assert a[0].kind == "original" and a[0].label == 100.0
    for v in a[1:]:
        labels = [defect_label(n, s) for n, s in v.defects]
        assert v.label == pytest.approx(combined_label(labels))
        assert v.image.shape == image.shape and v.image.dtype == np.uint8


def test_evaluation_versions(tissue: np.ndarray) -> None:
    protocol = DefectProtocol()
    image = np.pad(tissue, ((0, 128), (0, 128)), mode="reflect")[:256, :256]
    versions = protocol.eval_versions(image, 0, levels=2, seed=1)
    kinds = [v.kind for v in versions]
    assert kinds[:3] == ["original", "clean_curved", "clean_sector"]
    assert len(versions) == 3 + 2 * len(DEFECTS)
    for name in DEFECTS:
        severities = [v.severity for v in versions if v.kind == name]
        lo, hi = RANGES[name]
        middle = (lo + hi) / 2
        assert len(severities) == 2
        # one from each half of the range (strata)
        assert sorted((s - middle) * (1 if hi > lo else -1) > 0 for s in severities) == [
            False,
            True,
        ]
