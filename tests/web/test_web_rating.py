"""Rating a scan on the review page: agree with the model or give a grade and defects, with a
comment; stored with the model version shown, shown on the page, replaced when rated again,
audited; refused when incomplete. And the main flow on SQLite and PostgreSQL: sign in, find
the poor scans of a room, open one, rate it, see the agreement page count it."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

import db
from db import reviews
from db.models import AuditEntry
from tests.helpers.ledger import supersede
from tests.web.site import Site, page_token, settings_for, sign_in
from worker.web import create_app


def ratings(site: Site, name: str) -> list[reviews.Rating]:
    with db.session_scope(site.url, readonly=True) as session:
        return reviews.ratings_for_scan(session, site.scans[name])


def post(client: FlaskClient, scan: int, **form: object) -> int:
    data = {"csrf_token": page_token(client), **form}
    return client.post(f"/scans/{scan}/rate", data=data).status_code


def test_a_reviewer_agrees_then_changes_their_rating(client: FlaskClient, site: Site) -> None:
    scan = site.scans["cine"]
    sign_in(client, "rita")
    form = client.get(f"/scans/{scan}").get_data(as_text=True)
    assert "Agree with the model" in form and 'name="shown_version" value="v1"' in form
    answer = client.post(
        f"/scans/{scan}/rate",
        data={"csrf_token": page_token(client), "action": "agree", "grade": "good"},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/scans/{scan}?saved=1#ratings"
    [rating] = ratings(site, "cine")
    assert (rating.reviewer, rating.agrees, rating.grade) == ("rita", True, "poor")
    assert rating.defects == ("low_gain", "noise")  # the model's, as shown
    assert (rating.model_version, rating.model_score, rating.model_grade) == ("v1", 31.0, "poor")
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Rating saved." in page and "(agreed)" in page and "Change your rating" in page

    comment = "Gain too low <script>alert(1)</script> & blurred"
    assert post(client, scan, action="rate", grade="average", defect=["low_gain", "blur"],
                comment=comment) == 303  # fmt: skip
    [rating] = ratings(site, "cine")  # replaced, not added
    assert (rating.agrees, rating.grade, rating.defects) == (False, "average", ("blur", "low_gain"))
    assert rating.comment == comment
    page = client.get(f"/scans/{scan}").get_data(as_text=True)
    assert "<script>alert" not in page
    assert "Gain too low &lt;script&gt;alert(1)&lt;/script&gt; &amp; blurred" in page
    assert 'value="average" checked' in page
    assert 'value="blur" checked' in page and 'value="noise" checked' not in page
    assert "Gain too low" in page.split('id="comment"', 1)[1]  # the form keeps it to edit

    with db.session_scope(site.url, readonly=True) as session:
        rated = [
            e.detail for e in session.scalars(select(AuditEntry).where(AuditEntry.action == "rate"))
        ]
    assert rated == [
        "grade poor (agrees with the model, model v1); defects low_gain, noise",
        "grade average (model said poor, model v1); defects blur, low_gain",
    ]


def test_two_reviewers_rate_the_same_scan(site: Site) -> None:
    scan = site.scans["png"]
    for name, grade in (("rita", "poor"), ("riko", "average"), ("adam", "poor")):
        client = create_app(settings_for(site.url)).test_client()
        sign_in(client, name)
        assert post(client, scan, action="rate", grade=grade) == 303
    assert [(r.reviewer, r.grade) for r in ratings(site, "png")] == [
        ("rita", "poor"), ("riko", "average"), ("adam", "poor"),
    ]  # fmt: skip
    listing = client.get("/scans").get_data(as_text=True)
    assert re.search(rf'/scans/{scan}">.*?<td class="num">3</td>', listing, re.S)


def test_an_incomplete_or_unknown_rating_is_refused(client: FlaskClient, site: Site) -> None:
    scan = site.scans["cine"]
    sign_in(client, "rita")
    for form in (
        {"action": "rate"},  # no grade
        {"action": "rate", "grade": "excellent"},
        {"action": "rate", "grade": "poor", "defect": "smudge"},
        {"action": "delete"},
        {},
    ):
        assert post(client, scan, **form) == 400, form
    assert post(client, 999, action="rate", grade="poor") == 400
    assert ratings(site, "cine") == []
    answer = client.post(
        f"/scans/{scan}/rate",
        data={"csrf_token": page_token(client), "action": "rate", "grade": "excellent"},
    )
    assert "The rating was not saved" in answer.get_data(as_text=True)


def test_the_rating_records_the_model_version_that_was_shown(
    client: FlaskClient, site: Site
) -> None:
    scan = site.scans["png"]
    supersede(site.url, scan, "v0", "blur")  # an earlier result, poor 20
    sign_in(client, "rita")
    assert post(client, scan, action="agree", shown_version="v0") == 303
    [rating] = ratings(site, "png")
    assert (rating.model_version, rating.model_grade, rating.grade) == ("v0", "poor", "poor")
    assert post(client, scan, action="agree", shown_version="") == 303  # none: the current
    [rating] = ratings(site, "png")
    assert (rating.model_version, rating.grade, rating.defects) == ("v1", "average", ("blur",))


def test_the_main_flow_on_sqlite_and_postgresql(any_site: Site) -> None:
    client = create_app(settings_for(any_site.url)).test_client()
    assert client.get("/scans?station=US-ER-1&grade=poor").status_code == 303
    answer = sign_in(client, "rita", next_path="/scans?station=US-ER-1&grade=poor")
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    found = [int(i) for i in re.findall(r'<td><a href="/scans/(\d+)">', page)]
    assert found == [any_site.scans["gone"], any_site.scans["cine"]]
    scan = any_site.scans["cine"]
    assert "low_gain" in client.get(f"/scans/{scan}").get_data(as_text=True)
    assert client.get(f"/scans/{scan}/frames/0.png").status_code == 200
    assert post(client, scan, action="rate", grade="poor", defect=["low_gain"]) == 303
    agreement = client.get("/agreement").get_data(as_text=True)
    assert "1 rating of 1 scan by 1 reviewer" in agreement and "Reviewer rita" in agreement
    summary = client.get("/summary?by=operator").get_data(as_text=True)
    assert "op-07" in summary
    with db.session_scope(any_site.url, readonly=True) as session:
        seen = [e.action for e in reviews.recent_entries(session, user_name="rita")][::-1]
    assert seen == ["login", "view_scans", "view_scan", "view_image", "view_scans", "rate",
                    "view_agreement", "view_summary"]  # fmt: skip
