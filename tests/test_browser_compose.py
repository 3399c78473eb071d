"""The first path a rep walks, in a real browser: compose, save, reopen, send, read (S1–S6)."""

from __future__ import annotations

import re

import pytest

from tests.browser_support import JURGEN, MARIE, open_compose_without_js, open_record, sign_in

pytestmark = pytest.mark.browser

ANANYA = "ananya.iyer@ganga-software.example.in"


@pytest.fixture
def demo(start_demo):
    return start_demo(public_url=False)


def open_contact(page, demo, user: str, contact: str) -> None:
    sign_in(page, demo, user)
    open_record(page, demo, contact)
    page.get_by_role("region", name="Timeline").wait_for()


def test_compose_save_reopen_send_and_read_in_the_mailbox(page, demo):
    open_contact(page, demo, "Mia Berg", "Marie Curie")
    page.get_by_label("Create timeline record").click()
    page.get_by_role("link", name="Email", exact=True).click()

    to = page.get_by_label("To", exact=True)
    assert MARIE in to.input_value()  # the record it was opened from (S1)
    to.click()
    to.press("End")
    to.press_sequentially(", Jürg", delay=40)
    page.get_by_role("option", name=re.compile("Jürgen Müller")).wait_for()
    to.press("ArrowDown")
    to.press("Enter")
    assert JURGEN in to.input_value()
    page.get_by_label("Cc", exact=True).fill(ANANYA)
    page.get_by_label("Subject").fill("Our offer for Lumière")

    editor = page.locator("trix-editor")
    editor.click()
    page.keyboard.type("Please read the offer here")
    # Select "here" with the keyboard; Trix updates its selection asynchronously, so each key
    # press is checked before the next.
    selected = "() => { const r = document.querySelector('trix-editor').editor.getSelectedRange(); return r[1] - r[0]; }"
    page.wait_for_function(
        "() => document.querySelector('trix-editor').editor.getSelectedRange()[0] === 26"
    )
    for n in range(1, 5):
        page.keyboard.press("Shift+ArrowLeft")
        page.wait_for_function(f"() => ({selected})() === {n}")
    page.keyboard.press("Control+k")
    url_input = page.locator("input[name=href]")
    url_input.wait_for()
    url_input.fill("https://offers.example.com/lumiere")
    url_input.press("Enter")
    assert editor.locator("a[href='https://offers.example.com/lumiere']").inner_text() == "here"

    page.get_by_role("button", name="Save").click()
    page.get_by_text("Draft saved.").wait_for()
    timeline = page.get_by_role("region", name="Timeline")
    draft_link = timeline.get_by_role("link", name="Our offer for Lumière")
    draft_link.wait_for()

    page.reload()  # come back later and finish it
    page.get_by_role("region", name="Timeline").get_by_role(
        "link", name="Our offer for Lumière"
    ).click()
    page.locator("trix-editor a[href='https://offers.example.com/lumiere']").wait_for()
    assert JURGEN in page.get_by_label("To", exact=True).input_value()
    assert page.get_by_label("Cc", exact=True).input_value() == ANANYA

    page.get_by_role("button", name="Send").click()
    page.get_by_text(re.compile(r"Sending to 3 recipient")).wait_for()
    sent = page.locator(".engage-activity", has_text="Our offer for Lumière").locator(
        ".engage-badge--sent"
    )
    sent.wait_for(timeout=20_000)  # the worker delivered; the entry updated itself

    # The Cc'd record's timeline shows it too (S2).
    page.goto(demo.url + "/")
    page.get_by_role("link", name="Ananya Iyer").first.click()
    page.locator(".engage-activity", has_text="Our offer for Lumière").locator(
        ".engage-badge--sent"
    ).wait_for()

    page.goto(demo.url + "/mailbox")
    rows = page.get_by_role("link", name="Our offer for Lumière")
    assert rows.count() == 3
    page.goto(demo.url + "/mailbox?recipient=" + ANANYA)
    page.get_by_role("link", name="Our offer for Lumière").first.click()
    frame = page.frame_locator("iframe")
    assert (
        frame.locator("a", has_text="here").get_attribute("href")
        == "https://offers.example.com/lumiere"
    )


def test_the_same_path_works_with_javascript_turned_off(page_without_js, demo):
    page = page_without_js
    sign_in(page, demo)
    open_compose_without_js(page, demo, "Marie Curie")
    page.get_by_label("Cc", exact=True).fill("not an address")
    page.get_by_label("Subject").fill("Plain form")
    page.get_by_label("Body").fill("Hello Marie,\n\nno JavaScript here.")
    page.get_by_role("button", name="Save").click()
    assert "Not a valid email address: not an address" in page.content()
    assert page.get_by_label("Body").input_value() == "Hello Marie,\n\nno JavaScript here."
    page.get_by_label("Cc", exact=True).fill(ANANYA)
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Draft saved.").wait_for()
    page.get_by_role("button", name="Send").click()
    page.get_by_text(re.compile("Sending to 2 recipient")).wait_for()
    for _ in range(40):  # no polling without JS: the rep reloads
        if page.locator(".engage-badge--sent").count():
            break
        page.wait_for_timeout(500)
        page.reload()
    assert (
        page.locator(".engage-activity", has_text="Plain form")
        .locator(".engage-badge--sent")
        .count()
        == 1
    )
