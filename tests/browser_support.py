"""Helpers shared by the browser tests (Playwright on Debian's chromium, the demo CRM served).

Fixtures live in conftest.py: ``browser``, ``page``, ``person`` (a more patient page), and
``demo`` (the demo CRM with its SMTP sink and a real worker; a module that needs another demo
defines its own ``demo`` fixture with ``start_demo``).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from tests.support import ROOT

#: Demo contacts' addresses.
MARIE = "marie.curie@lumiere.example.fr"
JURGEN = "j.mueller@isar-maschinenbau.example.de"

#: The user agent the browser presents: a person's Chrome on Linux, not headless Chrome.
PERSON_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def chromium_path() -> str:
    found = os.environ.get("ENGAGE_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RuntimeError(
            "Browser tests need Debian's chromium (apt-get install chromium); "
            "set ENGAGE_CHROMIUM to use another binary."
        )
    return found


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core on the page and return the violations of the given impacts."""
    if not AXE.exists():
        raise RuntimeError("axe-core is missing: run `npm ci` at the repository root")
    # Evaluated through the DevTools protocol rather than added as a <script>: engage's own
    # pages have a Content-Security-Policy that refuses inline scripts, as it should.
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def assert_accessible(page) -> None:
    """No serious or critical axe-core violations on the page."""
    violations = axe_violations(page)
    assert violations == [], [(v["id"], v["help"], len(v["nodes"])) for v in violations]


def sign_in(page, demo, name="Mia Berg"):
    """Sign in to the demo with the (first) user button whose name has ``name`` in it."""
    page.goto(demo.url + "/sign-in")
    page.get_by_role("button", name=name).first.click()


def open_record(page, demo, contact: str) -> None:
    """From the home page, open ``contact``'s record page (signed in)."""
    page.goto(demo.url + "/")
    page.get_by_role("link", name=contact).first.click()


def open_compose_without_js(page, demo, contact: str) -> None:
    """In a page without JavaScript: open ``contact``'s record (its timeline is drawn there)
    and its compose form."""
    open_record(page, demo, contact)
    page.get_by_label("Create timeline record").click()  # <details> opens without JS
    page.get_by_role("link", name="Email", exact=True).click()


def page_overflows(page) -> bool:
    """Whether the page scrolls sideways (wider than the viewport)."""
    return page.evaluate("() => document.scrollingElement.scrollWidth > window.innerWidth")


def open_compose(page, demo, contact: str):
    """Open ``contact``'s record and its compose panel, and wait for the editor (signed in)."""
    open_record(page, demo, contact)
    page.get_by_label("Create timeline record").click()
    page.get_by_role("link", name="Email", exact=True).click()
    page.locator("trix-editor").wait_for()


def send_followed(page, demo) -> None:
    """Send Marie Curie a followed email 'Quarterly review' and wait until it is sent."""
    open_compose(page, demo, "Marie Curie")
    write_and_send(
        page,
        to=f"Marie Curie <{MARIE}>",
        subject="Quarterly review",
        text="Shall we review the quarter next week?",
    )


def write_and_send(page, *, to: str, subject: str, text: str, timeout: int = 20_000) -> None:
    """In the open compose panel: write a followed email, Send, and wait until the timeline
    shows it sent."""
    page.get_by_label("To", exact=True).fill(to)
    page.get_by_label("Subject").fill(subject)
    page.locator("trix-editor").click()
    page.keyboard.type(text)
    page.get_by_role("group", name="Follow").get_by_text("On", exact=True).wait_for()
    page.get_by_role("button", name="Send").click()
    page.locator(".engage-activity", has_text=subject).locator(".engage-badge--sent").wait_for(
        timeout=timeout
    )
