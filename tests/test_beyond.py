"""Beyond the reference (SPEC S40–S43), through the doors a rep and a recipient use: the
compose endpoints, the email page, the assistant, the inbound endpoint, an IMAP mailbox read
by an ``rq worker`` started from the CLI, the tracking URLs and the event worker."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from engage import current_engage
from engage.absences import absent_until, record_absence
from engage.attachments import attach, store_upload
from engage.emails import DraftInput, save_draft, submit
from engage.geocoding import address_fingerprint
from engage.i18n import stored
from engage.models import (
    Absence,
    Activity,
    ActivityKind,
    Card,
    Email,
    Party,
    RecordTimezone,
    Reminder,
    TrackingEvent,
    TrackingOptOut,
    utcnow,
)
from engage.opt_out import opt_out_token, read_opt_out_token
from engage.recipients import recipient_preference
from engage.records import FollowPreference, RecordRef
from engage.reminders import FILE_NOT_OPENED, NO_CLICK, fire_reminder
from tests.hostapp import Customer, db
from tests.support import (
    CHROME,
    ROOT,
    SAM,
    TOKEN,
    add_reminder,
    age_delivery,
    compose_fields,
    csrf_token,
    drain,
    load,
    open_pixel,
    post_inbound,
    reply,
    rq_worker,
    run_delivery,
    send,
    send_followed,
    sign_in,
    worker_env,
)

BERLIN = ZoneInfo("Europe/Berlin")
PUBLIC = "https://crm.example.com"


@pytest.fixture
def app_config(tmp_path):
    return {"ENGAGE_ATTACHMENT_DIR": str(tmp_path / "attachments")}


@pytest.fixture
def beyond_app(app, smtp_sink, redis_client):
    app.config.update(
        ENGAGE_SMTP_URL=smtp_sink.url, ENGAGE_PUBLIC_URL=PUBLIC, ENGAGE_INBOUND_TOKEN=TOKEN
    )
    return app


def burst_worker(database_url: str, redis_url: str, **config: str) -> None:
    """Run every queued job in an ``rq worker --burst`` started from the CLI."""
    done = subprocess.run(
        rq_worker(redis_url, "--burst"),
        cwd=ROOT,
        env=worker_env(database_url, redis_url, FLASK_APP=f"tests.hostapp:create_app({config!r})"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def set_zone(app, customer_id: int, zone: str) -> None:
    with app.app_context():
        record = current_engage.records.get(RecordRef("customer", str(customer_id)))
        db.session.add(
            RecordTimezone(
                record_type="customer",
                record_id=str(customer_id),
                timezone=zone,
                fingerprint=address_fingerprint(record.address),
                status="found",
                provider="offline",
            )
        )
        db.session.commit()


def dialog(client, **fields) -> str:
    data = compose_fields(
        client,
        **{"subject": "Together", "body": "Hello", "browser_zone": "Europe/Berlin", **fields},
    )
    return client.post("/crm/engage/compose/send-later", data=data).get_data(as_text=True)


# -- S40: one best time for several recipients -----------------------------------------------


def test_several_recipients_get_one_time_once_the_worker_found_their_zones(
    beyond_app, database_url, redis_url
):
    with beyond_app.app_context():
        db.session.get(Customer, 2).city = "New York"
        db.session.commit()
    client = sign_in(beyond_app.test_client(), 1)
    to = "ada@example.com, grace@example.com, someone@example.org"
    assert "Looking up" in dialog(client, to=to)

    burst_worker(database_url, redis_url)  # the geocoding jobs the dialog queued

    body = dialog(client, to=to)
    assert "Looking up" not in body and "Recommended:" in body
    rows = re.findall(r'<li data-engage-recipient="([^"]+)">(.*?)</li>', body, re.DOTALL)
    assert [address for address, _text in rows] == to.split(", ")
    text = {address: " ".join(row.split()) for address, row in rows}
    assert "London" in text["ada@example.com"] and "New York" in text["grace@example.com"]
    # London's and New York's working days overlap every weekday: both are in it.
    assert "in their working day" in text["ada@example.com"]
    assert "in their working day" in text["grace@example.com"]
    assert "time zone unknown" in text["someone@example.org"]
    assert "inside the working day of all 2 recipients" in body
    prefill = re.search(r'name="send_at_local" value="([^"]+)"', body).group(1)
    proposed = datetime.fromisoformat(prefill).replace(tzinfo=BERLIN).astimezone(UTC)
    assert proposed >= utcnow().replace(second=0, microsecond=0) - timedelta(minutes=1)
    london = proposed.astimezone(ZoneInfo("Europe/London"))
    new_york = proposed.astimezone(ZoneInfo("America/New_York"))
    assert 8 <= london.hour < 17 and 8 <= new_york.hour < 17


# -- S42: out of office ------------------------------------------------------------------------


def _out_of_office(message_id: str, text: str, subject="Automatische Antwort: Quarterly review"):
    return reply(
        message_id,
        subject=subject,
        text=text,
        message_id=f"<ooo-{abs(hash(text))}@example.com>",
        headers={"Auto-Submitted": "auto-replied"},
    )


def test_an_out_of_office_in_the_imap_mailbox_is_read_by_the_worker_and_kept_as_an_absence(
    beyond_app, mailbox, database_url, redis_url
):
    set_zone(beyond_app, 1, "Europe/London")
    email_id = send(beyond_app, cc="", bcc="")
    assert run_delivery(beyond_app, email_id) == "sent"
    last_day = date.today() + timedelta(days=9)
    text = f"Ich bin bis einschließlich {last_day:%d.%m.%Y} nicht im Büro."
    mailbox.append(_out_of_office(load(beyond_app, email_id).message_id, text))
    with beyond_app.app_context():
        current_engage.queue.enqueue("engage.jobs.poll_imap")

    burst_worker(database_url, redis_url, ENGAGE_IMAP_URL=mailbox.url)

    back = datetime.combine(last_day + timedelta(days=1), datetime.min.time())
    back = back.replace(hour=8, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
    with beyond_app.app_context():
        [absence] = db.session.scalars(sa.select(Absence)).all()
        assert (absence.address, absence.until) == ("ada@example.com", back)
        assert absence.record == RecordRef("customer", "1")
        assert absent_until(db.session, "Ada@Example.com", utcnow()) == back
        # The auto-reply stays a machine reply that counts as no reply.
        [event] = db.session.scalars(sa.select(TrackingEvent)).all()
        assert event.machine and db.session.get(Party, event.party_id).replied_at is None
    client = sign_in(beyond_app.test_client(), 1)
    timeline = client.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "engage-activity--absence" in timeline and "is away until" in timeline
    # The recommended time for Ada alone waits for her return.
    body = dialog(client, to="ada@example.com")
    assert "ada@example.com is away (out-of-office reply) until" in body
    prefill = re.search(r'name="send_at_local" value="([^"]+)"', body).group(1)
    assert datetime.fromisoformat(prefill).replace(tzinfo=BERLIN) >= back


def test_an_auto_reply_without_a_readable_date_keeps_no_absence(beyond_app):
    email_id = send(beyond_app, cc="", bcc="")
    run_delivery(beyond_app, email_id)
    message_id = load(beyond_app, email_id).message_id
    answer = post_inbound(
        beyond_app, _out_of_office(message_id, "I am out of the office with no access to email.")
    )
    assert answer.get_json()["status"] == "auto_reply"
    with beyond_app.app_context():
        assert db.session.scalars(sa.select(Absence)).all() == []


def test_a_reminder_due_during_an_absence_says_so_and_can_wait_for_their_return(beyond_app):
    email_id = send(beyond_app, cc="", bcc="")
    run_delivery(beyond_app, email_id)
    message_id = load(beyond_app, email_id).message_id
    back_on = date.today() + timedelta(days=6)
    text = f"I am out of the office and will be back on {back_on:%d %B %Y}."
    assert post_inbound(beyond_app, _out_of_office(message_id, text)).status_code == 200
    with beyond_app.app_context():
        row = Reminder(
            email_id=email_id,
            owner_id="1",
            title="Call Ada",
            condition="no_reply",
            remind_at=utcnow() - timedelta(seconds=1),
        )
        db.session.add(row)
        db.session.commit()
        assert fire_reminder(row.id, row.remind_at.isoformat()) == "fired"
        [card] = db.session.scalars(sa.select(Card)).all()
        card_id, reminder_id = card.id, row.id
    client = sign_in(beyond_app.test_client(), 1)
    page = client.get("/crm/engage/assistant").get_data(as_text=True)
    assert "Remind me when they are back" in page
    # The card's text is stored as data and read in the reader's language and zone (S45).
    assert "ada@example.com is away until" in page and "(out-of-office reply)" in page
    answer = client.post(
        f"/crm/engage/assistant/cards/{card_id}/when-back",
        data={"csrf_token": csrf_token(client, "/crm/engage/assistant")},
    )
    assert answer.status_code == 302
    with beyond_app.app_context():
        row = db.session.get(Reminder, reminder_id)
        back = datetime.combine(back_on, datetime.min.time(), tzinfo=UTC)
        assert (row.state, row.remind_at) == ("pending", back)
        assert db.session.get(Card, card_id).dismissed_at is not None
        jobs = current_engage.queue.scheduled_job_registry.get_job_ids()
        assert f"engage-reminder-{reminder_id}-{int(back.timestamp())}" in jobs


# -- S41: reminders on links and files ------------------------------------------------------------


def _state(app, reminder_id) -> Reminder:
    with app.app_context():
        row = db.session.get(Reminder, reminder_id)
        db.session.expunge(row)
        return row


def click(app, token: str, user_agent: str = CHROME) -> int:
    return (
        app.test_client()
        .get(
            f"/crm/engage/t/c/{token}/1",
            headers={"User-Agent": user_agent},
            environ_base={"REMOTE_ADDR": "203.0.113.9"},
        )
        .status_code
    )


def test_no_link_clicked_resolves_itself_on_a_persons_click_only_for_the_watched_recipient(
    beyond_app,
):
    def followed_to_ada_and_grace() -> tuple[int, Party]:
        email_id = send_followed(beyond_app)
        assert run_delivery(beyond_app, email_id) == "sent"
        age_delivery(beyond_app, email_id)
        recipients = load(beyond_app, email_id).recipients
        return email_id, next(p for p in recipients if p.address.startswith("grace"))

    first, grace = followed_to_ada_and_grace()
    ada_only = add_reminder(beyond_app, first, NO_CLICK, recipient="ada@example.com")
    open_pixel(beyond_app, grace.token)  # a person opens before clicking (S14)
    assert click(beyond_app, grace.token) == 302
    drain(beyond_app)
    assert _state(beyond_app, ada_only).state == "pending"  # Grace is not the one watched

    second, grace = followed_to_ada_and_grace()
    anyone = add_reminder(beyond_app, second, NO_CLICK)
    # A link scanner's click (an HTTP library's, S14) is a machine's: it settles nothing.
    assert click(beyond_app, grace.token, user_agent="python-requests/2.32.3") == 302
    drain(beyond_app)
    assert _state(beyond_app, anyone).state == "pending"
    open_pixel(beyond_app, grace.token)
    assert click(beyond_app, grace.token) == 302
    drain(beyond_app)
    resolved = _state(beyond_app, anyone)
    assert resolved.state == "resolved"
    # Stored as data, read in the reader's language (S45).
    assert resolved.resolved_reason == stored("reminder.clicked", name="Grace Hopper")


def _email_with_followed_file(app) -> tuple[int, int]:
    with app.app_context():
        draft = DraftInput(
            to="Ada Lovelace <ada@example.com>",
            subject="The offer",
            body="<div>Here it is</div>",
            regarding=RecordRef("customer", "1"),
            follow=True,
        )
        email = save_draft(db.session, SAM, draft, None)
        stored = store_upload("offer.pdf", io.BytesIO(b"%PDF-1.4 offer"), "application/pdf")
        attachment = attach(db.session, email, stored)
        attachment.followed = True
        db.session.commit()
        submit(db.session, SAM, email)
        return email.id, attachment.id


def test_attachment_not_opened_fires_until_the_file_is_opened_then_resolves_itself(beyond_app):
    email_id, file_id = _email_with_followed_file(beyond_app)
    assert run_delivery(beyond_app, email_id) == "sent"
    age_delivery(beyond_app, email_id)
    watched = add_reminder(beyond_app, email_id, FILE_NOT_OPENED, attachment_id=file_id)
    ada = load(beyond_app, email_id).recipients[0]

    open_pixel(beyond_app, ada.token)  # an open is not a file open
    drain(beyond_app)
    assert _state(beyond_app, watched).state == "pending"

    got = beyond_app.test_client().get(
        f"/crm/engage/t/a/{ada.token}/{file_id}", headers={"User-Agent": CHROME}
    )
    assert got.status_code == 200 and got.data == b"%PDF-1.4 offer"
    drain(beyond_app)
    row = _state(beyond_app, watched)
    assert (row.state, row.resolved_reason) == (
        "resolved",
        stored("reminder.file_opened", name="Ada Lovelace", file="offer.pdf"),
    )


def test_the_email_page_sets_a_link_reminder_for_one_recipient_and_refuses_a_stranger(
    beyond_app,
):
    email_id = send_followed(beyond_app)
    run_delivery(beyond_app, email_id)
    client = sign_in(beyond_app.test_client(), 1)
    page = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "If no link is clicked by" in page and "If the attachment is not opened by" in page
    assert "Whose clicks, opens and replies count" in page
    when = (utcnow() + timedelta(days=2)).astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M")
    fields = {
        "csrf_token": csrf_token(client, f"/crm/engage/emails/{email_id}"),
        "browser_zone": "Europe/Berlin",
        "reminder_title_input": "Did Grace look?",
        "reminder_condition_input": NO_CLICK,
        "reminder_at_local": when,
    }
    refused = client.post(
        f"/crm/engage/emails/{email_id}/reminder",
        data={**fields, "reminder_recipient_input": "mallory@example.net"},
    )
    assert refused.status_code == 422
    assert "Choose one of the email&#39;s recipients" in refused.get_data(as_text=True)
    no_file = client.post(
        f"/crm/engage/emails/{email_id}/reminder",
        data={**fields, "reminder_condition_input": FILE_NOT_OPENED},
    )
    assert no_file.status_code == 422 and "no followed attachment" in no_file.get_data(True)
    done = client.post(
        f"/crm/engage/emails/{email_id}/reminder",
        data={**fields, "reminder_recipient_input": "grace@example.com"},
    )
    assert done.status_code == 303
    page = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "if grace@example.com hasn&#39;t clicked a link" in page
    with beyond_app.app_context():
        row = db.session.scalars(sa.select(Reminder)).one()
        assert (row.condition, row.recipient) == (NO_CLICK, "grace@example.com")


# -- S43: the recipient's own choice ----------------------------------------------------------


def text_of(received) -> str:
    message = message_from_bytes(received.data, policy=policy.default)
    return message.get_body(("plain",)).get_content()


def opt_out_link(received) -> str:
    found = re.search(r"(https://crm\.example\.com/crm/engage/o/[\w.-]+)", text_of(received))
    return found.group(1)


def test_the_line_is_off_by_default(beyond_app, smtp_sink):
    run_delivery(beyond_app, send_followed(beyond_app, cc=""))
    assert "/engage/o/" not in text_of(smtp_sink.messages[0])


def test_one_click_opts_a_recipient_out_in_the_emails_language_and_stops_tracking_that_copy(
    beyond_app, smtp_sink
):
    with beyond_app.app_context():
        db.session.get(Customer, 1).language = "de"
        db.session.commit()
    client = sign_in(beyond_app.test_client(), 5)  # Alex, the admin
    client.post(
        "/crm/engage/settings",
        data={
            "csrf_token": csrf_token(client, "/crm/engage/settings"),
            "engagement_enabled": "y",
            "opt_out_line": "y",
        },
    )
    email_id = send_followed(beyond_app)
    assert run_delivery(beyond_app, email_id) == "sent"
    age_delivery(beyond_app, email_id)
    copies = {r.rcpt_tos[0]: r for r in smtp_sink.messages}
    assert "Meine Öffnungen und Klicks nicht verfolgen" in text_of(copies["ada@example.com"])
    assert "Don't track my opens and clicks" in text_of(copies["grace@example.com"])
    ada_link = opt_out_link(copies["ada@example.com"])
    assert ada_link != opt_out_link(copies["grace@example.com"])
    path = ada_link.removeprefix(PUBLIC)
    ada = next(p for p in load(beyond_app, email_id).recipients if p.address.startswith("ada"))

    stranger = beyond_app.test_client()  # no sign-in
    shown = stranger.get(path)  # what a mail scanner's fetch does: nothing changes
    assert shown.status_code == 200 and 'lang="de"' in shown.get_data(as_text=True)
    assert "Verfolgung meiner Öffnungen und Klicks beenden" in shown.get_data(as_text=True)
    assert load(beyond_app, email_id).recipients[0].opted_out_at is None

    done = stranger.post(path)
    assert "Erledigt" in done.get_data(as_text=True)
    again = stranger.post(path)  # works once: the second use finds it done
    assert "bereits nicht verfolgt" in again.get_data(as_text=True)

    open_pixel(beyond_app, ada.token)  # still a GIF, but nothing is recorded
    assert drain(beyond_app) == 0
    with beyond_app.app_context():
        [row] = db.session.scalars(sa.select(TrackingOptOut)).all()
        assert (row.address, row.in_adapter, row.party_id) == ("ada@example.com", False, ada.id)
        # No set_follow_preference on this host's adapter: engage's own table is honoured (S9).
        preference = recipient_preference("ada@example.com").preference
        assert preference is FollowPreference.DO_NOT_ALLOW
        assert recipient_preference("grace@example.com").preference is FollowPreference.ALLOW
        kinds = db.session.scalars(sa.select(Activity.kind).where(Activity.record_id == "1")).all()
        assert ActivityKind.OPT_OUT in kinds
    timeline = (
        sign_in(beyond_app.test_client(), 1)
        .get("/crm/engage/timeline/customer/1")
        .get_data(as_text=True)
    )
    assert "ada@example.com asked not to have their opens and clicks tracked" in timeline
    # The next email to Ada cannot be followed.
    later = send_followed(beyond_app, cc="")
    run_delivery(beyond_app, later)
    assert load(beyond_app, later).recipients[0].token is None


def test_a_forged_or_altered_link_changes_nothing(beyond_app):
    email_id = send_followed(beyond_app, cc="")
    run_delivery(beyond_app, email_id)
    party_id = load(beyond_app, email_id).recipients[0].id
    with beyond_app.app_context():
        token = opt_out_token(party_id, "en")
        assert read_opt_out_token(token).party_id == party_id
        forged = token.replace(token[2], "A" if token[2] != "A" else "B", 1)
        assert read_opt_out_token(forged) is None
    client = beyond_app.test_client()
    assert client.post(f"/crm/engage/o/{forged}").status_code == 404
    assert client.post("/crm/engage/o/not-a-token").status_code == 404
    with beyond_app.app_context():
        assert db.session.scalars(sa.select(TrackingOptOut)).all() == []
        assert db.session.get(Party, party_id).opted_out_at is None


def test_record_absence_and_absent_until_are_plain_domain_functions(beyond_app):
    with beyond_app.app_context():
        noted = utcnow()
        record_absence(
            db.session,
            address="Jonas@Example.de",
            returns_on=(noted + timedelta(days=3)).date(),
            noted_at=noted,
            zone="Europe/Berlin",
        )
        db.session.commit()
        back = absent_until(db.session, "jonas@example.de", noted + timedelta(hours=1))
        assert back is not None and back.astimezone(BERLIN).hour == 8
        assert absent_until(db.session, "jonas@example.de", back) is None
        assert absent_until(db.session, "jonas@example.de", noted - timedelta(hours=1)) is None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Email)) == 0


def test_link_and_file_conditions_judge_peoples_events_as_plain_values():
    from engage.reminders import RecipientFacts, evaluate, summary

    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ada = RecipientFacts("Ada", address="ada@example.com", file_opened_at={7: at})
    grace = RecipientFacts("Grace", address="grace@example.com", first_click_at=at)
    assert evaluate(NO_CLICK, [ada], "Offer").holds
    assert evaluate(NO_CLICK, [ada, grace], "Offer") == evaluate(NO_CLICK, [grace], "Offer")
    assert not evaluate(NO_CLICK, [grace], "Offer").holds
    assert evaluate(NO_CLICK, [grace], "Offer").met_at == at
    opened = evaluate(FILE_NOT_OPENED, [ada], "Offer", attachment_id=7, attachment_name="a.pdf")
    assert (opened.holds, opened.what) == (
        False,
        stored("reminder.file_opened", name="Ada", file="a.pdf"),
    )
    assert evaluate(FILE_NOT_OPENED, [ada], "Offer", attachment_id=8).holds
    assert not evaluate(FILE_NOT_OPENED, [ada], "Offer").holds  # any file
    text = summary(
        condition=FILE_NOT_OPENED,
        remind_at=at + timedelta(days=1),
        state="pending",
        who="Ada",
        zone="Europe/Berlin",
        now=at,
        file="a.pdf",
    )
    # The time in the rep's zone, with its date as it is not today (S45).
    assert text == "Remind me Wed, Dec 2, 10:00\u202fAM if Ada hasn't opened a.pdf"
