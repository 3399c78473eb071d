"""Attachments in a real browser: attach, follow, remove, send, read in the mailbox (S16–S18)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser_support import (
    MARIE,
    PERSON_USER_AGENT,
    open_compose,
    open_compose_without_js,
    sign_in,
)

pytestmark = pytest.mark.browser

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
PRICES = b"item;price\nlathe;12000\n"


def attach(page, name: str, data: bytes, mime: str) -> None:
    page.get_by_label("New attachment").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )
    page.get_by_role("button", name="Attach", exact=True).click()
    page.get_by_text(f"Attached “{name}”").wait_for()


def file_row(page, name: str):
    return page.locator(f'.engage-attachment[data-attachment="{name}"]')


def test_attach_follow_remove_send_and_read_the_files_in_the_mailbox(page, demo):
    page.set_default_timeout(15_000)
    demo.app.config["ENGAGE_MAX_ATTACHMENT_MB"] = 0.05  # about 51 KB, to try a larger file
    sign_in(page, demo)
    open_compose(page, demo, "Marie Curie")
    page.get_by_label("Subject").fill("Offer with files")
    page.locator("trix-editor").click()
    page.keyboard.type("Dear Marie, our offer and the price list are attached.")
    page.get_by_role("group", name="Follow").get_by_text("On", exact=True).wait_for()

    # A file over the limit is refused as soon as it is chosen, before anything is sent.
    chooser = page.get_by_label("New attachment")
    chooser.set_input_files(
        files=[{"name": "scan.tiff", "mimeType": "image/tiff", "buffer": b"x" * 60_000}]
    )
    page.get_by_text("“scan.tiff” is larger than the 0.05 MB limit for attachments").wait_for()
    assert chooser.evaluate("input => input.files.length") == 0
    assert chooser.get_attribute("aria-invalid") == "true"
    assert page.get_by_role("heading", name="New email").is_visible()  # nothing was saved

    # The upload drives the progress bar (htmx:xhr:progress), seen from a listener of our own.
    page.evaluate(
        """() => {
            window.engageProgress = [];
            document.addEventListener('htmx:xhr:progress', () => {
                const bar = document.querySelector('[data-engage-upload-progress]');
                if (bar && !bar.hidden) window.engageProgress.push(bar.value);
            });
        }"""
    )
    attach(page, "offer.pdf", PDF, "application/pdf")  # a new email: the draft is saved first
    assert page.evaluate("window.engageProgress.length") > 0
    assert page.evaluate("Math.max(...window.engageProgress)") == 100
    page.get_by_text("The draft was saved.").wait_for()
    offer = file_row(page, "offer.pdf")
    assert "2 KB" in offer.inner_text() and "Not followed" in offer.inner_text()
    assert page.get_by_label("Subject").input_value() == "Offer with files"
    assert "price list are attached" in page.locator("trix-editor").inner_text()

    attach(page, "price-list.csv", PRICES, "text/csv")
    attach(page, "old notes.txt", b"outdated", "text/plain")
    assert file_row(page, "old notes.txt").is_visible()

    file_row(page, "offer.pdf").get_by_role("button", name="Follow").click()
    file_row(page, "offer.pdf").get_by_text("Followed", exact=True).wait_for()
    file_row(page, "old notes.txt").get_by_role("button", name="Remove").click()
    page.get_by_text("Removed “old notes.txt”.").wait_for()
    assert file_row(page, "old notes.txt").count() == 0
    assert file_row(page, "price-list.csv").get_by_text("Not followed").is_visible()

    page.get_by_role("button", name="Send").click()
    page.get_by_text(re.compile(r"Sending to 1 recipient")).wait_for()
    page.locator(".engage-activity", has_text="Offer with files").locator(
        ".engage-badge--sent"
    ).wait_for(timeout=20_000)
    page.wait_for_timeout(5_500)  # an open within seconds of delivery is a gateway's, not hers

    # Marie's mailbox: the unfollowed file is an attachment, the followed one a link.
    page.goto(f"{demo.url}/mailbox?recipient={MARIE}")
    page.get_by_role("link", name="Offer with files").first.click()
    files = page.get_by_role("region", name="Attachments")
    assert files.get_by_role("link").all_inner_texts() == ["price-list.csv"]
    with page.expect_download() as download:
        files.get_by_role("link", name="price-list.csv").click()
    assert Path(download.value.path()).read_bytes() == PRICES
    link = page.frame_locator("iframe").get_by_role("link", name="offer.pdf")
    href = link.get_attribute("href")
    assert href.startswith(f"{demo.url}/engage/t/a/")

    # She opens it; the rep sees the attachment open in the interactions view.
    opened = page.context.request.get(href, headers={"User-Agent": PERSON_USER_AGENT})
    assert opened.ok and opened.body() == PDF
    page.goto(demo.url + "/")
    page.get_by_role("link", name="Marie Curie").first.click()
    page.get_by_role("link", name="Offer with files").click()
    page.get_by_role("link", name="View message interactions").click()
    marie = page.locator(f'tr[data-recipient="{MARIE}"]')
    for _ in range(40):
        if "offer.pdf ×1" in marie.inner_text():
            break
        page.wait_for_timeout(500)
        page.reload()
    assert "offer.pdf ×1" in marie.inner_text()
    history = page.locator(".engage-history").inner_text()
    assert f"{MARIE}: opened an attachment offer.pdf" in history


def test_without_javascript_a_file_is_attached_and_removed_by_plain_posts(page_without_js, demo):
    page = page_without_js
    sign_in(page, demo)
    open_compose_without_js(page, demo, "Marie Curie")
    page.get_by_label("Subject").fill("Plain attachments")
    page.get_by_label("Body").fill("No JavaScript here.")
    page.get_by_label("New attachment").set_input_files(
        files=[{"name": "plain.txt", "mimeType": "text/plain", "buffer": b"plain"}]
    )
    page.get_by_role("button", name="Attach", exact=True).click()
    page.get_by_text("Attached “plain.txt”. The draft was saved.").wait_for()
    assert page.get_by_label("Subject").input_value() == "Plain attachments"
    assert page.get_by_label("Body").input_value() == "No JavaScript here."
    file_row(page, "plain.txt").get_by_role("button", name="Remove").click()
    page.get_by_text("Removed “plain.txt”.").wait_for()
    assert file_row(page, "plain.txt").count() == 0
