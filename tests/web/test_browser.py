"""The review page in a real headless Chromium (Debian's ``chromium``, driven by Playwright;
no browser is downloaded): a QA lead signs in, filters to one room, opens a poor scan, sees
its frames and defects, rates it and sees the agreement page change; the console stays
silent throughout. Signed out, every page and image leads to the sign-in; a form without its
CSRF token is refused; a viewer cannot rate; the audit trail records the views.

Chromium missing is a failure (tests/bootstrap.sh installs it, first in the README test
command and .ci/run), never a skip."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

import db
from db import reviews
from tests.helpers.browser import chromium
from tests.web.conftest import ServedSite

pytestmark = pytest.mark.integration

TIMEOUT_MS = 60_000  # generous: CI shares two cores


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A page whose console errors, page errors and failed requests are collected."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("requestfailed", lambda req: self.problems.append(f"failed: {req.url}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def sign_in(self, base: str, name: str, password: str) -> None:
        self.page.goto(f"{base}/login")
        self.page.fill("#name", name)
        self.page.fill("#password", password)
        self.page.click("form button[type=submit]")
        self.page.wait_for_url(re.compile(r"/scans"))

    def close(self) -> None:
        self.context.close()


def _path(page: Page) -> str:
    parsed = urlparse(page.url)
    return parsed.path + (f"?{parsed.query}" if parsed.query else "")


def test_qa_lead_finds_a_poor_scan_of_one_room_rates_it_and_sees_agreement(
    browser: Browser, served_site: ServedSite
) -> None:
    base, site = served_site.base_url, served_site.site
    cine = site.scans["cine"]
    lead = Watched(browser)
    page = lead.page

    # Signed out: the scan page sends to the sign-in, which brings back to it afterwards.
    page.goto(f"{base}/scans/{cine}")
    assert _path(page).startswith("/login?next=")
    page.fill("#name", "rita")
    page.fill("#password", site.passwords["rita"])
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(rf"/scans/{cine}$"))

    # The agreement page before any rating.
    page.goto(f"{base}/agreement")
    assert "No ratings yet" in page.inner_text("main")

    # Filter to one room and its poor scans.
    page.click("nav >> text=Scans")
    page.select_option("#station", "US-ER-1")
    page.select_option("#grade", "poor")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"station=US-ER-1"))
    listed = page.locator("table tbody tr")
    rows = [listed.nth(i).inner_text() for i in range(listed.count())]
    assert rows, "no scans listed for US-ER-1, poor"
    assert all("US-ER-1" in row and "poor" in row for row in rows), rows
    assert all("US-RAD-3" not in row for row in rows)

    # Open the poor cine: its frames decode in the browser, its defects say why.
    page.click(f"table tbody a[href='/scans/{cine}']")
    page.wait_for_url(re.compile(rf"/scans/{cine}$"))
    main = page.inner_text("main")
    assert "low_gain" in main and "poor" in main
    first = page.locator("img").first
    first.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=first.element_handle()
    )

    # Rate it: poor, with the defects the reviewer sees.
    page.check("input[name=grade][value=poor]")
    page.check("input[name=defect][value=low_gain]")
    page.check("input[name=defect][value=shadowing]")
    page.fill("textarea[name=comment]", "Gain far too low; repeat the view")
    page.click("button[name=action][value=rate]")
    page.wait_for_url(re.compile(rf"/scans/{cine}\?saved=1"))
    assert page.locator(".flash").inner_text().strip() == "Rating saved."
    assert "Gain far too low" in page.inner_text("#ratings")

    # The agreement page now counts it.
    page.click("nav >> text=Agreement")
    page.wait_for_url(re.compile(r"/agreement"))
    text = page.inner_text("main")
    assert "No ratings yet" not in text
    assert "1 rating of 1 scan by 1 reviewer" in text
    assert "shadowing" in text  # a defect the reviewer saw and the model did not name

    assert lead.problems == [], lead.problems
    lead.close()

    with db.session_scope(site.url) as session:
        trail = {(e.action, e.scan_id) for e in reviews.recent_entries(session, user_name="rita")}
        (rating,) = reviews.ratings_for_scan(session, cine)
    assert {("login", None), ("view_scan", cine), ("view_image", cine), ("rate", cine)} <= trail
    assert ("view_scans", None) in trail and ("view_agreement", None) in trail
    assert (rating.reviewer, rating.grade, rating.defects) == (
        "rita",
        "poor",
        ("low_gain", "shadowing"),
    )


def test_signed_out_pages_and_images_lead_to_the_sign_in(
    browser: Browser, served_site: ServedSite
) -> None:
    base, scans = served_site.base_url, served_site.site.scans
    visitor = Watched(browser)
    for path in (
        "/",
        "/scans?station=US-ER-1",
        f"/scans/{scans['cine']}",
        f"/scans/{scans['cine']}/frames/0.png",
        f"/scans/{scans['png']}/overlay.png",
        "/summary",
        "/agreement",
        "/audit",
    ):
        visitor.page.goto(base + path)
        assert _path(visitor.page).startswith("/login"), (path, visitor.page.url)
        assert visitor.page.locator("#password").is_visible(), path
    visitor.close()


def test_forms_need_their_token_and_viewers_cannot_rate(
    browser: Browser, served_site: ServedSite
) -> None:
    base, site = served_site.base_url, served_site.site
    png = site.scans["png"]
    reviewer = Watched(browser)
    reviewer.sign_in(base, "riko", site.passwords["riko"])
    forged = reviewer.page.request.post(
        f"{base}/scans/{png}/rate", form={"action": "rate", "grade": "good"}
    )
    assert forged.status == 400
    reviewer.close()

    viewer = Watched(browser)
    viewer.sign_in(base, "vera", site.passwords["vera"])
    viewer.page.goto(f"{base}/scans/{png}")
    assert viewer.page.locator("form.rate").count() == 0, "a viewer is offered the rating form"
    token = viewer.page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    refused = viewer.page.request.post(
        f"{base}/scans/{png}/rate", form={"csrf_token": token, "action": "agree"}
    )
    assert refused.status == 403
    assert viewer.problems == [], viewer.problems
    viewer.close()

    with db.session_scope(site.url) as session:
        assert reviews.ratings_for_scan(session, png) == []
        assert any(e.scan_id == png for e in reviews.recent_entries(session, user_name="vera"))
