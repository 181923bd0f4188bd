"""Behind the reverse proxy: the single sign-on header is honoured only from the trusted
proxies (and only for an enabled account), the forwarded client address is believed only
from them, the password form can be switched off, and the settings refuse a header without
the proxies it may come from."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

import db
from db import reviews
from db.models import AuditEntry
from tests.web.site import Site, login_token, page_token, settings_for
from worker.errors import ConfigError
from worker.web import create_app

HEADER = "X-Remote-User"
PROXY = "10.20.0.5"


def sso_client(site: Site, peer: str, **overrides: Any) -> FlaskClient:
    settings = settings_for(
        site.url,
        web_trusted_user_header=HEADER,
        web_trusted_proxies=("10.20.0.0/24", "fd00::1"),
        **overrides,
    )
    client = create_app(settings).test_client()
    client.environ_base["REMOTE_ADDR"] = peer
    return client


def entries(site: Site, action: str) -> list[AuditEntry]:
    with db.session_scope(site.url, readonly=True) as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def test_the_header_signs_in_from_a_trusted_proxy(site: Site) -> None:
    client = sso_client(site, PROXY)
    answer = client.get("/scans", headers={HEADER: "rita", "X-Forwarded-For": "172.16.4.9"})
    assert answer.status_code == 200 and "rita · reviewer" in answer.get_data(as_text=True)
    assert "usqa_session=" in answer.headers["Set-Cookie"]
    for _ in range(2):  # the same account again: the same session, no new sign-in
        assert client.get("/summary", headers={HEADER: "rita"}).status_code == 200
    [login] = entries(site, "login")
    assert (login.user_name, login.client) == ("rita", "172.16.4.9")
    assert login.detail == "single sign-on (trusted proxy header)"
    token = page_token(client)  # forms carry the session's token in this mode too
    rated = client.post(
        f"/scans/{site.scans['cine']}/rate",
        data={"csrf_token": token, "action": "agree"},
        headers={HEADER: "rita"},
    )
    assert rated.status_code == 303
    assert client.post(
        f"/scans/{site.scans['cine']}/rate", data={"action": "agree"}, headers={HEADER: "rita"}
    ).status_code == 400  # fmt: skip


def test_the_header_is_ignored_from_any_other_peer(site: Site) -> None:
    for peer in ("10.20.1.5", "127.0.0.1", "fd00::2"):
        client = sso_client(site, peer)
        answer = client.get("/scans", headers={HEADER: "adam", "X-Forwarded-For": PROXY})
        assert answer.status_code == 303 and answer.headers["Location"].startswith("/login")
    assert entries(site, "login") == []
    client = sso_client(site, "203.0.113.7")  # a password sign-in from there still works
    form = {"csrf_token": login_token(client), "name": "vera", "password": site.passwords["vera"]}
    answer = client.post("/login", data=form, headers={"X-Forwarded-For": "10.20.0.9"})
    assert answer.status_code == 303
    [login] = entries(site, "login")
    assert (login.user_name, login.client, login.detail) == ("vera", "203.0.113.7", "password")
    ipv6 = sso_client(site, "fd00::1")
    assert ipv6.get("/scans", headers={HEADER: "adam"}).status_code == 200


def test_an_unknown_or_disabled_account_in_the_header_is_refused(site: Site) -> None:
    with db.session_scope(site.url) as session:
        reviews.set_disabled(session, "riko", True)
    client = sso_client(site, PROXY)
    for name in ("stranger", "riko"):
        answer = client.get("/scans", headers={HEADER: name})
        assert answer.status_code == 403
        assert "has no enabled account" in answer.get_data(as_text=True)
    details = [(e.user_name, e.detail) for e in entries(site, "login_failed")]
    assert details == [("stranger", "single sign-on: no such account"),
                       ("riko", "single sign-on: account disabled")]  # fmt: skip


def test_another_name_in_the_header_replaces_the_session(site: Site) -> None:
    client = sso_client(site, PROXY)
    assert "rita · reviewer" in client.get("/scans", headers={HEADER: "rita"}).get_data(
        as_text=True
    )
    page = client.get("/scans", headers={HEADER: "adam"}).get_data(as_text=True)
    assert "adam · admin" in page
    assert [e.user_name for e in entries(site, "login")] == ["rita", "adam"]
    assert client.get("/audit", headers={HEADER: "adam"}).status_code == 200


def test_with_the_password_form_off_only_the_header_signs_in(site: Site) -> None:
    client = sso_client(site, PROXY, web_login_form=False)
    form = client.get("/login").get_data(as_text=True)
    assert 'type="password"' not in form and "single sign-on" in form
    cookie = client.get_cookie("usqa_login")
    answer = client.post(
        "/login",
        data={"csrf_token": cookie.value if cookie else "", "name": "rita",
              "password": site.passwords["rita"]},
    )  # fmt: skip
    assert answer.status_code == 403 and entries(site, "login") == []
    assert client.get("/scans", headers={HEADER: "rita"}).status_code == 200
    assert client.get("/scans").status_code == 303  # the session alone is not enough


def test_the_settings_need_the_proxies_for_the_header(site: Site) -> None:
    with pytest.raises(ConfigError, match="needs USQA_WEB_TRUSTED_PROXIES"):
        settings_for(site.url, web_trusted_user_header=HEADER)
    with pytest.raises(ConfigError, match="not an address or network"):
        settings_for(site.url, web_trusted_proxies=("10.0.0.0/33",))
    with pytest.raises(ConfigError, match="header name"):
        settings_for(site.url, web_trusted_user_header="X Remote", web_trusted_proxies=(PROXY,))
    with pytest.raises(ConfigError, match="no way to sign in"):
        settings_for(site.url, web_login_form=False)
    from worker.settings import load_settings

    env = {"USQA_WEB_TRUSTED_USER_HEADER": "", "USQA_WEB_TRUSTED_PROXIES": "",
           "USQA_DATABASE_URL": site.url}  # fmt: skip
    assert load_settings(environ=env).web_trusted_user_header is None  # empty: unset
    env.update(USQA_WEB_TRUSTED_USER_HEADER=HEADER, USQA_WEB_TRUSTED_PROXIES="10.0.0.1, ::1")
    assert load_settings(environ=env).web_trusted_proxies == ("10.0.0.1", "::1")
