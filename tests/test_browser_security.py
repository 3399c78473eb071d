"""engage's own pages under its Content-Security-Policy, in a real browser: nothing refused.

The compose panel with Trix, the timeline with its htmx swaps, the assistant, the templates
editor, an email's page and the settings are driven in the demo while every CSP violation is collected, from the console and from
``securitypolicyviolation`` events. And a page of another origin cannot frame engage's pages.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from engage.demo.models import Contact, db
from engage.models import Email

pytestmark = pytest.mark.browser

PREFIX = "/engage"

#: Reports every violation the page sees to the test, from before its first script runs
#: (Playwright's init scripts and bindings are not subject to the page's policy).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportViolation(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"}: ${event.sample}`
  );
});
"""


@pytest.fixture
def demo(start_demo):
    return start_demo(worker=False)


class Watch:
    """The CSP complaints of a page, across its navigations: console messages and events."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.found: list[str] = []
        page.expose_function("reportViolation", self._report)
        page.add_init_script(REPORT_VIOLATIONS)
        page.on("console", self._console)

    def _report(self, text: str) -> None:
        self.found.append(text)

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.found.append(text)

    def violations(self, settle_ms: int = 300) -> list[str]:
        self.page.wait_for_timeout(settle_ms)  # reports arrive asynchronously
        return list(self.found)


def contact_id(app: Flask, last_name: str) -> int:
    with app.app_context():
        found = db.session.scalar(sa.select(Contact.id).where(Contact.last_name == last_name))
        db.session.remove()
    assert found is not None
    return found


def latest_email_id(app: Flask) -> int:
    with app.app_context():
        found = db.session.scalar(sa.select(sa.func.max(Email.id)))
        db.session.remove()
    assert found is not None
    return found


def sign_in(page: Any, demo: Any, user: str) -> None:
    page.goto(demo.url + "/sign-in")
    page.get_by_role("button", name=user).click()


def assert_under_engages_policy(response: Any) -> None:
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self' 'nonce-" in policy


def assert_styles_applied(page: Any) -> None:
    # Trix's own <style> tags (its elements' base styles) and htmx's indicator style got in:
    # the link dialog of Trix's toolbar is hidden and the editor is a block.
    styles = page.evaluate(
        """() => ({
          inline: [...document.head.querySelectorAll("style")].map((s) => s.nonce !== ""),
          editor: getComputedStyle(document.querySelector("trix-editor")).display,
          dialog: getComputedStyle(document.querySelector("[data-trix-dialog]")).display,
        })"""
    )
    assert styles == {"inline": [True, True, True], "editor": "block", "dialog": "none"}


def test_engages_pages_raise_no_csp_violation_while_used(page, demo):
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: dialog.accept())
    watch = Watch(page)
    marie = contact_id(demo.app, "Curie")

    # The timeline as a page of engage's: htmx loads the compose panel with Trix into it.
    sign_in(page, demo, "Mia Berg")
    response = page.goto(f"{demo.url}{PREFIX}/timeline/contact/{marie}")
    assert_under_engages_policy(response)
    page.get_by_label("Create timeline record").click()
    page.get_by_role("link", name="Email", exact=True).click()
    page.get_by_label("Subject").fill("Under a strict policy")
    editor = page.locator("trix-editor")
    editor.click()
    page.keyboard.type("Hello Marie, ")
    page.locator("trix-toolbar [data-trix-attribute='bold']").click()
    page.keyboard.type("in bold")
    assert editor.locator("strong").inner_text() == "in bold"
    assert_styles_applied(page)
    # Saving swaps the panel and the timeline (htmx), with its indicator on the way.
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator(".engage-timeline").get_by_text("Under a strict policy").first.wait_for()
    assert watch.violations() == []

    # The compose panel as a page of its own.
    response = page.goto(f"{demo.url}{PREFIX}/compose?regarding=contact:{marie}")
    assert_under_engages_policy(response)
    page.locator("trix-editor").click()
    page.keyboard.type("A second draft")
    assert_styles_applied(page)
    assert watch.violations() == []

    # engage's start page and the saved draft's own page.
    for path in ("/", f"/emails/{latest_email_id(demo.app)}"):
        response = page.goto(f"{demo.url}{PREFIX}{path}")
        assert response.ok
        assert_under_engages_policy(response)
        page.wait_for_load_state("networkidle")
        assert watch.violations() == [], path

    # The assistant, which polls for its cards with htmx.
    response = page.goto(f"{demo.url}{PREFIX}/assistant")
    assert_under_engages_policy(response)
    page.wait_for_timeout(3_500)  # one poll
    assert watch.violations() == []

    # The templates editor, as a sales manager: Trix and the field picker.
    sign_in(page, demo, "Lena Vogel")
    response = page.goto(f"{demo.url}{PREFIX}/templates")
    assert_under_engages_policy(response)
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Name").fill("Strict")
    page.get_by_label("Subject").fill("Hello")
    page.locator("trix-editor").click()
    page.keyboard.type("Dear ")
    page.get_by_role("button", name="Recipient's first name").click()
    assert_styles_applied(page)
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Template “Strict” saved.").wait_for()
    assert watch.violations() == []

    # The organisation settings, as an admin.
    sign_in(page, demo, "Alex Kim")
    response = page.goto(f"{demo.url}{PREFIX}/settings")
    assert_under_engages_policy(response)
    assert watch.violations() == []

    # The watch does see a violation when there is one: an inline style without the nonce.
    page.evaluate(
        """() => {
          const style = document.createElement("style");
          style.textContent = "body { color: red; }";
          document.head.append(style);
        }"""
    )
    assert any("style-src" in v for v in watch.violations(1_000))


def test_a_page_of_another_origin_cannot_frame_engages_pages(page, demo, serve):
    sign_in(page, demo, "Mia Berg")
    target = f"{demo.url}{PREFIX}/"
    other = Flask("another_origin")

    @other.get("/")
    def framing() -> str:
        return f'<!doctype html><title>Other</title><iframe src="{target}"></iframe>'

    elsewhere = serve(other)
    assert elsewhere.url != demo.url  # another port: another origin
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
    page.goto(elsewhere.url + "/")
    page.wait_for_load_state("load")
    (frame,) = page.main_frame.child_frames
    # Chromium puts its error page in the frame, and says why in the console.
    assert frame.url.startswith("chrome-error://")
    assert frame.get_by_text("Email engagement").count() == 0
    assert any("frame-ancestors 'self'" in text for text in refused), refused

    # The app's own origin may: the same page framed from engage's own page loads.
    page.goto(f"{demo.url}{PREFIX}/offline")
    page.evaluate(
        f"""() => new Promise((done) => {{
          const frame = document.createElement("iframe");
          frame.src = "{target}";
          frame.onload = done;
          document.body.append(frame);
        }})"""
    )
    (frame,) = page.main_frame.child_frames
    assert frame.url == target
    assert frame.locator("main").count() == 1
