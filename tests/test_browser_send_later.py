"""Send later in a real browser (SPEC S19–S23): the recommendation, the indicator, scheduled
on the timeline, rescheduled a few seconds ahead and delivered by the worker."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engage.best_time import DEFAULT_WORKING_HOURS, is_working_day
from engage.i18n import format_local

pytestmark = pytest.mark.browser

# Contacts of Mia Berg (Europe/Berlin) in other zones; at any moment at least one of them is
# outside their working day, and the test writes to that one.
CANDIDATES = [
    ("Dorothy Vaughan", "America/Chicago", "US"),
    ("Ananya Iyer", "Asia/Kolkata", "IN"),
    ("Jürgen Müller", "Europe/Berlin", "DE"),
]


def outside_working_day() -> tuple[str, str]:
    for name, zone, country in CANDIDATES:
        local = datetime.now(ZoneInfo(zone))
        working = is_working_day(local.date(), country=country, hours=DEFAULT_WORKING_HOURS)
        if not (working and DEFAULT_WORKING_HOURS.contains(local.time())):
            return name, zone
    raise AssertionError("every candidate is at work right now")


@pytest.fixture
def demo(start_demo):
    return start_demo(public_url=False)


def test_send_later_recommends_schedules_reschedules_and_delivers(page, demo):
    name, zone = outside_working_day()
    page.set_default_timeout(20_000)
    page.goto(demo.url + "/sign-in")
    page.get_by_role("button", name="Mia Berg").click()
    page.get_by_role("link", name=name).first.click()
    page.get_by_label("Create timeline record").click()
    page.get_by_role("link", name="Email", exact=True).click()
    page.get_by_label("Subject").fill("Talk tomorrow morning?")

    later = page.get_by_role("group", name="Send later")
    later.locator("summary").click()
    # The recipient's zone is geocoded by the worker; the dialog waits for it, then explains.
    recommendation = later.locator(".engage-recommendation")
    recommendation.wait_for()
    city = zone.rsplit("/", 1)[1].replace("_", " ")
    assert city in recommendation.inner_text()
    assert "outside the recipient's working day" in recommendation.inner_text()
    prefilled = later.get_by_label("Deliver at (your time, Europe/Berlin)").input_value()
    assert prefilled  # the recommendation, in Mia's own zone
    later.get_by_role("button", name="OK").click()

    later = page.get_by_role("group", name="Send later")
    later.get_by_text("Delayed send").wait_for()
    # Shown as Mia reads times: her zone, her language, the date unless it is today.
    chosen = datetime.fromisoformat(prefilled).replace(tzinfo=ZoneInfo("Europe/Berlin"))
    assert format_local(chosen, "Europe/Berlin") in later.inner_text()
    page.get_by_role("button", name="Send").click()
    page.get_by_text("Scheduled: it goes out").wait_for()
    entry = page.locator(".engage-activity--email", has_text="Talk tomorrow morning?")
    entry.locator(".engage-badge--scheduled").wait_for()

    # Change the schedule to a few seconds from now, then watch it go out.
    entry.get_by_role("link", name="Talk tomorrow morning?").click()
    soon = datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(seconds=6)
    page.get_by_label("New time (your time)").fill(soon.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Change schedule").click()
    page.get_by_text("Rescheduled: it goes out").wait_for()
    page.get_by_role("link", name=f"Back to {name}").click()
    entry = page.locator(".engage-activity--email", has_text="Talk tomorrow morning?")
    entry.locator(".engage-badge--sent").wait_for(timeout=40_000)
