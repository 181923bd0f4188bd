"""Who may see and do what on the review page: sign-in and sign-out, the generic error, the
rate limit, the sign-in required by every page and image (every route of the app, from its
url_map), the CSRF token required by every POST (again from the url_map), roles, redirects
that stay on the site, session cookies, expiry, and the security headers."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import db
from db import reviews
from db.models import AuditEntry, WebSession, utcnow
from tests.web.site import Site, login_token, page_token, settings_for, sign_in
from worker.web import create_app, login

# Open without signing in: the sign-in page, the probe, the stylesheet.
PUBLIC = {"login.login", "health.healthz", "static"}


def audit_rows(url: str, action: str | None = None) -> list[AuditEntry]:
    with db.session_scope(url, readonly=True) as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            query = query.where(AuditEntry.action == action)
        return list(session.scalars(query))


def every_url(app: Flask, site: Site, methods: set[str]) -> list[tuple[str, str, str]]:
    """(endpoint, method, URL) of every route of the app but the public ones."""
    values = {"scan_id": site.scans["cine"], "index": 0}
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        for method in sorted((rule.methods or set()) & methods):
            url = rule.build({k: values[k] for k in rule.arguments}, append_unknown=False)
            assert url is not None
            found.append((rule.endpoint, method, url[1]))
    return found


def test_sign_in_and_out(client: FlaskClient, site: Site) -> None:
    answer = sign_in(client, "rita")
    assert answer.status_code == 303 and answer.headers["Location"] == "/scans"
    page = client.get("/scans")
    assert page.status_code == 200 and "rita" in page.get_data(as_text=True)
    out = client.post("/logout", data={"csrf_token": page_token(client)})
    assert out.status_code == 303 and out.headers["Location"].startswith("/login")
    assert client.get("/scans").status_code == 303  # signed out: back to the sign-in
    with db.session_scope(site.url, readonly=True) as session:
        assert session.scalars(select(WebSession)).all() == []
    actions = [(e.action, e.user_name) for e in audit_rows(site.url)]
    assert ("login", "rita") in actions and ("logout", "rita") in actions


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(
    client: FlaskClient, site: Site
) -> None:
    wrong = sign_in(client, "rita", "not the password at all")
    unknown = sign_in(client, "nobody-here", "not the password at all")
    no_password = sign_in(client, "rita", "")
    for answer in (wrong, unknown, no_password):
        assert answer.status_code == 200
        assert "Wrong name or password." in answer.get_data(as_text=True)
        assert client.get_cookie("usqa_session") is None
    assert "nobody-here" not in wrong.get_data(as_text=True)
    failed = audit_rows(site.url, "login_failed")
    assert [e.user_name for e in failed] == ["rita", "nobody-here", "rita"]
    assert [e.detail for e in failed[:2]] == ["wrong password", "no such account"]
    assert all(e.client == "127.0.0.1" for e in failed)


def test_a_disabled_account_cannot_sign_in_and_its_session_ends(
    client: FlaskClient, site: Site
) -> None:
    sign_in(client, "rita")
    assert client.get("/scans").status_code == 200
    with db.session_scope(site.url) as session:
        account = reviews.set_disabled(session, "rita", True)
        reviews.end_user_sessions(session, account.id)
    assert client.get("/scans").status_code == 303
    assert "Wrong name or password." in sign_in(client, "rita").get_data(as_text=True)
    assert audit_rows(site.url, "login_failed")[-1].detail == "account disabled"


def test_the_rate_limit_refuses_after_five_failures_for_a_name(
    client: FlaskClient, site: Site
) -> None:
    assert login.MAX_FAILURES_PER_NAME == 5
    for _ in range(5):
        assert sign_in(client, "adam", "wrong password again").status_code == 200
    refused = sign_in(client, "adam")  # the right password, but too late
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.get_data(as_text=True)
    assert client.get_cookie("usqa_session") is None
    [entry] = audit_rows(site.url, "login_refused")
    assert entry.user_name == "adam" and entry.client == "127.0.0.1"
    assert sign_in(client, "rita").status_code == 303  # another name is not held up


def test_the_rate_limit_counts_failures_from_one_address(
    client: FlaskClient, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(login, "MAX_FAILURES_PER_CLIENT", 3)
    for name in ("a1", "a2", "a3"):
        sign_in(client, name, "nothing of the sort")
    assert sign_in(client, "rita").status_code == 429
    other = create_app(settings_for(site.url)).test_client()
    other.environ_base["REMOTE_ADDR"] = "10.9.8.7"
    assert sign_in(other, "rita").status_code == 303  # another address is not held up
    [entry] = audit_rows(site.url, "login_refused")
    assert entry.client == "127.0.0.1" and "3 from the address" in (entry.detail or "")


def test_the_failures_count_only_for_the_window(client: FlaskClient, site: Site) -> None:
    for _ in range(5):
        sign_in(client, "adam", "wrong password again")
    assert sign_in(client, "adam").status_code == 429
    with db.session_scope(site.url) as session:  # 16 minutes later
        for entry in session.scalars(select(AuditEntry)):
            entry.at -= timedelta(minutes=16)
    assert sign_in(client, "adam").status_code == 303


def test_every_page_and_image_needs_a_sign_in(app: Flask, site: Site) -> None:
    client = app.test_client()
    urls = every_url(app, site, {"GET"})
    assert {e for e, _, _ in urls} >= {
        "scans.index", "scans.scan_list", "scans.scan_view", "images.frame", "images.overlay",
        "summary.summary", "agreement.agreement_page", "admin.audit_trail",
    }  # fmt: skip
    for endpoint, _, url in urls:
        answer = client.get(url)
        assert answer.status_code in (302, 303), (endpoint, url, answer.status_code)
        location = urlsplit(answer.headers["Location"])
        assert location.path == "/login", (endpoint, location)
        assert parse_qs(location.query)["next"] == [url], (endpoint, location)
        assert b"US-ER-1" not in answer.data and b"PNG" not in answer.data
    for endpoint, _, url in every_url(app, site, {"POST"}):
        answer = client.post(url, data={})
        assert answer.status_code == 303 and answer.headers["Location"] == "/login", endpoint
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_after_sign_in_the_page_asked_for_is_shown(client: FlaskClient, site: Site) -> None:
    first = client.get("/scans?station=US-ER-1&grade=poor")
    page = client.get(first.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/scans?station=US-ER-1&amp;grade=poor"' in page
    answer = sign_in(client, "vera", next_path="/scans?station=US-ER-1&grade=poor")
    assert answer.headers["Location"] == "/scans?station=US-ER-1&grade=poor"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/x",
        "//evil.example/x",
        "/\\evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "/scans\r\nSet-Cookie: x=1",
        "scans",
        "/logout",
    ],
)
def test_a_next_outside_the_site_is_refused(client: FlaskClient, target: str) -> None:
    answer = sign_in(client, "vera", next_path=target)
    assert answer.status_code == 303 and answer.headers["Location"] == "/scans"
    client.post("/logout", data={"csrf_token": page_token(client)})
    form = client.get("/login", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next" value=""' in form


def test_every_post_needs_its_csrf_token(app: Flask, client: FlaskClient, site: Site) -> None:
    posts = every_url(app, site, {"POST"})
    assert {e for e, _, _ in posts} >= {"login.logout", "scans.rate"}
    sign_in(client, "adam")
    good = page_token(client)
    for endpoint, _, url in posts:
        for sent in ({}, {"csrf_token": ""}, {"csrf_token": good[:-2] + "xx"}):
            answer = client.post(url, data={**sent, "action": "agree"})
            assert answer.status_code == 400, (endpoint, sent, answer.status_code)
            assert "security token" in answer.get_data(as_text=True)
    with db.session_scope(site.url, readonly=True) as session:
        assert reviews.ratings_for_scan(session, site.scans["cine"]) == []
    assert client.get("/scans").status_code == 200  # still signed in: nothing was done
    rated = client.post(
        f"/scans/{site.scans['cine']}/rate", data={"csrf_token": good, "action": "agree"}
    )
    assert rated.status_code == 303


def test_the_sign_in_form_needs_its_own_token(app: Flask, site: Site) -> None:
    client = app.test_client()
    form = {"name": "rita", "password": site.passwords["rita"]}
    assert client.post("/login", data=form).status_code == 400  # no cookie, no field
    token = login_token(client)
    assert client.post("/login", data=form).status_code == 400  # cookie, no field
    assert client.post("/login", data={**form, "csrf_token": "1." + "a" * 43}).status_code == 400
    other = app.test_client()  # a field without its cookie (another browser's token)
    assert other.post("/login", data={**form, "csrf_token": token}).status_code == 400
    stale = f"1000000000.{'b' * 43}"  # issued in 2001
    client.set_cookie("usqa_login", stale)
    assert client.post("/login", data={**form, "csrf_token": stale}).status_code == 400
    assert audit_rows(site.url, "login") == []
    assert sign_in(client, "rita").status_code == 303


def test_a_viewer_cannot_rate_and_only_an_admin_reads_the_audit(
    client: FlaskClient, site: Site
) -> None:
    sign_in(client, "vera")
    token = page_token(client)
    scan = site.scans["cine"]
    page = client.get(f"/scans/{scan}").get_data(as_text=True)
    assert "Agree with the model" not in page and 'action="/scans/' not in page
    answer = client.post(f"/scans/{scan}/rate", data={"csrf_token": token, "action": "agree"})
    assert answer.status_code == 403
    assert "reviewer role" in answer.get_data(as_text=True)
    assert client.get("/audit").status_code == 403
    assert 'href="/audit"' not in page
    with db.session_scope(site.url, readonly=True) as session:
        assert reviews.ratings_for_scan(session, scan) == []
    client.post("/logout", data={"csrf_token": token})
    sign_in(client, "rita")
    assert client.get("/audit").status_code == 403
    client.post("/logout", data={"csrf_token": page_token(client)})
    sign_in(client, "adam")
    assert client.get("/audit").status_code == 200


def test_session_cookie_and_security_headers(site: Site) -> None:
    client = create_app(settings_for(site.url, web_insecure_cookies=False)).test_client()
    form = client.get("https://localhost/login")
    form_cookie = form.headers["Set-Cookie"]
    assert form_cookie.startswith("__Host-usqa_login=")
    assert all(p in form_cookie for p in ("Secure", "HttpOnly", "Path=/", "SameSite=Strict"))
    assert "Domain" not in form_cookie
    token = client.get_cookie("__Host-usqa_login").value  # type: ignore[union-attr]
    answer = client.post(
        "https://localhost/login",
        data={"csrf_token": token, "name": "rita", "password": site.passwords["rita"]},
    )
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("usqa_session=")
    assert all(p in cookie for p in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax"))
    assert "Expires" not in cookie and "Max-Age" not in cookie  # ends with the browser
    png = site.scans["png"]
    for path in ("/scans", f"/scans/{png}", f"/scans/{png}/frames/0.png", "/login", "/nowhere"):
        got = client.get("https://localhost" + path)
        headers = got.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "img-src 'self' data:" in csp, path
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store", path
    page = client.get("https://localhost/scans").get_data(as_text=True)
    assert "<script" not in page and "style=" not in page


def test_an_idle_or_expired_session_ends(client: FlaskClient, site: Site) -> None:
    sign_in(client, "rita")
    assert client.get("/scans").status_code == 200
    with db.session_scope(site.url) as session:  # 61 minutes without a request
        for row in session.scalars(select(WebSession)):
            row.last_seen_at -= timedelta(minutes=61)
    answer = client.get("/scans")
    assert answer.status_code == 303 and "usqa_session=;" in answer.headers["Set-Cookie"]
    sign_in(client, "rita")
    with db.session_scope(site.url) as session:  # past its 12 hours, though used
        for row in session.scalars(select(WebSession)):
            row.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/scans").status_code == 303
