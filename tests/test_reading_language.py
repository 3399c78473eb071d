"""What a worker writes is read in the reader's language, times in the reader's zone (S45)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy

import pytest
import sqlalchemy as sa

from engage.delivery import build_message
from engage.i18n import format_local, format_size, language, read, stored
from engage.models import Card, Email
from tests.hostapp import Customer, db
from tests.support import (
    age_delivery,
    drain,
    load,
    open_pixel,
    run_delivery,
    send_followed,
    sign_in,
)
from tests.test_attachments import a_file, act, attachments_of, draft_with, send

HX = {"HX-Request": "true"}
PUBLIC = "https://crm.example.com"
ASSISTANT = "/crm/engage/assistant"
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


@pytest.fixture
def files_app(app, smtp_sink):
    """The host app with a real SMTP sink and a public URL, so followed files are links."""
    app.config.update(ENGAGE_SMTP_URL=smtp_sink.url, ENGAGE_PUBLIC_URL=PUBLIC)
    return app


def an_open_card(app) -> Card:
    email_id = send_followed(app)
    assert run_delivery(app, email_id) == "sent"
    age_delivery(app, email_id)
    ada = next(p for p in load(app, email_id).recipients if p.address == "ada@example.com")
    open_pixel(app, ada.token)
    drain(app)
    with app.app_context():
        (card,) = db.session.scalars(sa.select(Card)).all()
        db.session.expunge_all()
    return card


def test_a_card_made_by_the_worker_reads_german_for_a_german_reader_and_english_for_others(
    tracked_app, redis_client
):
    card = an_open_card(tracked_app)
    # Stored as what happened, not as a sentence in anyone's language.
    assert card.title.startswith("engage-msg:") and "Ada Lovelace opened" not in card.title
    sam = sign_in(tracked_app.test_client(), 1)
    german = sam.get(ASSISTANT, headers=HX | GERMAN).get_data(as_text=True)
    assert "Ada Lovelace hat „Offer“ geöffnet" in german
    assert "Erstmals geöffnet von ada@example.com." in german
    assert "opened" not in german and "engage-msg" not in german
    english = sam.get(ASSISTANT, headers=HX).get_data(as_text=True)
    assert "Ada Lovelace opened ‘Offer’" in english
    assert "First open by ada@example.com." in english


def test_old_cards_stored_as_english_text_still_show(app):
    assert read("Ada opened ‘Offer’") == "Ada opened ‘Offer’"
    assert read(None) == ""
    # A message a newer version wrote, which this one does not know, shows nothing rather
    # than failing the page.
    assert read('engage-msg:{"k":"from.the.future","p":{}}') == ""


def test_stored_messages_nest_and_count_in_the_readers_language(app):
    text = stored("delivery.gave_up", error=stored("delivery.server", answer="451 busy"), num=3)
    with app.test_request_context(headers=GERMAN):
        assert read(text) == "Antwort des Mailservers: 451 busy Nach 3 Versuchen aufgegeben."
    with app.test_request_context():
        assert read(text) == "The mail server answered: 451 busy Gave up after 3 attempts."
    with pytest.raises(KeyError):
        stored("no.such.message")


def test_times_read_in_the_readers_zone_and_language_with_a_date_unless_today(app):
    now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    tomorrow = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    with app.test_request_context(headers=GERMAN):
        assert format_local(tomorrow, "Europe/Berlin", now=now) == "Di., 1. Dez., 08:00"
        assert format_local(now, "Europe/Berlin", now=now) == "21:00"
        assert format_local(tomorrow, "Europe/Berlin", now=now.replace(year=2025)) == (
            "Di., 1. Dez. 2026, 08:00"
        )
        assert format_size(2560) == "2,5 KB" and format_size(1) == "1 Byte"
    with app.test_request_context():
        assert format_local(tomorrow, "America/New_York", now=now) == "Tue, Dec 1, 2:00\u202fAM"
        assert format_size(2560) == "2.5 KB"


def test_the_attachment_block_of_a_sent_email_is_in_the_senders_language(
    files_app, smtp_sink, redis_client
):
    client = sign_in(files_app.test_client(), 1)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = GERMAN["Accept-Language"]
    email_id = draft_with(client, a_file("angebot.pdf"))
    (offer,) = attachments_of(files_app, email_id)
    act(client, email_id, offer.id, "follow")
    send(client, email_id)
    assert run_delivery(files_app, email_id) == "sent"
    (received,) = smtp_sink.messages
    message = message_from_bytes(received.data, policy=email_policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "<strong>Anhänge</strong>" in html and "(2 KB)" in html
    assert "Anhänge:\n- angebot.pdf (2 KB)" in text
    assert "Attachments" not in html + text


def test_the_recipients_own_language_wins_when_the_crm_knows_it(files_app, smtp_sink):
    client = sign_in(files_app.test_client(), 1)
    email_id = draft_with(client, a_file("offer.pdf", b"x" * 10))
    (offer,) = attachments_of(files_app, email_id)
    act(client, email_id, offer.id, "follow")
    with files_app.app_context():
        db.session.get(Customer, 1).language = "de"
        email = db.session.get(Email, email_id)
        assert email.language == "en"  # written by an English-speaking rep
        email.followed = True
        ada = email.recipients[0]
        ada.token = "t" * 32
        with language("en"):
            message = build_message(email, ada)
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert "Anhänge:\n- offer.pdf (10 Byte)" in text
        db.session.rollback()
