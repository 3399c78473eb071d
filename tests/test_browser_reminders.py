"""A follow-up reminder in a real browser (S25–S28, S33, S35): set a few seconds ahead on a
followed email nobody opens, it fires into the open assistant panel as a high-priority card,
comes back after a snooze, and is dismissed."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.browser_support import send_followed, sign_in

pytestmark = pytest.mark.browser

BERLIN = ZoneInfo("Europe/Berlin")  # Mia Berg's zone, from her profile


def seconds_ahead(seconds: int) -> str:
    return (datetime.now(BERLIN) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_not_opened_reminder_fires_live_comes_back_after_a_snooze_and_is_dismissed(person, demo):
    page = person
    page.set_default_timeout(20_000)
    sign_in(page, demo)
    send_followed(page, demo)

    page.locator(".engage-activity--email", has_text="Quarterly review").get_by_role(
        "link", name="Quarterly review"
    ).click()
    reminder = page.get_by_role("group", name="Set reminder")
    reminder.locator("summary").click()
    reminder.get_by_label("Title (shown when it fires)").fill("Chase Marie about the review")
    reminder.get_by_label("Remind me").select_option("not_opened")
    reminder.get_by_label("Remind by (your time, Europe/Berlin)").fill(seconds_ahead(8))
    reminder.get_by_role("button", name="OK").click()
    status = page.locator("[data-engage-reminder-state]")
    status.wait_for()
    assert "Chase Marie about the review" in status.inner_text()

    # The assistant on the home page, open while the reminder comes due (nobody opens it).
    page.goto(demo.url + "/")
    panel = page.locator("#engage-assistant")
    page.evaluate("() => { window.engageNotReloaded = true; }")
    card = panel.locator(".engage-card", has_text="Chase Marie about the review")
    card.wait_for(timeout=40_000)
    assert "engage-card--high" in card.get_attribute("class")
    assert page.evaluate("() => window.engageNotReloaded === true")

    # Snooze until a few seconds from now: it goes, then comes back by itself.
    card.get_by_role("link", name="Snooze").click()
    panel.get_by_label("Or until (your time, Europe/Berlin)").fill(seconds_ahead(6))
    panel.get_by_role("button", name="Snooze until then").click()
    card.wait_for(state="detached")
    card.wait_for(timeout=30_000)

    card.get_by_role("button", name="Dismiss").click()
    card.wait_for(state="detached")
    page.reload()
    assert page.locator(".engage-card", has_text="Chase Marie about the review").count() == 0
