"""Beyond the reference (SPEC S40–S43) in a real browser, in German, as a rep and a recipient
see it in the demo CRM: one time for several recipients, an out-of-office absence on the
timeline and in Send later, a link reminder whose card offers to wait for the recipient's
return, and a recipient's one-click opt-out."""

from __future__ import annotations

import re
import urllib.request
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from engage.models import Email
from tests.browser_support import JURGEN, MARIE, sign_in
from tests.support import reply

pytestmark = pytest.mark.browser


@pytest.fixture
def de_page(browser):
    """A browser page whose language is German (Accept-Language: de-DE)."""
    context = browser.new_context(locale="de-DE")
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def open_compose_de(page, demo, contact: str) -> None:
    page.goto(demo.url + "/")
    page.get_by_role("link", name=contact).first.click()
    page.get_by_label("Zeitskala-Datensatz erstellen").click()
    page.get_by_role("link", name="E-Mail", exact=True).click()
    page.locator("trix-editor").wait_for()


def write_and_send_de(page, *, to: str, subject: str, text: str) -> None:
    page.get_by_label("An", exact=True).fill(to)
    page.get_by_label("Betreff").fill(subject)
    page.locator("trix-editor").click()
    page.keyboard.type(text)
    page.get_by_role("group", name="Folgen").get_by_text("Ein", exact=True).wait_for()
    page.get_by_role("button", name="Senden", exact=True).click()
    page.locator(".engage-activity", has_text=subject).locator(".engage-badge--sent").wait_for()


def post_out_of_office(demo, subject: str, text: str) -> None:
    """Jürgen's mail server answers the email ``subject`` with an automatic reply."""
    with demo.app.app_context():
        db = demo.app.extensions["sqlalchemy"]
        message_id = db.session.scalar(sa.select(Email.message_id).where(Email.subject == subject))
    raw = reply(
        message_id,
        sender=f"Jürgen Müller <{JURGEN}>",
        subject=f"Automatische Antwort: {subject}",
        text=text,
        message_id="<abwesend-1@isar-maschinenbau.example.de>",
        headers={"Auto-Submitted": "auto-replied"},
    )
    request = urllib.request.Request(
        demo.url + "/engage/inbound/replies",
        data=raw,
        headers={
            "Authorization": f"Bearer {demo.app.config['ENGAGE_INBOUND_TOKEN']}",
            "Content-Type": "message/rfc822",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert b"auto_reply" in answer.read()


def test_a_rep_sees_an_absence_one_time_for_two_and_a_link_reminder_that_waits_for_the_return(
    de_page, demo
):
    page = de_page
    sign_in(page, demo)
    open_compose_de(page, demo, "Jürgen Müller")
    write_and_send_de(
        page, to=f"Jürgen Müller <{JURGEN}>", subject="Angebot Q3", text="Hier unser Angebot."
    )

    # S42: Jürgen's out-of-office reply names his last day away; the timeline shows it.
    last_day = date.today() + timedelta(days=9)
    post_out_of_office(
        demo, "Angebot Q3", f"Ich bin bis einschließlich {last_day:%d.%m.%Y} nicht im Büro."
    )
    page.reload()
    absence = page.locator(".engage-activity--absence")
    absence.wait_for()
    assert (
        " ist bis " in absence.inner_text()
        and "abwesend" in absence.inner_text()
        and "Abwesend".upper() in absence.inner_text()
    )

    # S40: one time for Jürgen and Marie, each listed with their local time; Jürgen is away.
    open_compose_de(page, demo, "Jürgen Müller")
    page.get_by_label("An", exact=True).fill(f"Jürgen Müller <{JURGEN}>, Marie Curie <{MARIE}>")
    page.get_by_label("Betreff").fill("Gemeinsamer Termin")
    later = page.get_by_role("group", name="Später senden")
    later.locator("summary").click()
    group = later.locator(".engage-group-time")
    # Opening the dialog works the time out for both; Marie's zone comes from the worker.
    group.locator(f'li[data-engage-recipient="{MARIE}"]').wait_for()
    assert "Empfohlen:" in group.inner_text(), group.inner_text()
    jurgen = group.locator(f'li[data-engage-recipient="{JURGEN}"]').inner_text()
    marie = group.locator(f'li[data-engage-recipient="{MARIE}"]').inner_text()
    # Jürgen is away past the next 5 working days: the time suits Marie, and says so.
    assert "passt keine Zeit für alle" in group.inner_text()
    assert "Berlin" in jurgen and "außerhalb des Arbeitstags" in jurgen
    assert "Paris" in marie and "im Arbeitstag" in marie
    assert "ist abwesend (Abwesenheitsnotiz) bis" in later.inner_text()
    assert later.get_by_label(re.compile("Zustellen am")).input_value()

    # S41: on the sent email's page, "If no link is clicked by", due in a few seconds.
    page.goto(demo.url + "/")
    page.get_by_role("link", name="Jürgen Müller").first.click()
    page.get_by_role("link", name="Angebot Q3").first.click()
    reminder = page.get_by_role("group", name="Erinnerung festlegen")
    reminder.locator("summary").click()
    reminder.get_by_label("Bedingung").select_option(label="Wenn kein Link angeklickt wird bis zum")
    label = reminder.locator("label", has_text="Erinnerung bis").inner_text()
    zone = re.search(r"\(Ihre Zeit, ([^)]+)\)", label).group(1)
    soon = datetime.now(ZoneInfo(zone)) + timedelta(seconds=8)
    reminder.get_by_label(re.compile("Erinnerung bis")).fill(soon.strftime("%Y-%m-%dT%H:%M:%S"))
    reminder.get_by_role("button", name="OK").click()
    summary = page.locator("[data-engage-reminder-summary]")
    assert "keinen Link angeklickt" in summary.inner_text()

    # The card says Jürgen is away and offers to remind the rep when he is back. (Its text is
    # written by the worker in the app's language; the button is the reader's.)
    card = page.locator(".engage-card", has_text="Angebot Q3")
    for _ in range(40):
        page.goto(demo.url + "/engage/assistant")
        if card.get_by_role("button", name="Erinnern, wenn sie zurück sind").count():
            break
        page.wait_for_timeout(1_000)
    assert JURGEN in card.inner_text()
    card.get_by_role("button", name="Erinnern, wenn sie zurück sind").click()
    card.wait_for(state="detached")


def test_a_recipient_stops_tracking_with_one_click_in_german_and_the_rep_sees_it(de_page, demo):
    page = de_page
    # The admin turns the line on (it is off by default).
    sign_in(page, demo, "Alex Kim")
    page.goto(demo.url + "/engage/settings")
    page.get_by_label(re.compile("Meine Öffnungen und Klicks nicht verfolgen")).check()
    page.get_by_role("button", name="Speichern").click()

    sign_in(page, demo)
    open_compose_de(page, demo, "Jürgen Müller")
    write_and_send_de(
        page, to=f"Jürgen Müller <{JURGEN}>", subject="Unser Angebot", text="Bitte ansehen."
    )

    # Jürgen reads it in the demo mailbox: the line is there, in German, with his own link.
    page.goto(f"{demo.url}/mailbox?recipient={JURGEN}")
    page.get_by_role("link", name="Unser Angebot").first.click()
    line = page.frame_locator("iframe").locator('a[href*="/engage/o/"]')
    assert line.inner_text() == "Meine Öffnungen und Klicks nicht verfolgen"
    href = line.get_attribute("href")

    recipient = page.context.browser.new_context(locale="de-DE").new_page()  # no sign-in
    recipient.goto(href)
    assert recipient.locator("html").get_attribute("lang") == "de"
    recipient.get_by_role("button", name="Verfolgung meiner Öffnungen und Klicks beenden").click()
    recipient.get_by_text("Erledigt").wait_for()
    recipient.context.close()

    # The rep sees it on Jürgen's timeline, and a new email to him cannot be followed.
    open_compose_de(page, demo, "Jürgen Müller")
    stopped = page.locator(".engage-activity--opt_out")
    assert "möchte nicht, dass Öffnungen und Klicks verfolgt werden" in stopped.inner_text()
    page.get_by_label("An", exact=True).fill(f"Jürgen Müller <{JURGEN}>")
    page.get_by_label("Betreff").fill("Noch eine Frage")
    page.get_by_role("group", name="Folgen").get_by_text("Gesperrt").wait_for()
