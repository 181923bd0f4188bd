"""Saliency (model/saliency.py, ``usqa explain``): the heatmap of a shadowed BUSI image puts
its mass on the shadowed side; every defect has a method; the pictures and the JSON are
written and decode; a file the ledger scored is read only while it is still that content.

The shipped model is used as it ships (score-only today: its score is explained; with a
defect head, the shadowing map is checked too), so no figure of one model is written here:
the bounds are what "on the shadowed side" means, not this model's numbers."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

import db
from dicom_io import ReadOptions, read
from model.checkpoint import save_checkpoint
from model.defects import DEFECTS
from model.geometry import linear
from model.network import OUTPUTS, build_model
from model.protocols import DefectProtocol
from model.saliency import GRADCAM, METHODS, OCCLUSION, Saliency, mass_share
from tests.helpers.ledger import Row, seed
from tests.model.conftest import random_meta
from worker.cli import main

LEFT_SEED, RIGHT_SEED = 9, 2  # layout seeds whose shadowing is contact loss at the left/right
SEVERITY = 0.6


@pytest.fixture(scope="module")
def shipped() -> Saliency:
    """The shipped model, or the candidate of USQA_TEST_CANDIDATE_WEIGHTS (as
    tests/model/test_shipped_defects.py takes it) before it is released."""
    torch.set_num_threads(1)
    return Saliency.load(os.environ.get("USQA_TEST_CANDIDATE_WEIGHTS") or None)


def _busi(busi_dir: Path, n: int) -> list[np.ndarray]:
    with (busi_dir / "splits.csv").open(newline="") as fh:
        rows = [r["path"] for r in csv.DictReader(fh) if r["split"] == "test"][:n]
    return [np.asarray(Image.open(busi_dir / r).convert("L")) for r in rows]


def shadowed(image: np.ndarray, layout_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The image with contact-loss shadowing at one side, and the known shadow mask (where
    the shadowed version is darker than the clean one, smoothed over the speckle)."""
    g = linear(*image.shape)
    protocol = DefectProtocol()
    clean = protocol.make(image, [], g, layout_seed=[layout_seed]).image
    shadow = protocol.make(image, [("shadowing", SEVERITY)], g, layout_seed=[layout_seed]).image
    darker = gaussian_filter(clean.astype(np.float32), 4) - gaussian_filter(
        shadow.astype(np.float32), 4
    )
    return shadow, darker > 10


def test_every_defect_has_a_method_and_a_reason() -> None:
    assert set(METHODS) == {"score", *DEFECTS}
    assert {m.name for m in METHODS.values()} == {GRADCAM, OCCLUSION}
    assert all(m.why for m in METHODS.values())
    assert METHODS["dead_elements"].window == "strip"  # thin streaks: strips, not 32 px cells
    for name in ("low_gain", "high_gain", "low_contrast", "noise", "no_signal"):
        assert METHODS[name].name == OCCLUSION, name  # whole-frame defects
    assert METHODS["score"].name == METHODS["shadowing"].name == GRADCAM


def test_a_strip_is_filled_from_its_neighbours_and_a_square_with_grey() -> None:
    from model.saliency import _boxes, _covered

    x = torch.full((3, 256, 256), 0.5)
    x[:, :, 100:102] = -2.0  # a dead-element streak 2 px wide
    strips = _boxes(256, "strip")
    assert len(strips) == 32 and all(y1 - y0 == 256 and x1 - x0 == 8 for y0, y1, x0, x1 in strips)
    at = next(i for i, (_, _, x0, x1) in enumerate(strips) if x0 <= 100 and x1 >= 102)
    filled = _covered(x, [strips[at]], "strip")[0]
    assert torch.allclose(filled, torch.full_like(filled, 0.5))  # the streak is gone, no edge
    squares = _boxes(256, "square")
    assert len(squares) == 49
    covered = _covered(x, squares[:1], "square")[0]
    assert (covered[:, :64, :64] == 0).all() and torch.equal(covered[:, 64:], x[:, 64:])


@pytest.mark.integration
@pytest.mark.parametrize("side", ["left", "right"])
def test_the_heatmap_lies_on_the_shadowed_side(
    shipped: Saliency, busi_dir: Path, side: str
) -> None:
    """Per image and map: the heat is denser inside the shadow than outside (its share in
    the shadow exceeds the shadow's share of the view); over the images: clearly so (by
    5 points on average), and most of the mass on the shadowed half."""
    targets = ["score", *(["shadowing"] if "shadowing" in shipped.defect_names else [])]
    margins: dict[str, list[float]] = {t: [] for t in targets}
    sides: dict[str, list[float]] = {t: [] for t in targets}
    for image in _busi(busi_dir, 3):
        frame, mask = shadowed(image, LEFT_SEED if side == "left" else RIGHT_SEED)
        w = frame.shape[1]
        half = np.zeros_like(mask)
        half[:, : w // 2] = side == "left"
        half[:, w // 2 :] = side == "right"
        assert mask[half].mean() > 0.7 and mask[~half].mean() < 0.3  # one side shadowed
        for heat in shipped.explain(frame, targets):
            assert heat.heat.shape == frame.shape and not heat.empty
            in_shadow = mass_share(heat.heat, mask)
            assert in_shadow > mask.mean(), (heat.target, side, in_shadow, mask.mean())
            margins[heat.target].append(in_shadow - float(mask.mean()))
            sides[heat.target].append(mass_share(heat.heat, half))
    for t in targets:
        assert np.mean(margins[t]) > 0.05, (t, side, margins[t])
        assert np.mean(sides[t]) > 0.5, (t, side, sides[t])


def _decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


@pytest.mark.integration
def test_usqa_explain_writes_pictures_and_a_legend(
    busi_test_image: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame, _ = shadowed(busi_test_image, LEFT_SEED)
    png = tmp_path / "shadowed scan.png"
    Image.fromarray(frame).save(png)
    [(_, read_frame)] = list(read(png, ReadOptions()).iter_frames())
    assert read_frame.shape == frame.shape  # scoring's crop keeps the whole frame here
    out = tmp_path / "out"
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["explain", str(png), "--out", str(out), "--json", "--database-url", url]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["status"] == "explained" and "no ledger" in row["ledger"]
    [picture] = row["frames"]
    image = _decoded(out / picture["png"])
    panels = 2 + (row["first_defect"] is not None)
    assert image.shape[1] >= panels * frame.shape[1] and image.shape[0] > frame.shape[0]
    assert "evidence for a low score" in picture["legend"] and "Grad-CAM" in picture["legend"]
    assert picture["maps"][0]["target"] == "score"
    sidecar = json.loads(Path(row["json"]).read_text(encoding="utf-8"))
    assert sidecar["frames"][0]["legend"] == picture["legend"]
    # the score panel is hot at the left, where the shadow is
    score_panel = image[: frame.shape[0], frame.shape[1] + 4 : 2 * frame.shape[1] + 4]
    colour = score_panel.astype(int).max(axis=2) - score_panel.astype(int).min(axis=2)
    assert colour[:, : frame.shape[1] // 2].sum() > colour[:, frame.shape[1] // 2 :].sum()


@pytest.fixture(scope="module")
def defects_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights with every head; the shadowing and low_gain biases high, so the
    first defect is shadowing and both methods run."""
    torch.manual_seed(0)
    net = build_model("none", OUTPUTS)
    head = net.fc
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.weight[1:] *= 0.01  # the biases decide which defects are named
        head.bias.fill_(-6.0)
        head.bias[0] = 0.5
        head.bias[OUTPUTS.index("shadowing")] = 8.0
        head.bias[OUTPUTS.index("low_gain")] = 6.0
    path = tmp_path_factory.mktemp("defects") / "defects.pt"
    save_checkpoint(path, net, {**random_meta(), "outputs": list(OUTPUTS)})
    return path


def test_a_defect_head_explains_the_first_defect(defects_checkpoint: Path) -> None:
    saliency = Saliency.load(defects_checkpoint)
    frame = np.random.default_rng(0).integers(0, 256, (96, 128), dtype=np.uint8)
    maps = saliency.explain(frame, ["score", "shadowing", "low_gain", "dead_elements"])
    assert [m.method for m in maps] == [GRADCAM, GRADCAM, OCCLUSION, OCCLUSION]
    assert [m.window for m in maps][2:] == ["square", "strip"]
    for m in maps:
        assert m.heat.shape == (256, 256) and m.heat.dtype == np.float32
        assert np.isfinite(m.heat).all() and m.heat.min() >= 0.0 and m.heat.max() <= 1.0
    assert maps[1].value > 0.99


def test_usqa_explain_with_a_defect_head(
    defects_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 100), dtype=np.uint8)).save(png)
    out = tmp_path / "out"
    args = ["explain", str(png), "--out", str(out), "--json", "--weights", str(defects_checkpoint)]
    assert main([*args, "--database-url", f"sqlite:///{tmp_path / 'none.db'}"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["first_defect"] == "shadowing"
    [picture] = row["frames"]
    assert [m["target"] for m in picture["maps"]] == ["score", "shadowing"]
    assert "shadowing p 1.00" in picture["legend"]
    assert _decoded(out / picture["png"]).shape[1] >= 3 * 256


def test_a_scored_file_is_explained_only_while_it_is_the_scored_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import date

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    png = tmp_path / "drop" / "scan.png"
    png.parent.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)).save(png)
    [scan_id] = seed(url, [Row(date(2025, 3, 2), 40.0, path=str(png))], start=1)
    out = tmp_path / "out"
    args = ["explain", str(png), "--out", str(out), "--json", "--database-url", url]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["status"] == "explained" and f"content of scan {scan_id}" in row["ledger"]

    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(png)  # a new file, same name
    for old in out.iterdir():
        old.unlink()
    assert main(args) == 1
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["status"] == "refused" and f"scan {scan_id}" in row["reason"]
    assert "changed" in row["reason"] and list(out.iterdir()) == []
