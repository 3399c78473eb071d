"""The assistant in a real browser: an open card appears in an open panel without reloading,
and its Create phone call, Snooze and Dismiss work (S12, S33, S35)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engage.demo.models import db as demo_db
from engage.models import Card, utcnow
from tests.browser_support import MARIE, send_followed, sign_in

pytestmark = pytest.mark.browser

TITLE = "Marie Curie opened ‘Quarterly review’"


def test_an_open_card_appears_live_and_its_actions_work(person, demo):
    page = person
    sign_in(page, demo)
    send_followed(page, demo)

    # The rep's home page, with the assistant open and nothing in it yet.
    page.goto(demo.url + "/")
    panel = page.locator("#engage-assistant")
    panel.get_by_text("Nothing needs your attention.").wait_for()
    page.evaluate("() => { window.engageNotReloaded = true; }")
    page.wait_for_timeout(5_500)  # opens within seconds of delivery count as machine prefetches

    # Marie reads the email in the demo mailbox, in another tab.
    mailbox = page.context.new_page()
    mailbox.goto(f"{demo.url}/mailbox?recipient={MARIE}")
    mailbox.get_by_role("link", name="Quarterly review").first.click()
    mailbox.frame_locator("iframe").get_by_text("Shall we review").wait_for()
    mailbox.close()

    card = panel.locator(".engage-card", has_text=TITLE)
    card.wait_for(timeout=20_000)
    assert page.evaluate("() => window.engageNotReloaded === true")
    assert card.locator(".engage-badge--new").is_visible()
    assert panel.locator("[data-engage-unread]").get_attribute("data-engage-unread") == "1"

    # Beside Marie's record: create a phone call from the card.
    card.get_by_role("link", name="Contact: Marie Curie").click()
    panel = page.locator("#engage-assistant")
    card = panel.locator(".engage-card", has_text=TITLE)
    card.get_by_role("link", name="Create phone call").click()
    subject = panel.get_by_label("Subject")
    assert subject.input_value() == "Call Marie Curie about ‘Quarterly review’"
    assert panel.get_by_label("Phone number").input_value() == "+33 1 55 50 12 35"
    panel.get_by_label("Notes").fill("Wants to meet on Tuesday.")
    panel.get_by_role("button", name="Save phone call").click()
    call = page.locator(".engage-activity--phone_call", has_text="Call Marie Curie")
    call.wait_for()
    assert "Wants to meet on Tuesday." in call.inner_text()

    # Snooze for an hour: the card goes away.
    card.get_by_role("link", name="Snooze").click()
    panel.get_by_role("button", name="1 hour").click()
    card.wait_for(state="detached")
    # An hour later (moved in the database), it comes back by itself in the open page.
    with demo.app.app_context():
        demo_db.session.execute(sa.update(Card).values(snoozed_until=utcnow()))
        demo_db.session.commit()
    card.wait_for(timeout=15_000)

    # Dismiss: gone for good, also after a reload.
    card.get_by_role("button", name="Dismiss").click()
    card.wait_for(state="detached")
    page.reload()
    page.locator("#engage-assistant").get_by_text("Nothing needs your attention.").wait_for()
