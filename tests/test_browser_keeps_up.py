"""A UI that keeps up (issue 15), in a real browser: Follow and Send later follow the recipients
as they change, Apply template asks and can be undone, dialogs close after OK, the keyboard gets
into the compose panel and out again, timeline badges and cards change live with Undo, nothing
overflows at 1280 or 390 px, and without JavaScript the timeline shows and typed names resolve."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.browser_support import (
    MARIE,
    assert_accessible,
    open_compose,
    open_compose_without_js,
    open_record,
    page_overflows,
    send_followed,
    sign_in,
    write_and_send,
)

pytestmark = pytest.mark.browser

LONG = "a.rather.long.recipient.address.for.testing.overflow@a-very-long-subdomain.example.com"


def _follow(page):
    return page.get_by_role("group", name="Follow")


def test_follow_and_send_later_keep_up_with_the_recipients(person, demo):
    page = person
    sign_in(page, demo)
    open_compose(page, demo, "Marie Curie")
    _follow(page).get_by_text("On", exact=True).wait_for()
    later = page.get_by_role("group", name="Send later")
    later.locator("summary").click()
    later.locator(".engage-recommendation").wait_for(timeout=20_000)

    # Émile does not allow following: picked in Cc, Follow says Blocked at once, unsaved.
    cc = page.get_by_label("Cc", exact=True)
    cc.fill("Émile")
    page.get_by_role("option", name="Émile Durand").click()
    _follow(page).get_by_text("Blocked").wait_for()
    # Send later now works out one time for both (S40), listing each recipient.
    group = page.get_by_role("group", name="Send later").locator(".engage-group-time")
    group.wait_for(timeout=20_000)
    group.get_by_text("Durand").first.wait_for()
    assert_accessible(page)

    # Cc emptied again: Follow is back on, and the recommendation is Marie's alone again.
    cc.fill("")
    cc.press("Tab")
    _follow(page).get_by_text("On", exact=True).wait_for()
    page.wait_for_function("() => !document.querySelector('.engage-group-time')")

    # A draft that Émile blocks is saved, and the timeline does not call it followed.
    cc.fill("Émile Durand <emile.durand@lumiere.example.fr>")
    cc.press("Tab")
    _follow(page).get_by_text("Blocked").wait_for()
    page.get_by_label("Subject").fill("Blocked draft")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Draft saved.").wait_for()
    entry = page.locator(".engage-activity", has_text="Blocked draft")
    entry.wait_for()
    assert entry.get_by_text("Followed", exact=True).count() == 0


def test_apply_template_asks_before_replacing_text_and_undo_brings_it_back(person, demo):
    page = person
    sign_in(page, demo)
    open_compose(page, demo, "Marie Curie")
    page.get_by_label("Subject").fill("My own words")
    page.locator("trix-editor").click()
    page.keyboard.type("Dear Marie, my own text.")
    page.get_by_text("Insert template").click()
    page.locator('input[name="template_choice"]').first.check()
    asked: list[str] = []

    def answer(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.get_by_role("button", name="Apply template").click()
    page.get_by_text("applied. Edit the text").wait_for()
    assert asked and "Replace the subject and the text" in asked[0]
    assert page.get_by_label("Subject").input_value() != "My own words"

    page.get_by_role("button", name="Undo: bring back my subject and text").click()
    page.get_by_text("Template removed: your subject and text are back.").wait_for()
    assert page.get_by_label("Subject").input_value() == "My own words"
    assert "Dear Marie, my own text." in page.locator("trix-editor").inner_text()
    assert_accessible(page)


def test_dialogs_close_after_ok_and_remove_delay_only_removes_it(person, demo):
    page = person
    sign_in(page, demo)
    open_compose(page, demo, "Marie Curie")
    page.get_by_label("Subject").fill("Next week")
    later = page.get_by_role("group", name="Send later")
    # Opening the dialog redraws it for the recipients typed so far; the time is typed into
    # that redraw, as a rep who reads the recommendation first does. (A time typed while the
    # redraw is still on its way is lost to it: a known race, not what this test is about.)
    with page.expect_response(lambda r: r.url.endswith("/compose/send-later")):
        later.locator("summary").click()
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-settling')")
    later = page.get_by_role("group", name="Send later")
    when = (datetime.now() + timedelta(days=3)).replace(hour=10, minute=0)
    later.locator('input[name="send_at_local"]').fill(when.strftime("%Y-%m-%dT%H:%M"))
    later.get_by_role("button", name="OK").click()
    later = page.get_by_role("group", name="Send later")
    later.get_by_text("Delayed send").wait_for()
    assert later.locator("details").get_attribute("open") is None
    remove = later.get_by_role("button", name="Remove delay")
    assert remove.is_visible() and "primary" not in (remove.get_attribute("class") or "")

    reminder = page.get_by_role("group", name="Set reminder")
    reminder.locator("summary").click()
    reminder.get_by_label("Title (shown when it fires)").fill("Chase Marie")
    at = (datetime.now() + timedelta(days=5)).replace(hour=9, minute=0, second=0)
    reminder.locator('input[name="reminder_at_local"]').fill(at.strftime("%Y-%m-%dT%H:%M:%S"))
    reminder.get_by_role("button", name="OK").click()
    reminder = page.get_by_role("group", name="Set reminder")
    reminder.get_by_text("Chase Marie").wait_for()
    assert reminder.locator("details").get_attribute("open") is None
    panel = page.locator(".engage-compose")
    assert panel.bounding_box()["height"] < 2_000

    page.get_by_role("group", name="Send later").get_by_role("button", name="Remove delay").click()
    page.get_by_text("Sent as soon as you press Send.").wait_for()
    assert page.get_by_label("Subject").input_value() == "Next week"
    assert page.locator(".engage-activity", has_text="Next week").count() == 0  # nothing sent


def test_the_keyboard_gets_into_the_panel_and_escape_closes_it(person, demo):
    page = person
    sign_in(page, demo)
    open_record(page, demo, "Marie Curie")
    plus = page.get_by_label("Create timeline record")
    plus.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.locator("trix-editor").wait_for()
    page.wait_for_function("() => document.activeElement && document.activeElement.name === 'to'")

    page.keyboard.press("Escape")
    page.locator(".engage-compose").wait_for(state="detached")
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.matches('summary.engage-add')"
    )

    # With something typed, Escape asks first; saying no keeps the panel and the text.
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.locator("trix-editor").wait_for()
    page.get_by_label("Subject").fill("Half written")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.keyboard.press("Escape")
    page.wait_for_timeout(300)
    assert page.get_by_label("Subject").input_value() == "Half written"
    # Once saved, Escape closes without asking (an unexpected question would be dismissed
    # and leave the panel open).
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Draft saved.").wait_for()
    page.get_by_label("Subject").focus()
    page.keyboard.press("Escape")
    page.locator(".engage-compose").wait_for(state="detached")


def test_badges_change_live_and_cards_offer_undo(person, start_demo):
    demo = start_demo(ENGAGE_TIMELINE_POLL_SECONDS=1)
    page = person
    sign_in(page, demo)
    send_followed(page, demo)
    page.evaluate("() => { window.engageNotReloaded = true; }")
    page.wait_for_timeout(5_500)  # opens within seconds of delivery count as machine prefetches

    mailbox = page.context.new_page()
    mailbox.goto(f"{demo.url}/mailbox?recipient={MARIE}")
    mailbox.get_by_role("link", name="Quarterly review").first.click()
    mailbox.frame_locator("iframe").get_by_text("Shall we review").wait_for()
    mailbox.close()

    entry = page.locator(".engage-activity", has_text="Quarterly review")
    entry.locator(".engage-badge--opened").wait_for(timeout=20_000)
    assert page.evaluate("() => window.engageNotReloaded === true")

    panel = page.locator("#engage-assistant")
    card = panel.locator(".engage-card", has_text="Quarterly review")
    card.wait_for(timeout=20_000)
    card.get_by_role("button", name="Dismiss").click()
    panel.get_by_text("Dismissed “").wait_for()
    assert card.count() == 0
    panel.get_by_role("button", name="Undo").click()
    panel.get_by_text("is back in your cards.").wait_for()
    card.wait_for()

    card.get_by_role("link", name="Snooze").click()
    panel.get_by_role("button", name="1 hour").click()
    panel.get_by_text("Snoozed “").wait_for()
    assert_accessible(page)
    panel.get_by_role("button", name="Undo").click()
    card.wait_for()


def test_nothing_overflows_at_1280_or_390_px(person, demo):
    page = person
    sign_in(page, demo)
    open_compose(page, demo, "Marie Curie")
    write_and_send(
        page, to=f"Marie Curie <{MARIE}>, {LONG}", subject="Wide table", text="Hello both."
    )
    page.get_by_role("link", name="Wide table").click()
    page.get_by_text("Sent", exact=True).first.wait_for()
    assert page.locator("[data-engage-sent-at]").is_visible()
    assert_accessible(page)
    assert (
        page.locator(".engage-parties li").first.evaluate(
            "li => getComputedStyle(li.parentElement).listStyleType"
        )
        == "none"
    )
    page.get_by_role("link", name="View message interactions").click()
    table = page.locator(".engage-interactions table")
    panel = page.locator(".engage-interactions")
    assert table.bounding_box()["x"] + table.bounding_box()["width"] <= (
        panel.bounding_box()["x"] + panel.bounding_box()["width"] + 1
    )
    assert not page_overflows(page)
    assert_accessible(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert not page_overflows(page)
    assert_accessible(page)

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(demo.url + "/")
    overlaps = page.evaluate(
        """() => [...document.querySelectorAll('.demo-columns > section')].flatMap(section => {
            const right = section.getBoundingClientRect().right;
            return [...section.querySelectorAll('li')]
                .filter(li => li.scrollWidth > li.clientWidth + 1
                              || li.getBoundingClientRect().right > right + 1)
                .map(li => li.textContent.trim());
        })"""
    )
    assert overlaps == []


def test_without_javascript_the_timeline_shows_and_a_typed_name_is_found(page_without_js, demo):
    page = page_without_js
    sign_in(page, demo)
    open_record(page, demo, "Marie Curie")
    assert "Loading the timeline" not in page.content()
    page.get_by_role("heading", name="Timeline").wait_for()
    page.get_by_text("No activities yet.").wait_for()
    open_compose_without_js(page, demo, "Marie Curie")
    page.get_by_label("To", exact=True).fill("Jürgen Müller, Nobody Known")
    page.get_by_label("Subject").fill("Found by name")
    page.get_by_label("Body").fill("Hello Jürgen.")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Not a valid email address: Nobody Known").wait_for()
    to = page.get_by_label("To", exact=True)
    assert "j.mueller@isar-maschinenbau.example.de" in to.input_value()
    assert "Nobody Known" in to.input_value()
    assert page.get_by_label("Body").input_value() == "Hello Jürgen."
    to.fill("Jürgen Müller")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Draft saved.").wait_for()
    assert (
        "j.mueller@isar-maschinenbau.example.de"
        in page.get_by_label("To", exact=True).input_value()
    )
