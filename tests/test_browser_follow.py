"""Following in a real browser: Blocked and Retry follow, opens and clicks in the demo mailbox
seen per recipient in the interactions view, and a mailbox Reply shown as replied (S7–S13, S34)."""

from __future__ import annotations

import pytest

from tests.browser_support import JURGEN, MARIE, open_compose, sign_in

pytestmark = pytest.mark.browser


def test_blocked_shows_preferences_and_retry_follow_sees_the_change(person, demo):
    page = person
    sign_in(page, demo)
    open_compose(page, demo, "Émile Durand")
    follow = page.get_by_role("group", name="Follow")
    follow.get_by_text("Blocked").wait_for()
    follow.get_by_text("View preferences").click()
    preference = follow.get_by_role("link", name="Émile Durand")
    assert preference.is_visible() and follow.get_by_text("Do not allow").is_visible()
    page.get_by_label("Subject").fill("Kept while I fix the preference")

    # In another tab, the rep changes Émile's preference on his record page.
    other = page.context.new_page()
    other.goto(demo.url + preference.get_attribute("href"))
    other.get_by_role("link", name="Edit address and follow email").click()
    other.get_by_label("Allow", exact=True).check()
    other.get_by_role("button", name="Save").click()
    other.close()

    follow.get_by_role("button", name="Retry follow").click()
    follow = page.get_by_role("group", name="Follow")
    follow.get_by_text("On", exact=True).wait_for()
    assert follow.get_by_role("button", name="Don't follow").is_visible()
    assert page.get_by_label("Subject").input_value() == "Kept while I fix the preference"


def test_one_recipient_opens_and_clicks_and_the_interactions_view_shows_only_them(person, demo):
    page = person
    sign_in(page, demo)
    open_compose(page, demo, "Marie Curie")
    to = page.get_by_label("To", exact=True)
    to.fill(f"Marie Curie <{MARIE}>, Jürgen Müller <{JURGEN}>")
    page.get_by_label("Subject").fill("Followed offer")
    page.locator("trix-editor").click()
    page.keyboard.type("Offer: https://offers.example.com/q3 ")
    page.evaluate(
        """() => {
            const editor = document.querySelector('trix-editor').editor;
            editor.setSelectedRange([7, 36]);
            editor.activateAttribute('href', 'https://offers.example.com/q3');
        }"""
    )
    page.get_by_role("group", name="Follow").get_by_text("On", exact=True).wait_for()
    page.get_by_role("button", name="Send").click()
    page.locator(".engage-activity", has_text="Followed offer").locator(
        ".engage-badge--sent"
    ).wait_for(timeout=20_000)
    page.wait_for_timeout(5_500)  # opens within seconds of delivery count as machine prefetches

    # Marie reads it in the demo mailbox and clicks the link.
    page.goto(f"{demo.url}/mailbox?recipient={MARIE}")
    page.get_by_role("link", name="Followed offer").first.click()
    frame = page.frame_locator("iframe")
    frame.locator("a", has_text="offers.example.com").wait_for()
    with page.context.expect_page() as new_tab:
        frame.locator("a", has_text="offers.example.com").click()
    new_tab.value.close()

    # The rep looks at the interactions.
    page.goto(demo.url + "/")
    page.get_by_role("link", name="Marie Curie").first.click()
    page.get_by_role("link", name="Followed offer").click()
    page.get_by_role("link", name="View message interactions").click()
    for _ in range(40):
        marie = page.locator(f'tr[data-recipient="{MARIE}"]')
        if "Yes" in marie.inner_text() and "×1" in marie.inner_text():
            break
        page.wait_for_timeout(500)
        page.reload()
    marie_row = page.locator(f'tr[data-recipient="{MARIE}"]').inner_text()
    jurgen_row = page.locator(f'tr[data-recipient="{JURGEN}"]').inner_text()
    assert "Yes" in marie_row and "https://offers.example.com/q3 ×1" in marie_row
    assert "Yes" not in jurgen_row and "×" not in jurgen_row
    history = page.locator(".engage-history").inner_text()
    assert f"{MARIE}: opened" in history and f"{MARIE}: clicked" in history
    assert JURGEN not in history

    # Marie replies from the mailbox; the timeline shows it as replied.
    page.goto(f"{demo.url}/mailbox?recipient={MARIE}")
    page.get_by_role("link", name="Followed offer").first.click()
    page.get_by_label("Reply as").select_option(MARIE)
    page.get_by_role("textbox", name="Your reply").fill("Thanks, we accept!")
    page.get_by_role("button", name="Send reply").click()
    page.goto(demo.url + "/")
    page.get_by_role("link", name="Marie Curie").first.click()
    entry = page.locator(".engage-activity--email", has_text="Followed offer")
    entry.locator(".engage-badge--replied").wait_for()
    reply = page.locator(".engage-activity--reply", has_text="Followed offer")
    assert "Thanks, we accept!" in reply.inner_text()
