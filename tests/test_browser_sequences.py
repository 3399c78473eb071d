"""Sequences in a real browser, in German (SPEC S46, S47): the sales manager writes a
three-step sequence; a salesperson enrols a contact from its timeline (+ → Sequenz) and a list
of people from the People page, and pauses and resumes the enrolment on the timeline."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser_support import assert_accessible, open_record, sign_in

pytestmark = pytest.mark.browser

NAME = "Neukunden-Nachfass"
INTRO = "Introduction after a first call (Englisch)"
PROPOSAL = "Follow-up on a proposal (Englisch)"


@pytest.fixture
def german(browser):
    """A page of a browser that asks for German."""
    context = browser.new_context(locale="de-DE", extra_http_headers={"Accept-Language": "de-DE"})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def write_step(page, number: int, *, kind: str, wait: str, template: str | None, notes: str = ""):
    step = page.get_by_role("group", name=f"Schritt {number}")
    step.get_by_label("Was geschieht").select_option(label=kind)
    step.get_by_label("Wartezeit (Arbeitstage)").fill(wait)
    if template:
        step.get_by_label("Vorlage").select_option(label=template)
    if notes:
        step.get_by_label("Hinweise für den Vertrieb").fill(notes)


def test_a_manager_writes_a_sequence_and_a_rep_enrols_a_contact_and_a_list(german, start_demo):
    demo = start_demo(worker=False)
    page = german

    # The sales manager writes a three-step sequence.
    sign_in(page, demo, "Lena Vogel")
    page.get_by_role("navigation", name="Hauptmenü").get_by_role("link", name="Sequenzen").click()
    page.get_by_role("heading", name="Sequenzen").wait_for()
    page.get_by_role("link", name="Neue Sequenz").click()
    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Spätere E-Mails als Antworten im selben Verlauf senden").check()
    write_step(page, 1, kind="Automatische E-Mail", wait="0", template=INTRO)
    page.get_by_role("button", name="Schritt hinzufügen").click()
    write_step(page, 2, kind="Anrufaufgabe", wait="2", template=None, notes="Nach dem Test fragen")
    page.get_by_role("button", name="Schritt hinzufügen").click()
    assert_accessible(page)
    # The third step without its template: the editor says so and keeps what was written.
    write_step(page, 3, kind="Manuelle E-Mail", wait="3", template=None)
    page.get_by_role("button", name="Speichern").click()
    step3 = page.get_by_role("group", name="Schritt 3")
    expect(
        step3.get_by_text("Wählen Sie die Vorlage, aus der diese E-Mail geschrieben wird.")
    ).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value(NAME)
    step3.get_by_label("Vorlage").select_option(label=PROPOSAL)
    page.get_by_role("button", name="Speichern").click()
    page.get_by_text(f"Sequenz „{NAME}“ gespeichert.").wait_for()
    rows = page.locator("#engage-sequence-steps tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Automatische E-Mail")
    expect(rows.nth(1)).to_contain_text("Anrufaufgabe")
    expect(rows.nth(1)).to_contain_text("2 Arbeitstage")
    expect(rows.nth(2)).to_contain_text("Manuelle E-Mail")
    assert_accessible(page)

    # A salesperson enrols Marie Curie from her timeline: + → Sequenz.
    sign_in(page, demo, "Mia Berg")
    open_record(page, demo, "Marie Curie")
    page.get_by_label("Zeitskala-Datensatz erstellen").click()
    page.get_by_role("link", name="Sequenz", exact=True).click()
    page.get_by_label("Sequenz", exact=True).select_option(label=NAME)
    page.get_by_role("button", name="Aufnehmen").click()
    page.get_by_text(f"1 in „{NAME}“ aufgenommen; 0 übersprungen.").wait_for()
    enrolment = page.locator(".engage-enrolment", has_text=f"Sequenz: {NAME}")
    expect(enrolment).to_contain_text("Läuft")
    expect(enrolment).to_contain_text("Als Nächstes: Schritt 1 von 3, automatische E-Mail")
    assert_accessible(page)
    enrolment.get_by_role("button", name=f"Pausieren: {NAME}").click()
    expect(enrolment).to_contain_text("Pausiert")
    enrolment.get_by_role("button", name=f"Fortsetzen: {NAME}").click()
    expect(enrolment).to_contain_text("Läuft")

    # And two more from the People page's selection.
    page.get_by_role("navigation", name="Hauptmenü").get_by_role("link", name="Personen").click()
    page.get_by_role("checkbox", name="Jürgen Müller").check()
    page.locator("input[name=records][value^='lead:']").first.check()
    page.get_by_role("button", name="Ausgewählte in eine Sequenz aufnehmen").click()
    page.get_by_role("heading", name="In eine Sequenz aufnehmen").wait_for()
    page.get_by_text("2 Datensätze ausgewählt:").wait_for()
    page.get_by_label("Sequenz", exact=True).select_option(label=NAME)
    page.get_by_role("button", name="Aufnehmen").click()
    page.get_by_text(f"2 in „{NAME}“ aufgenommen; 0 übersprungen.").wait_for()

    # The manager's page counts the three.
    sign_in(page, demo, "Lena Vogel")
    page.get_by_role("navigation", name="Hauptmenü").get_by_role("link", name="Sequenzen").click()
    page.get_by_role("link", name=NAME, exact=True).click()
    expect(page.locator('[data-stat="enrolled"]')).to_have_text("3")
