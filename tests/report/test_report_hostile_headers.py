"""Header text is hostile: station, manufacturer, transducer and body part names come from
whoever set up the scanner. Built from real DICOM files (read by dicom_io, recorded through
the ledger helpers), they reach `usqa report --csv` as inert text (a leading apostrophe
before anything a spreadsheet would run), the charts as plain text (never mathtext or TeX,
never hidden from a legend), and the terminal with control characters escaped."""

from __future__ import annotations

import csv
import io
import json
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import db
import worker.report.charts as charts
from db.qa.report import build_report
from dicom_io import ReadOptions, read
from tests.helpers.ledger import Row, seed
from worker.cli import main
from worker.report.text import FORMULA_STARTS, csv_cell, report_csv, shown_text

UNTIL = date(2025, 3, 2)
SALT = "hostile-header-test-salt"

# What a spreadsheet runs (=, +, -, @), what matplotlib would parse ($...$, unbalanced
# braces, an unknown TeX command), what a legend hides (a leading underscore), and a
# right-to-left override that makes a terminal line read backwards.
FORMULAS = [
    '=HYPERLINK("http://evil.example/x","Click")',
    "+SUM(1,2)",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
]
MATH = ["$\\frac{1}{0}$", "$x^{2$", "$\\nosuchcommand$ and $", "_hidden"]
BIDI = "US\u202eevil"
PLAIN = ["US-1", "a-b=c", "Philips EPIQ 7"]
ALL_NAMES = [*FORMULAS, *MATH, BIDI, *PLAIN]


def hostile_file(folder: Path, stem: str, name: str, seed_value: int) -> Path:
    """A small real scan whose station, manufacturer, transducer and body part are all
    ``name``: a DICOM file (pydicom warns that some exceed their VR's length), or, for a
    name with a backslash (DICOM's value separator) or beyond ASCII (body part is a CS
    value), a PNG with its JSON sidecar."""
    rng = np.random.default_rng(seed_value)
    pixels = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    if "\\" in name or not name.isascii():
        path = folder / f"{stem}.png"
        Image.fromarray(pixels).save(path)
        keys = ("station_name", "manufacturer", "transducer", "body_part")
        sidecar = {key: name for key in keys}
        sidecar.update(operator="Doe^Sam", acquisition_datetime=f"{UNTIL}T09:30:00")
        path.with_name(path.name + ".json").write_text(json.dumps(sidecar), encoding="utf-8")
        return path
    path = folder / f"{stem}.dcm"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.StationName = name
    ds.Manufacturer = name
    ds.TransducerData = name
    ds.BodyPartExamined = name
    ds.OperatorsName = "Doe^Sam"
    ds.AcquisitionDate = UNTIL.strftime("%Y%m%d")
    ds.AcquisitionTime = "093000"
    ds.set_pixel_data(pixels, "MONOCHROME2", 8)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values longer than SH/CS allow: written anyway
        ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def hostile_url(tmp_path: Path, sqlite_url: str) -> str:
    """A ledger with three scored scans per hostile name, each from a real DICOM file
    whose header carries the name; metadata as dicom_io reads it."""
    url = sqlite_url
    rows = []
    for i, name in enumerate(ALL_NAMES):
        for k in range(3):
            path = hostile_file(tmp_path, f"scan-{i}-{k}", name, 10 * i + k)
            meta = read(path, ReadOptions(pseudonym_salt=SALT)).metadata
            assert meta["station_name"] == name  # the header came through unchanged
            rows.append(
                Row(
                    UNTIL,
                    20.0 + 2 * i + k,
                    station=meta["station_name"],
                    manufacturer=meta["manufacturer"],
                    transducer=meta["transducer"],
                    body_part=meta["body_part"],
                    operator=meta["operator"],
                    path=str(path),
                )
            )
    seed(url, rows)
    return url


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\tX", "\rX", "\t=cmd"])
def test_csv_cell_neutralises_what_a_spreadsheet_would_run(value: str) -> None:
    assert csv_cell(value) == "'" + value
    out = io.StringIO()
    csv.writer(out).writerow([csv_cell(value)])
    assert next(csv.reader(io.StringIO(out.getvalue())))[0] == "'" + value


@pytest.mark.parametrize("value", ["US-1", "a=b", " =x", "", 42, -3.5, 0.0])
def test_csv_cell_leaves_other_values_alone(value: Any) -> None:
    assert csv_cell(value) == value


@pytest.mark.parametrize("by", ["station", "manufacturer", "transducer", "body_part"])
def test_csv_from_hostile_headers_is_inert(hostile_url: str, tmp_path: Path, by: str) -> None:
    out = tmp_path / f"{by}.csv"
    args = ["report", "--database-url", hostile_url, "--by", by, "--until", str(UNTIL)]
    assert main([*args, "--csv", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    groups = {r["group"]: r for r in rows if r["dimension"] == by}
    for name in ALL_NAMES:
        shown = "'" + name if name.startswith(FORMULA_STARTS) else name
        assert shown in groups, f"{name!r} missing from the {by} CSV: {sorted(groups)}"
        assert groups[shown]["scans"] == "3"
        float(groups[shown]["mean"])  # numbers stay numbers, not text
    for row in rows:
        for column, cell in row.items():
            if cell.startswith(FORMULA_STARTS):  # only a negative number may start so
                assert cell.lstrip("-").replace(".", "", 1).isdigit(), (
                    f"{column}={cell!r} would run as a formula"
                )


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every chart figure the report draws, kept for inspection. The site's matplotlibrc
    is made as hostile as it gets: TeX on (no LaTeX here: using it would fail)."""
    figures: list[Figure] = []
    real_png = charts._png

    def keep(fig: Figure) -> str:
        figures.append(fig)
        return real_png(fig)

    monkeypatch.setattr(charts, "_png", keep)
    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)
    monkeypatch.setitem(matplotlib.rcParams, "text.parse_math", True)
    return figures


@pytest.mark.parametrize("by", ["station", "transducer"])
def test_charts_show_hostile_names_as_typed(
    hostile_url: str, tmp_path: Path, drawn: list[Figure], by: str
) -> None:
    page = tmp_path / "hostile.html"
    args = ["report", "--database-url", hostile_url, "--by", by, "--until", str(UNTIL)]
    assert main([*args, "--html", str(page)]) == 0
    assert len(drawn) == 4  # timeline, trend, ranking, distribution
    texts = [t for fig in drawn for t in _texts(fig)]
    for t in texts:
        assert not t.get_parse_math() and not t.get_usetex(), t.get_text()
    shown = {t.get_text() for t in texts}
    _timeline, trend, ranking, distribution = drawn
    ranking_labels = {t.get_text() for t in _texts(ranking)}
    distribution_labels = {t.get_text() for t in _texts(distribution)}
    for name in ALL_NAMES:
        label = shown_text(name)
        assert f"{label}  n=3" in ranking_labels, name
        assert label in distribution_labels, name
    assert "US\\u202eevil" in shown and BIDI not in shown  # the override is escaped
    # the trend legend lists its groups, "_hidden" included (the lowest scores come first)
    legend = trend.axes[0].get_legend()
    assert legend is not None
    entries = [t.get_text() for t in legend.get_texts()]
    assert "_hidden" in entries and len(entries) == charts.TREND_GROUPS
    html = page.read_text(encoding="utf-8")
    assert "&quot;http://evil.example/x&quot;" in html and '"http://evil.example/x"' not in html


def test_chart_functions_are_plain_text_on_their_own(hostile_url: str) -> None:
    """Called directly, outside `usqa report`, the chart functions still never parse."""
    with db.session_scope(hostile_url, readonly=True) as session:
        report = build_report(session, until=UNTIL)
    with matplotlib.rc_context({"text.parse_math": True}):
        uri = charts.ranking_chart(report, charts.Thresholds(), set())
    assert uri.startswith("data:image/png;base64,")


def test_terminal_report_escapes_control_characters(
    hostile_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--database-url", hostile_url, "--until", str(UNTIL)]) == 0
    out = capsys.readouterr().out
    assert "US\\u202eevil" in out and "\u202e" not in out
    assert '=HYPERLINK("http://evil.example/x","Click")' in out  # a terminal runs nothing


def test_report_csv_of_a_report_without_groups_is_the_header(hostile_url: str) -> None:
    with db.session_scope(hostile_url, readonly=True) as session:
        empty = build_report(session, since=date(2024, 1, 1), until=date(2024, 1, 2))
    assert report_csv(empty).count("\n") == 1
