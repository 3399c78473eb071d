"""The rep's day read in German and in their own time (SPEC S45), walked in Chromium.

A German browser (Accept-Language de-DE, Mia's zone Europe/Berlin) walks the story: compose
with its dialogs, send, the recipient opens, clicks and replies in the mailbox, the cards, a
phone call, snooze, dismiss, templates, bulk, the admin's switch, a user without a role. On
every page it fails on English a rep can read, on a time shown in UTC or ISO form, on
horizontal overflow at 390 px, and on serious or critical axe violations. The same walk in
English passes the same checks, English text aside.

The English check knows what English looks like from the catalogues themselves: every English
message of engage's and the demo's catalogues (the parts between placeholders) that has a
German translation must not show, nor English weekday and month names or AM/PM. What the
people and records of the demo are called (data, not UI) is taken out of the text first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from babel.messages.mofile import read_mo

from engage.models import Card, utcnow
from tests.browser_support import MARIE, assert_accessible

pytestmark = pytest.mark.browser

PACKAGE = Path(__file__).resolve().parent.parent / "engage"
ENGAGE_MO = PACKAGE / "translations" / "de" / "LC_MESSAGES" / "engage.mo"
DEMO_MO = PACKAGE / "demo" / "translations" / "de" / "LC_MESSAGES" / "messages.mo"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%%|\{\{.*?\}\}|\{%.*?%\}")

#: English that is never a German word: weekday and month names, the 12-hour clock's marks.
ENGLISH_CALENDAR = re.compile(
    r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|"
    r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|AM|PM)\b"
)
#: Template syntax shown as an example ({{ recipient.first_name }}): code in any language.
TEMPLATE_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")
#: English words that are German words too ("Quote": a rate).
ALSO_GERMAN = frozenset({"Quote"})
#: A time shown in UTC or machine form to a person.
MACHINE_TIME = re.compile(r"\bUTC\b|\bGMT\b|\d{4}-\d\d-\d\d[ T]\d\d:\d\d|\d\d:\d\d:\d\d\+00:00")


def english_messages() -> list[tuple[str, re.Pattern[str]]]:
    """The English parts of every catalogue message that German says otherwise."""
    found: dict[str, re.Pattern[str]] = {}
    for path in (ENGAGE_MO, DEMO_MO):
        with path.open("rb") as mo:
            catalogue = read_mo(mo)
        for message in catalogue:
            if not message.id:
                continue
            ids = tuple(message.id) if isinstance(message.id, tuple | list) else (message.id,)
            strings = (
                tuple(message.string)
                if isinstance(message.string, tuple | list)
                else (message.string,)
            )
            for msgid in ids:
                if msgid in strings:
                    continue  # the same in German ("Link", "Details", "OK")
                for part in PLACEHOLDER.split(msgid):
                    part = part.strip(" .,:;()“”‘’\"'…-—")
                    words = part.split()
                    long_enough = len(words) >= 2 and len(part) >= 8
                    one_word = len(words) == 1 and len(part) >= 4
                    # Left out when German keeps the same part ("E-Mail an %(name)s").
                    if part in ALSO_GERMAN:
                        continue
                    if (long_enough or one_word) and not any(part in s for s in strings):
                        found[part] = re.compile(rf"(?<!\w){re.escape(part)}(?!\w)")
    return sorted(found.items())


ENGLISH = english_messages()


def data_strings(app: Any) -> list[str]:
    """Every text the demo's database holds (names, subjects, job titles …): data, not UI."""
    from engage.demo.models import db
    from engage.models import Base

    texts: set[str] = set()
    with app.app_context():
        for table in [*db.metadata.sorted_tables, *Base.metadata.sorted_tables]:
            columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.Text)]
            if not columns:
                continue
            for row in db.session.execute(sa.select(*columns)):
                texts.update(v for v in row if isinstance(v, str) and len(v) >= 3)
    for text in list(texts):
        texts.update(part for part in re.split(r"[<>\n]", text) if len(part) >= 3)
    return sorted(texts, key=len, reverse=True)


class Reader:
    """Checks each page as a rep reads it: language, times, overflow at 390 px, axe."""

    def __init__(self, page: Any, demo: Any, language: str) -> None:
        self.page, self.demo, self.language = page, demo, language
        self.problems: list[str] = []
        self.overflow: dict[str, int] = {}

    def visible_text(self) -> str:
        return self.page.evaluate(
            """() => {
              const seen = [document.title, document.body.innerText];
              for (const el of document.querySelectorAll('[placeholder],[title],[aria-label]')) {
                const box = el.getBoundingClientRect();
                if (box.width === 0 && box.height === 0) continue;
                for (const name of ['placeholder', 'title', 'aria-label']) {
                  if (el.getAttribute(name)) seen.push(el.getAttribute(name));
                }
              }
              return seen.join('\\n');
            }"""
        )

    def check(self, step: str) -> None:
        self.page.wait_for_load_state("networkidle")
        text = self.visible_text()
        for time in MACHINE_TIME.findall(text):
            self.problems.append(f"{step}: a machine time {time!r}")
        if self.language == "de":
            for data in data_strings(self.demo.app):
                text = text.replace(data, " ")
            text = TEMPLATE_CODE.sub(" ", text)  # template syntax is code, not English
            for found in ENGLISH_CALENDAR.finditer(text):
                seen = text[max(found.start() - 30, 0) : found.end() + 30].replace("\n", " ")
                self.problems.append(f"{step}: English calendar word in …{seen}…")
            for part, pattern in ENGLISH:
                if found := pattern.search(text):
                    seen = text[max(found.start() - 30, 0) : found.end() + 30].replace("\n", " ")
                    self.problems.append(f"{step}: English {part!r} in …{seen}…")
        assert_accessible(self.page)
        self.page.set_viewport_size({"width": 390, "height": 844})
        try:
            width = self.page.evaluate("() => document.documentElement.scrollWidth")
            if width > 391:
                self.overflow[step] = width
        finally:
            self.page.set_viewport_size({"width": 1280, "height": 900})

    def words(self) -> Callable[..., str]:
        """What a label says in this walk's language: engage's catalogue, else the demo's."""
        if self.language == "en":
            return lambda msgid, **values: msgid % values if values else msgid
        with ENGAGE_MO.open("rb") as mo:
            engage = {m.id: m.string for m in read_mo(mo) if isinstance(m.id, str) and m.id}
        with DEMO_MO.open("rb") as mo:
            demo = {m.id: m.string for m in read_mo(mo) if isinstance(m.id, str) and m.id}

        def say(msgid: str, *, demo_first: bool = False, **values: Any) -> str:
            order = (demo, engage) if demo_first else (engage, demo)
            text = next((c[msgid] for c in order if msgid in c), msgid)
            return text % values if values else text

        return say


@pytest.fixture(params=["de", "en"])
def reader(request, browser, start_demo) -> Iterator[Reader]:
    language = request.param
    demo = start_demo()
    context = browser.new_context(
        locale="de-DE" if language == "de" else "en-US",
        timezone_id="Europe/Berlin",
        viewport={"width": 1280, "height": 900},
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield Reader(page, demo, language)
    context.close()


def sign_in_as(reader: Reader, name: str) -> None:
    page, demo = reader.page, reader.demo
    page.goto(demo.url + "/sign-in")
    page.get_by_role("button", name=name).first.click()
    page.wait_for_url(re.compile(r".*/(?!sign-in).*"))


def open_dialog(group: Any, inside: str) -> None:
    """Open a compose dialog (a <details>) and wait for ``inside`` to show; the part may be
    re-rendered closed while the recipient's time zone is looked up, so open it again then."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _attempt in range(6):
        if group.locator("details[open]").count() == 0:
            group.locator("summary").click()
        try:
            group.locator(inside).first.wait_for(timeout=4_000)
            return
        except PlaywrightTimeout:
            continue
    group.locator(inside).first.wait_for()


def test_the_reps_day_reads_in_the_readers_language_and_time(reader: Reader) -> None:
    page, demo, check = reader.page, reader.demo, reader.check
    t = reader.words()

    sign_in_as(reader, "Mia Berg")
    check("home")
    page.get_by_role("link", name="Marie Curie").first.click()
    page.get_by_text(t("No activities yet.")).wait_for()
    check("record")

    # Compose, with its dialogs opened.
    page.get_by_label(t("Create timeline record")).click()
    page.get_by_role("link", name=t("Email"), exact=True).click()
    page.locator("trix-editor").wait_for()
    page.get_by_label(t("To"), exact=True).fill(f"Marie Curie <{MARIE}>")
    page.get_by_label(t("Subject")).fill("Quartalsgespräch")
    page.locator("trix-editor").click()
    page.keyboard.type(
        "Sollen wir nächste Woche über das Quartal sprechen? https://example.com/plan"
    )
    page.get_by_role("group", name=t("Follow")).get_by_text(t("On"), exact=True).wait_for()
    page.wait_for_load_state("networkidle")  # the dialogs refresh as the recipients change
    later = page.get_by_role("group", name=t("Send later"))
    open_dialog(later, ".engage-recommendation")
    check("compose, send later")
    later.locator("summary").click()
    reminder = page.get_by_role("group", name=t("Set reminder"))
    open_dialog(reminder, "select")
    check("compose, reminder")
    reminder.locator("summary").click()
    page.get_by_role("button", name=t("Send"), exact=True).click()
    entry = page.locator(".engage-activity", has_text="Quartalsgespräch")
    entry.locator(".engage-badge--sent").wait_for()
    check("sent")
    page.wait_for_timeout(5_500)  # opens within seconds of delivery count as machine prefetches

    # Marie reads it in the mailbox, clicks its link and replies.
    mailbox = page.context.new_page()
    mailbox.goto(f"{demo.url}/mailbox?recipient={MARIE}")
    mailbox.get_by_role("link", name="Quartalsgespräch").first.click()
    mailbox.frame_locator("iframe").get_by_text("Sollen wir").wait_for()
    mailbox.close()
    reader.page = page
    page.goto(demo.url + "/mailbox")
    check("mailbox")
    page.get_by_role("link", name="Quartalsgespräch").first.click()
    page.frame_locator("iframe").get_by_text("Sollen wir").wait_for()
    check("mailbox message")
    page.get_by_label(t("Your reply", demo_first=True)).fill("Gerne, Dienstag passt.")
    page.get_by_role("button", name=t("Send reply", demo_first=True)).click()
    page.locator(".demo-notice").first.wait_for()
    check("reply sent")

    # The card the open made, on the home page's assistant.
    page.goto(demo.url + "/")
    panel = page.locator("#engage-assistant")
    card = panel.locator(".engage-card").first
    card.wait_for(timeout=30_000)
    check("assistant card")
    # Beside Marie's record: a phone call from the card lands on her timeline.
    card.locator("a[href^='/contacts/']").click()
    panel = page.locator("#engage-assistant")
    card = panel.locator(".engage-card").first
    card.get_by_role("link", name=t("Create phone call")).click()
    panel.get_by_role("button", name=t("Save phone call")).wait_for()
    check("phone call form")
    panel.get_by_role("button", name=t("Save phone call")).click()
    page.locator(".engage-activity--phone_call").wait_for()
    check("phone call saved")
    card = panel.locator(".engage-card").first
    card.get_by_role("link", name=t("Snooze")).click()
    panel.get_by_role("button", name=t("1 hour")).wait_for()
    check("snooze form")
    panel.get_by_role("button", name=t("1 hour")).click()
    page.locator("#engage-assistant .engage-card").first.wait_for(state="detached")
    with demo.app.app_context():
        from engage.demo.models import db as demo_db

        demo_db.session.execute(sa.update(Card).values(snoozed_until=utcnow()))
        demo_db.session.commit()
    page.reload()
    card = page.locator("#engage-assistant .engage-card").first
    card.wait_for()
    card.get_by_role("button", name=t("Dismiss")).click()
    page.wait_for_load_state("networkidle")
    check("dismissed")

    # The email's page and its interactions.
    page.goto(demo.url + "/")
    page.get_by_role("link", name="Marie Curie").first.click()
    page.locator(".engage-activity", has_text="Quartalsgespräch").get_by_role(
        "link", name="Quartalsgespräch"
    ).first.click()
    page.get_by_role("heading", name="Quartalsgespräch").wait_for()
    check("email")
    interactions = page.locator("a[href*='/interactions']")
    if interactions.count():
        interactions.first.click()
        page.wait_for_load_state("networkidle")
        check("interactions")

    # Bulk: two contacts from the People page.
    page.goto(demo.url + "/people")
    check("people")
    boxes = page.locator("input[type=checkbox][name=records]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_role("button", name=t("Send to selected", demo_first=True)).first.click()
    page.wait_for_load_state("networkidle")
    check("bulk")

    # A sales manager's templates, the admin's switch, a user without a role.
    sign_in_as(reader, t("Sales manager", demo_first=True))
    page.goto(demo.url + "/engage/templates")
    check("templates")
    page.locator("a[href*='/engage/templates/']").first.click()
    page.wait_for_load_state("networkidle")
    check("template")
    sign_in_as(reader, t("Admin", demo_first=True))
    page.goto(demo.url + "/engage/settings")
    check("organisation settings")
    sign_in_as(reader, t("No role", demo_first=True))
    page.locator("a[href^='/contacts/']").first.click()
    page.wait_for_load_state("networkidle")
    check("no role")

    assert reader.problems == [], "\n".join(reader.problems)
    assert reader.overflow == {}, f"wider than 390 px: {reader.overflow}"


def test_the_reader_checks_find_english_and_machine_times() -> None:
    """The checker itself: it knows English UI, calendars and UTC when it sees them."""
    parts = dict(ENGLISH)
    assert "Send later" in parts and "Sent" in parts and "Contact" in parts
    assert any(p.startswith("Nothing needs your attention.") for p in parts)
    assert "Link" not in parts  # German says "Link" too
    assert ENGLISH_CALENDAR.search("Tue, Dec 1, 8:00 AM")
    assert not ENGLISH_CALENDAR.search("Di., 1. Dez., 08:00")
    assert MACHINE_TIME.search("Wird am Di. 2026-12-01 15:00 UTC gesendet")
    assert not MACHINE_TIME.search("Versand geplant: Di., 1. Dez., 08:00")
