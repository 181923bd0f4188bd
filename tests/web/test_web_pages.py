"""The review page's pages and pictures: the scan list and its filters, a scan's page, its
frames (only while the file is the scored content; a clear picture otherwise, never a stack
trace), the summary (the figures of ``usqa report``), the agreement page (the figures of
``usqa evaluate --reviews``), the audit trail, the probe, and no patient data anywhere."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import select

import db
from db.models import AuditEntry
from db.qa import build_report
from db.qa.agreement import build_agreement
from db.qa.queries import scan_files
from dicom_io import ReadOptions
from model.defects import DEFECTS
from tests.helpers.dicom import OPERATOR, PATIENT_ID, PATIENT_NAME
from tests.helpers.ledger import Row, seed, supersede
from tests.helpers.ratings import rate
from tests.web.site import DAY, INSTITUTION, PATIENT_HASH, Site, settings_for, sign_in
from worker.report.thumbnails import read_scanned
from worker.web import create_app, scans
from worker.web.agreement import figure

LINK = re.compile(r'(?:href|src|action)="([^"]+)"')


def body(client: FlaskClient, url: str, status: int = 200) -> str:
    answer = client.get(url)
    assert answer.status_code == status, (url, answer.status_code)
    return answer.get_data(as_text=True)


def listed(client: FlaskClient, query: str = "") -> list[int]:
    """The scan ids of the list page, in order."""
    page = body(client, "/scans" + query)
    return [int(i) for i in re.findall(r'<td><a href="/scans/(\d+)">', page)]


def actions(url: str) -> list[tuple[str, int | None, str | None]]:
    with db.session_scope(url, readonly=True) as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.action, e.scan_id, e.detail) for e in rows]


@pytest.fixture
def viewer(client: FlaskClient) -> FlaskClient:
    sign_in(client, "vera")
    return client


def test_the_list_filters_by_period_station_operator_transducer_grade_and_defect(
    viewer: FlaskClient, site: Site
) -> None:
    s = site.scans
    assert listed(viewer) == sorted((s[n] for n in s if n != "failed"), reverse=True)
    assert listed(viewer, "?station=US-ER-1") == [s["gone"], s["png"], s["cine"]]
    assert listed(viewer, "?operator=op-02") == [s["png"], s["single"]]
    assert listed(viewer, "?transducer=C5-1&grade=poor") == [s["gone"], s["cine"]]
    assert listed(viewer, "?grade=average") == [s["changed"], s["png"]]
    assert listed(viewer, "?defect=noise") == [s["cine"]]  # listed second: any rank counts
    assert listed(viewer, f"?since={DAY}&until={DAY}") == listed(viewer)
    assert listed(viewer, "?until=2025-03-01") == []
    assert listed(viewer, "?since=2025-03-03") == []
    page = body(viewer, "/scans?station=US-ER-1")
    assert "3 scored scans" in page and "US-RAD-3</option>" in page  # the choices stay
    for option in ("op-07", "C5-1", "L12-3", *DEFECTS):
        assert f">{option}</option>" in page
    for bad in ("?since=yesterday", "?grade=awful", "?defect=smudge", "?page=0",
                f"?since={DAY}&until=2025-03-01"):  # fmt: skip
        text = body(viewer, "/scans" + bad, 400)
        assert "is not" in text or "after it ends" in text, bad
    detail = [d for a, _, d in actions(site.url) if a == "view_scans"]
    assert "station=US-ER-1; page 1" in detail and "no filter; page 1" in detail


def test_the_list_is_paged_newest_first_with_the_number_of_ratings(
    viewer: FlaskClient, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scans, "PER_PAGE", 2)
    rate(site.url, "rita", {site.scans["png"]: "poor"})
    rate(site.url, "riko", {site.scans["png"]: None})
    first, second, third = (listed(viewer, f"?page={n}") for n in (1, 2, 3))
    assert first == [site.scans["changed"], site.scans["gone"]]
    assert second == [site.scans["png"], site.scans["single"]] and third == [site.scans["cine"]]
    page = body(viewer, "/scans?page=2&station=")
    assert "Page 2 of 3" in page and 'href="/scans?page=1"' in page
    assert re.search(rf'/scans/{site.scans["png"]}">.*?<td class="num">2</td>', page, re.S)
    assert listed(viewer, "?page=9") == []


def test_a_scan_page_shows_its_result_frames_defects_and_other_versions(
    viewer: FlaskClient, site: Site
) -> None:
    cine = site.scans["cine"]
    supersede(site.url, cine, "v0", "blur")
    page = body(viewer, f"/scans/{cine}")
    for text in ("Scan 1", "31.0", "poor", "low_gain", "0.91", "80%", "noise", "0.62", "US-ER-1",
                 "C5-1", "op-07", "Other model versions", "v0", "20.0", "of 30"):  # fmt: skip
        assert text in page, text
    frames = re.findall(rf'src="/scans/{cine}/frames/(\d+).png"', page)
    assert frames == ["0", "7", "14", "22", "29"]
    assert f'href="/scans/{cine}?overlay=1#pictures"' in page
    assert f"/scans/{cine}/overlay.png" not in page  # only on request
    assert f'src="/scans/{cine}/overlay.png"' in body(viewer, f"/scans/{cine}?overlay=1")
    single = body(viewer, f"/scans/{site.scans['single']}")
    assert re.findall(r'src="/scans/\d+/frames/(\d+).png"', single) == ["0"]
    assert "None listed: the model found no defect." in single
    failed = body(viewer, f"/scans/{site.scans['failed']}")
    assert "was not scored" in failed and "frames/" not in failed
    assert "There is no scan 999" in body(viewer, "/scans/999", 404)
    assert ("view_scan", cine, None) in actions(site.url)


def test_frames_are_the_scored_content_cut_to_the_ultrasound_region(
    viewer: FlaskClient, site: Site
) -> None:
    cine = site.scans["cine"]
    with db.session_scope(site.url, readonly=True) as session:
        expected = scan_files(session, [cine])[cine]
    frames = dict(read_scanned(expected, ReadOptions(frames_to_score=5)).frames)
    assert sorted(frames) == [0, 7, 14, 22, 29]
    for index in (0, 22):
        answer = viewer.get(f"/scans/{cine}/frames/{index}.png")
        assert answer.status_code == 200 and answer.mimetype == "image/png"
        shown = np.asarray(Image.open(io.BytesIO(answer.data)))
        assert np.array_equal(shown, frames[index])
        assert shown.shape[:2] != (240, 320)  # cut to the B-mode region, not the whole screen
    answer = viewer.get(f"/scans/{cine}/frames/3.png")  # not a frame the page shows
    assert answer.status_code == 404 and answer.mimetype == "image/png"
    details = [d for a, i, d in actions(site.url) if a == "view_image" and i == cine]
    assert details == ["frame 0", "frame 22", "frame 3: not shown, no such frame on this page"]


def test_a_file_gone_or_changed_is_not_shown(viewer: FlaskClient, site: Site) -> None:
    for name, note in (("gone", "file no longer available"),
                       ("changed", "file changed since it was scored: not shown")):  # fmt: skip
        scan = site.scans[name]
        page = body(viewer, f"/scans/{scan}")
        assert f"Image not shown: {note}" in page and "/frames/" not in page
        answer = viewer.get(f"/scans/{scan}/frames/0.png")
        assert answer.status_code == 410 and answer.mimetype == "image/png"
        assert Image.open(io.BytesIO(answer.data)).size == (480, 120)  # the notice picture
        assert ("view_image", scan, f"frame 0: not shown, {note}") in actions(site.url)
    assert viewer.get(f"/scans/{site.scans['failed']}/frames/0.png").status_code == 404
    assert viewer.get("/scans/999/overlay.png").status_code == 404


def test_a_file_that_no_longer_decodes_gets_a_notice_not_a_stack_trace(
    viewer: FlaskClient, site: Site, tmp_path: Path
) -> None:
    bad = tmp_path / "drop" / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + bytes(np.random.default_rng(1).integers(0, 256, 4000)))
    [scan] = seed(site.url, [Row(DAY, 40.0, path=str(bad))], start=50)
    assert f'src="/scans/{scan}/frames/0.png"' in body(viewer, f"/scans/{scan}")  # the content
    answer = viewer.get(f"/scans/{scan}/frames/0.png")
    assert answer.status_code == 404 and answer.mimetype == "image/png"
    assert b"Traceback" not in answer.data
    overlay = viewer.get(f"/scans/{scan}/overlay.png")
    assert overlay.status_code == 404 and overlay.mimetype == "image/png"


def test_no_patient_data_on_any_page_or_in_any_url(client: FlaskClient, site: Site) -> None:
    rate(site.url, "rita", {site.scans["cine"]: "poor"})
    sign_in(client, "adam")
    seen: set[str] = set()
    todo = ["/scans", "/summary?by=operator", "/summary?by=transducer", "/agreement", "/audit",
            f"/scans/{site.scans['failed']}"]  # fmt: skip
    secrets = (PATIENT_HASH, PATIENT_HASH.split(":")[1], INSTITUTION, PATIENT_NAME, PATIENT_ID,
               OPERATOR, "cine.dcm", "image.png", "single.dcm", str(site.drop))  # fmt: skip
    while todo:
        url = todo.pop()
        if url in seen or not url.startswith("/") or url.startswith("/static"):
            continue
        seen.add(url)
        answer = client.get(url)
        assert answer.status_code in (200, 404, 410), (url, answer.status_code)
        if answer.mimetype != "text/html":
            continue
        text = unescape(answer.get_data(as_text=True))
        for secret in secrets:
            assert secret not in text, (url, secret)
        links = [unescape(link) for link in LINK.findall(answer.get_data(as_text=True))]
        for link in links:
            assert not any(secret in link for secret in secrets), (url, link)
        todo.extend(
            link.split("#")[0]
            for link in links
            if "overlay" not in link and not link.endswith(("/rate", "/logout"))
        )
    assert {f"/scans/{i}" for i in site.scans.values()} <= seen
    assert any("/frames/" in u for u in seen)


def one(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def test_the_summary_has_the_figures_of_usqa_report(viewer: FlaskClient, site: Site) -> None:
    for by in ("station", "operator", "transducer"):
        page = body(viewer, f"/summary?by={by}")
        with db.session_scope(site.url, readonly=True) as session:
            report = build_report(session, dimension=by, now=datetime.now(UTC))
        assert report.period is not None and str(report.period) in page
        assert len(report.groups) >= 2
        for g in [*report.groups, report.overall]:
            label = "All" if g is report.overall else (g.group or "(not recorded)")
            s = g.stats
            poor = s.share("poor")
            cells = [str(s.scans), one(s.mean), one(s.median),
                     "-" if poor is None else f"{poor * 100:.0f}%", str(g.failed)]  # fmt: skip
            row = re.search(rf">{re.escape(str(label))}(?:</a>)?</td>(.*?)</tr>", page, re.S)
            assert row is not None, (by, label)
            numbers = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
            assert [numbers[i] for i in (0, 1, 3, 6, 7)] == cells, (by, label, numbers)
    page = body(viewer, "/summary?by=station")
    assert 'href="/scans?station=US-ER-1&amp;since=2025-02-01&amp;until=2025-03-02"' in page
    assert "5 scans scored" in page
    assert "is not one of" in body(viewer, "/summary?by=body_part", 400)
    assert "No scans were received" in body(viewer, "/summary?since=2024-01-01&until=2024-01-31")
    summaries = [d for a, _, d in actions(site.url) if a == "view_summary"]
    assert "by operator; 2025-02-01 to 2025-03-02; model v1" in summaries


def test_the_agreement_page_has_the_figures_of_usqa_evaluate(
    viewer: FlaskClient, site: Site
) -> None:
    s = site.scans
    assert "No ratings yet" in body(viewer, "/agreement")
    grades = {s["cine"]: None, s["single"]: "good", s["png"]: "poor", s["gone"]: None}
    rate(site.url, "rita", grades)
    rate(site.url, "riko", {s["cine"]: "average", s["png"]: "poor"}, defects={s["png"]: ["blur"]})
    page = body(viewer, "/agreement?by=operator")
    with db.session_scope(site.url, readonly=True) as session:
        report = build_agreement(session, by="operator", defects=DEFECTS)
    overall = report.group("v1")
    assert overall is not None and overall.ratings == 6
    for text in (figure(overall.agreement, True), figure(overall.kappa), figure(overall.spearman),
                 "Reviewer rita", "Reviewer riko", "Operator op-07", "Between reviewers",
                 "6 ratings of 4 scans by 2 reviewers"):  # fmt: skip
        assert text in page, text
    pairs = report.between_reviewers[0]
    assert pairs.pairs == 2 and figure(pairs.agreement, True) in page
    blur = next(d for d in overall.defects if d.defect == "blur")
    assert f'<td>blur</td><td class="num">{blur.tp}</td>' in page
    assert "No ratings yet for this choice" in body(viewer, "/agreement?model_version=v9")
    details = [d for a, _, d in actions(site.url) if a == "view_agreement"]
    assert details[1] == "by operator; model every version; rated -..-"


def test_the_audit_trail_page_filters(client: FlaskClient, site: Site) -> None:
    sign_in(client, "adam")
    body(client, f"/scans/{site.scans['png']}")
    body(client, f"/scans/{site.scans['cine']}")
    page = body(client, "/audit?action=view_scan")
    assert page.count("<td>view_scan</td>") == 2
    one = body(client, f"/audit?scan={site.scans['png']}")
    assert one.count("<td>view_scan</td>") == 1 and "<td>login</td>" not in one
    assert "<td>login</td>" in body(client, "/audit?user=adam&action=login")
    assert "No entry matches." in body(client, "/audit?user=nobody")
    assert "is not" in body(client, "/audit?scan=x", 400)
    assert "is not one of" in body(client, "/audit?action=delete", 400)


def test_healthz_answers_without_sign_in_and_says_when_the_ledger_is_down(
    client: FlaskClient, tmp_path: Path
) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "ok\n"
    assert "Set-Cookie" not in answer.headers
    broken = create_app(settings_for(f"sqlite:///{tmp_path}/no/such/dir/usqa.db")).test_client()
    down = broken.get("/healthz")
    assert down.status_code == 503 and "does not answer" in down.get_data(as_text=True)
    page = broken.get("/login")
    assert page.status_code == 200  # the sign-in form needs no database


def test_an_error_in_a_view_is_a_page_without_a_stack_trace(
    viewer: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the secret internals of the failure")

    monkeypatch.setattr(scans, "scan_page", boom)
    page = body(viewer, "/scans", 500)
    assert "logged for IT" in page
    assert "Traceback" not in page and "secret internals" not in page and "RuntimeError" not in page
    assert "secret internals" in caplog.text  # on the server, for IT
    assert "Not found" in body(viewer, "/no/such/page", 404)
    assert viewer.get("/login?next=/scans").status_code == 303  # signed in: straight on
