"""Replies from every door: a real IMAP server (Dovecot), the inbound endpoint, the demo mailbox.

Each test sends an email with the host app through a real SMTP sink, takes the delivered
copy's Message-ID, and answers it the way a recipient's mail program would.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.cookiejar import CookieJar
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from rq.job import Job, JobStatus

from engage import current_engage
from engage.models import Activity, ActivityKind, Email, EventKind, Party, TrackingEvent
from engage.replies import (
    INBOUND_MAX_BYTES,
    ImapSettings,
    ReplyOutcome,
    auto_reply_reason,
    ingest,
    poll_imap,
    reply_excerpt,
)
from tests.hostapp import db
from tests.support import (
    DEMO_TEST_CLIENT,
    INBOUND,
    ROOT,
    TOKEN,
    demo_config,
    post_inbound,
    reply,
    reply_events,
    rq_worker,
    sign_in,
    worker_env,
)

# -- helpers ----------------------------------------------------------------------------------


def party_of(app, email_id: int, address: str) -> Party:
    with app.app_context():
        party = db.session.scalars(
            sa.select(Party).where(Party.email_id == email_id, Party.address == address)
        ).one()
        db.session.expunge(party)
        return party


def reply_activities(app) -> list[Activity]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(Activity).where(Activity.kind == ActivityKind.REPLY).order_by(Activity.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


def ingest_in(app, raw: bytes) -> ReplyOutcome:
    with app.app_context():
        return ingest(raw, source="test")


# -- the IMAP mailbox -------------------------------------------------------------------------


def test_a_reply_in_the_imap_mailbox_is_matched_marked_seen_and_read_only_once(app, sent, mailbox):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    # The email went out at 10:00; Ada's Date is trusted as it is later than that.
    with app.app_context():
        db.session.execute(
            sa.update(Email)
            .where(Email.id == sent["email_id"])
            .values(submitted_at=datetime(2024, 6, 3, 10, 0, tzinfo=UTC))
        )
        db.session.commit()
    written = datetime(2024, 6, 3, 11, 30, tzinfo=UTC)
    mailbox.append(reply(sent["message_id"], date=written))
    assert mailbox.flags() == [{r"\Recent"}]

    with app.app_context():
        assert poll_imap() == 1

    assert r"\Seen" in mailbox.flags()[0]
    ada = party_of(app, sent["email_id"], "ada@example.com")
    assert ada.replied_at == written
    [event] = reply_events(app)
    assert (event.email_id, event.party_id, event.machine) == (sent["email_id"], ada.id, False)
    assert event.occurred_at == written
    assert event.summary == "Re: Quarterly review\nTuesday works for me. Let's talk then."
    with app.app_context():
        assert poll_imap() == 0  # nothing unseen is left
    assert len(reply_events(app)) == 1


def test_the_rq_worker_started_from_the_cli_runs_the_imap_poll(
    app, sent, mailbox, database_url, redis_url, redis_client
):
    mailbox.append(reply(sent["message_id"]))
    with app.app_context():
        job = current_engage.queue.enqueue(poll_imap)
    imap_config = {"ENGAGE_IMAP_URL": mailbox.url}
    done = subprocess.run(
        rq_worker(redis_url, "--burst"),
        cwd=ROOT,
        env=worker_env(
            database_url, redis_url, FLASK_APP=f"tests.hostapp:create_app({imap_config!r})"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    job = Job.fetch(job.id, connection=redis_client)
    assert job.get_status() == JobStatus.FINISHED, done.stderr
    assert job.return_value() == 1
    assert r"\Seen" in mailbox.flags()[0]
    ada = party_of(app, sent["email_id"], "ada@example.com")
    assert ada.replied_at is not None
    assert [e.party_id for e in reply_events(app)] == [ada.id]


def test_a_message_that_fails_to_ingest_stays_unseen_and_is_read_next_time(
    app, sent, mailbox, monkeypatch
):
    import engage.replies

    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(reply(sent["message_id"]))

    def crash(raw: bytes, *, source: str) -> ReplyOutcome:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(engage.replies, "ingest", crash)
        with app.app_context():
            assert poll_imap() == 0
    assert r"\Seen" not in mailbox.flags()[0]
    assert reply_events(app) == []

    with app.app_context():
        assert poll_imap() == 1
    assert r"\Seen" in mailbox.flags()[0]
    assert len(reply_events(app)) == 1


def test_a_second_poller_stands_back_while_one_holds_the_lock(app, sent, mailbox):
    app.config["ENGAGE_IMAP_URL"] = mailbox.url
    mailbox.append(reply(sent["message_id"]))
    with app.app_context():
        lock = current_engage.redis.lock("engage:imap", timeout=60)
        assert lock.acquire(blocking=False)
        try:
            assert poll_imap() == 0
        finally:
            lock.release()
    assert r"\Seen" not in mailbox.flags()[0]


def test_the_poll_does_nothing_without_a_mailbox(app, redis_client):
    assert app.config["ENGAGE_IMAP_URL"] is None
    with app.app_context():
        assert poll_imap() == 0


def test_imap_urls_carry_percent_encoded_credentials_and_a_mailbox():
    plain = ImapSettings.from_url("imap://replies%40crm.example.com:p%3Ass%20w@mail.example.com")
    assert (plain.host, plain.port, plain.tls) == ("mail.example.com", 143, "none")
    assert (plain.user, plain.password, plain.mailbox) == (
        "replies@crm.example.com",
        "p:ss w",
        "INBOX",
    )
    secure = ImapSettings.from_url("imaps://u:p@mail.example.com/Replies%20to%20CRM")
    assert (secure.port, secure.tls, secure.mailbox) == (993, "ssl", "Replies to CRM")
    upgraded = ImapSettings.from_url("imap+starttls://u:p@mail.example.com:1143/INBOX")
    assert (upgraded.port, upgraded.tls) == (1143, "starttls")
    with pytest.raises(ValueError, match="imap://"):
        ImapSettings.from_url("pop3://u:p@mail.example.com")
    with pytest.raises(ValueError, match="user"):
        ImapSettings.from_url("imap://mail.example.com")


# -- the inbound endpoint ---------------------------------------------------------------------


def test_the_inbound_endpoint_matches_a_reply_and_answers_json(app, sent):
    response = post_inbound(app, reply(sent["message_id"]))
    assert response.status_code == 200
    ada = party_of(app, sent["email_id"], "ada@example.com")
    assert response.get_json() == {
        "status": "matched",
        "email_id": sent["email_id"],
        "party_id": ada.id,
    }
    assert ada.replied_at is not None


def test_the_inbound_endpoint_needs_no_csrf_token_but_the_bearer_token(app, sent):
    # Any content type will do: some webhooks send text/plain or octet-stream.
    client = app.test_client()
    response = client.post(
        INBOUND,
        data=reply(sent["message_id"]),
        headers={"Authorization": f"bearer {TOKEN}"},
        content_type="application/octet-stream",
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "matched"


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_the_inbound_endpoint_refuses_a_missing_or_wrong_token(app, sent, token):
    response = post_inbound(app, reply(sent["message_id"]), token=token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert reply_events(app) == []


def test_the_inbound_endpoint_refuses_another_scheme(app, sent):
    response = app.test_client().post(
        INBOUND, data=reply(sent["message_id"]), headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert response.status_code == 401


def test_the_inbound_endpoint_is_off_without_a_token(app, sent):
    app.config["ENGAGE_INBOUND_TOKEN"] = None
    response = post_inbound(app, reply(sent["message_id"]))
    assert response.status_code == 404
    assert reply_events(app) == []


def test_the_inbound_endpoint_refuses_a_message_too_large(app, sent):
    huge = reply(sent["message_id"], text="x" * (INBOUND_MAX_BYTES + 10))
    response = post_inbound(app, huge)
    assert response.status_code == 413
    assert reply_events(app) == []


def test_the_inbound_endpoint_checks_the_size_of_a_chunked_body_as_it_reads(app, sent, serve):
    # A chunked body announces no length: the endpoint stops reading just past the limit.
    live = serve(app)
    piece = b"x" * (64 * 1024)
    chunks = (piece for _ in range(INBOUND_MAX_BYTES // len(piece) + 1))
    connection = http.client.HTTPConnection(live.url.removeprefix("http://"), timeout=30)
    try:
        connection.request(
            "POST",
            INBOUND,
            body=chunks,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "message/rfc822"},
            encode_chunked=True,
        )
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def test_the_inbound_endpoint_refuses_an_empty_body(app, sent):
    assert post_inbound(app, b"").status_code == 400
    assert post_inbound(app, b"\r\n  \r\n").status_code == 400


# -- what ingest makes of a message --------------------------------------------------------


@pytest.mark.parametrize(
    "headers, subject",
    [
        ({"Auto-Submitted": "auto-replied"}, "Re: Quarterly review"),
        ({}, "Automatic reply: Quarterly review"),
    ],
    ids=["auto-submitted header", "subject only"],
)
def test_an_out_of_office_is_a_machine_reply_and_no_reply(app, sent, headers, subject):
    response = post_inbound(
        app,
        reply(
            sent["message_id"],
            subject=subject,
            text="I am out of the office until Monday.",
            headers=headers,
        ),
    )
    assert response.get_json()["status"] == "auto_reply"
    [event] = reply_events(app)
    assert event.machine and event.rule == "auto_reply"
    assert event.reason in {"Auto-Submitted: auto-replied", "subject starts with 'Automatic reply'"}
    assert party_of(app, sent["email_id"], "ada@example.com").replied_at is None
    assert reply_activities(app) == []


def test_a_reply_to_an_unknown_message_is_unmatched(app, sent):
    assert ingest_in(app, reply("<nobody-sent-this@example.com>")).status == "unmatched"
    assert ingest_in(app, reply(None)).status == "unmatched"
    assert reply_events(app) == []


def test_a_reply_deeper_in_the_thread_is_matched_through_references(app, sent):
    raw = reply(
        "<a-later-message@example.com>",
        references=f"{sent['message_id']} <a-later-message@example.com>",
    )
    outcome = ingest_in(app, raw)
    assert (outcome.status, outcome.email_id) == ("matched", sent["email_id"])


def test_a_reply_from_someone_who_was_not_a_recipient_is_unknown_sender(app, sent):
    outcome = ingest_in(app, reply(sent["message_id"], sender="Eve <eve@example.com>"))
    assert outcome == ReplyOutcome("unknown_sender", sent["email_id"], None)
    assert reply_events(app) == []


def test_every_recipient_is_told_apart_including_cc_and_bcc(app, sent):
    grace = ingest_in(app, reply(sent["message_id"], sender="GRACE@example.com"))
    hidden = ingest_in(
        app, reply(sent["message_id"], sender="bcc@example.com", message_id="<reply-2@x>")
    )
    assert grace.party_id == party_of(app, sent["email_id"], "grace@example.com").id
    assert hidden.party_id == party_of(app, sent["email_id"], "bcc@example.com").id
    assert party_of(app, sent["email_id"], "ada@example.com").replied_at is None


def test_the_same_reply_twice_is_stored_once(app, sent):
    raw = reply(sent["message_id"])
    assert ingest_in(app, raw).status == "matched"
    second = post_inbound(app, raw).get_json()
    assert second["status"] == "duplicate"
    assert second["party_id"] == party_of(app, sent["email_id"], "ada@example.com").id
    assert len(reply_events(app)) == 1
    assert len(reply_activities(app)) == 1


def test_a_reply_without_a_message_id_is_still_stored_once(app, sent):
    raw = reply(sent["message_id"], message_id=None)
    assert ingest_in(app, raw).status == "matched"
    assert ingest_in(app, raw).status == "duplicate"
    assert len(reply_events(app)) == 1


def test_a_reply_shows_on_the_regarding_records_timeline(app, sent):
    post_inbound(app, reply(sent["message_id"], subject="Re: Quarterly review - Tuesday?"))
    [activity] = reply_activities(app)
    assert (activity.record_type, activity.record_id) == ("customer", "1")
    assert activity.notes == "Tuesday works for me. Let's talk then."
    client = sign_in(app.test_client(), 1)
    page = client.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "Re: Quarterly review - Tuesday?" in page


def test_a_reply_from_the_cc_lands_on_its_own_record_too(app, sent):
    post_inbound(app, reply(sent["message_id"], sender="grace@example.com"))
    records = sorted((a.record_type, a.record_id) for a in reply_activities(app))
    assert records == [("customer", "1"), ("customer", "2")]


def test_a_future_date_is_taken_as_now(app, sent):
    post_inbound(app, reply(sent["message_id"], date=datetime.now(UTC) + timedelta(days=30)))
    [event] = reply_events(app)
    assert event.occurred_at <= datetime.now(UTC)


# -- the demo mailbox --------------------------------------------------------------------------


def test_the_demo_mailboxs_reply_reaches_engage_through_the_inbound_endpoint(
    tmp_path, database_url, redis_url, redis_client, serve
):
    from engage import RecordRef, user_from_attributes
    from engage.delivery import deliver
    from engage.demo import create_app
    from engage.demo.mailbox import start_smtp_sink
    from engage.demo.models import Contact, MailMessage, User
    from engage.demo.models import db as demo_db
    from engage.emails import DraftInput, save_draft, submit

    demo = create_app(
        demo_config(tmp_path / "demo", database_url, ENGAGE_REDIS_URL=redis_url, **DEMO_TEST_CLIENT)
    )
    assert demo.config["ENGAGE_INBOUND_TOKEN"]
    controller = start_smtp_sink(demo, "127.0.0.1", 0)
    demo.config["ENGAGE_SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}"
    try:
        with demo.app_context():
            mia = demo_db.session.scalars(sa.select(User).where(User.name == "Mia Berg")).one()
            contact = demo_db.session.scalars(
                sa.select(Contact).where(Contact.owner_id == mia.id).order_by(Contact.id)
            ).first()
            mia_id, address = mia.id, contact.email
            draft = DraftInput(
                to=address,
                subject="Angebot Q3",
                body="<p>Hallo, hier ist das Angebot.</p>",
                regarding=RecordRef("contact", str(contact.id)),
            )
            email = save_draft(demo_db.session, user_from_attributes(mia), draft, None)
            submit(demo_db.session, user_from_attributes(mia), email)
            email_id = email.id
            assert deliver(email_id) == "sent"
            original = demo_db.session.scalars(
                sa.select(MailMessage).where(MailMessage.subject == "Angebot Q3")
            ).one()
            original_id = original.id

        live = serve(demo)
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()), urllib.request.ProxyHandler({})
        )
        browser.open(f"{live.url}/sign-in", data=urlencode({"user_id": mia_id}).encode())
        answer = browser.open(
            f"{live.url}/mailbox/{original_id}/reply?recipient={address}",
            data=urlencode({"reply_as": address, "text": "Passt, danke!"}).encode(),
        )
        page = answer.read().decode()
        assert "Reply sent to" in page
        assert "engage recorded the reply on the email" in page

        with demo.app_context():
            party = demo_db.session.scalars(
                sa.select(Party).where(Party.email_id == email_id, Party.address == address)
            ).one()
            assert party.replied_at is not None
            event = demo_db.session.scalars(
                sa.select(TrackingEvent).where(TrackingEvent.kind == EventKind.REPLY)
            ).one()
            assert (event.party_id, event.machine) == (party.id, False)
            assert event.summary == "Re: Angebot Q3\nPasst, danke!"
            # The demo keeps its own copy of the reply in the mailbox, too.
            subjects = demo_db.session.scalars(sa.select(MailMessage.subject)).all()
            assert "Re: Angebot Q3" in subjects
    finally:
        controller.stop()
        with demo.app_context():
            demo_db.session.remove()
            demo_db.engine.dispose()


def test_the_demo_mailbox_says_so_when_engage_cannot_be_reached(tmp_path, database_url):
    from engage.demo import create_app
    from engage.demo.mailbox import store_message
    from engage.demo.models import User
    from engage.demo.models import db as demo_db

    demo = create_app(
        demo_config(
            tmp_path / "demo",
            database_url,
            **DEMO_TEST_CLIENT,
            # Nobody listens here: the test client is no server engage could be reached on.
            SERVER_NAME="127.0.0.1:9",
        )
    )
    try:
        with demo.app_context():
            original = EmailMessage()
            original["From"] = "Mia Berg <mia.berg@crm.example.com>"
            original["To"] = "ada@example.com"
            original["Subject"] = "Hello"
            original["Message-ID"] = "<hello@crm.example.com>"
            original.set_content("Hello Ada")
            row = store_message(
                demo_db.session,
                bytes(original),
                envelope_from="mia.berg@crm.example.com",
                envelope_to=["ada@example.com"],
            )
            demo_db.session.commit()
            message_id = row.id
            mia_id = demo_db.session.scalars(
                sa.select(User.id).where(User.name == "Mia Berg")
            ).one()
        client = demo.test_client()
        client.post("/sign-in", data={"user_id": mia_id})
        response = client.post(
            f"/mailbox/{message_id}/reply",
            data={"reply_as": "ada@example.com", "text": "Thanks!"},
            follow_redirects=True,
        )
        page = response.get_data(as_text=True)
        assert "Reply sent to mia.berg@crm.example.com" in page
        assert "engage could not be told about this reply" in page
        assert 'role="alert"' in page
    finally:
        with demo.app_context():
            demo_db.session.remove()
            demo_db.engine.dispose()


# -- telling auto-replies from people, and what a reply says -----------------------------------


def _message(headers: list[tuple[str, str]], body: str = "Thanks!") -> EmailMessage:
    message = EmailMessage()
    for name, value in headers:
        message[name] = value
    message.set_content(body)
    return message


BASE = [
    ("From", "Ada Lovelace <ada@example.com>"),
    ("To", "sam@host.test"),
    ("Subject", "Re: Quarterly review"),
]


def _with(**changes: str) -> list[tuple[str, str]]:
    names = {k.rstrip("_").replace("_", "-").lower(): v for k, v in changes.items()}
    kept = [(n, v) for n, v in BASE if n.lower() not in names]
    return kept + [(k.title(), v) for k, v in names.items()]


@pytest.mark.parametrize(
    "headers, reason",
    [
        (BASE, None),
        (_with(auto_submitted="auto-replied"), "Auto-Submitted: auto-replied"),
        (_with(auto_submitted="auto-generated"), "Auto-Submitted: auto-generated"),
        (_with(auto_submitted='auto-replied; owner-email="ada@example.com"'), "Auto-Submitted"),
        (_with(auto_submitted="no"), None),
        (_with(auto_submitted="No"), None),
        ([*BASE, ("X-Autoreply", "yes")], "X-Autoreply header"),
        ([*BASE, ("X-Autorespond", "Vacation")], "X-Autorespond header"),
        ([*BASE, ("X-Autoresponder", "1")], "X-Autoresponder header"),
        ([*BASE, ("Precedence", "bulk")], "Precedence: bulk"),
        ([*BASE, ("Precedence", "auto_reply")], "Precedence: auto_reply"),
        ([*BASE, ("Precedence", "Junk")], "Precedence: junk"),
        ([*BASE, ("Precedence", "list")], "Precedence: list"),
        ([*BASE, ("X-Precedence", "bulk")], "X-Precedence: bulk"),
        ([*BASE, ("Precedence", "first-class")], None),
        # Outlook puts this on ordinary mail: it asks others not to auto-reply.
        ([*BASE, ("X-Auto-Response-Suppress", "All")], None),
        ([*BASE, ("X-Auto-Response-Suppress", "DR, RN, NRN, OOF, AutoReply")], None),
        ([*BASE, ("Return-Path", "<>")], "null sender (Return-Path: <>)"),
        ([*BASE, ("Return-Path", "<ada@example.com>")], None),
        (
            _with(from_="Mail Delivery System <MAILER-DAEMON@mx.example.com>"),
            "sent by a mail server (mailer-daemon@mx.example.com)",
        ),
        (_with(subject="Automatic reply: Quarterly review"), "Automatic reply"),
        (_with(subject="Out of Office: Quarterly review"), "Out of Office"),
        (_with(subject="Out of Office AutoReply: Quarterly review"), "Out of Office"),
        (_with(subject="Auto-Reply: Quarterly review"), "Auto-Reply"),
        (_with(subject="[Autoreply] Quarterly review"), "Autoreply"),
        (_with(subject="Abwesenheitsnotiz: Quarterly review"), "Abwesenheitsnotiz"),
        (_with(subject="Automatische Antwort: Quarterly review"), "Automatische Antwort"),
        (_with(subject="Réponse automatique : Quarterly review"), "Réponse automatique"),
        (_with(subject="Absence: Quarterly review"), "Absence"),
        (_with(subject="Fuera de la oficina: Quarterly review"), "Fuera de la oficina"),
        (_with(subject="Respuesta automática: Quarterly review"), "Respuesta automática"),
        (_with(subject="Risposta automatica: Quarterly review"), "Risposta automatica"),
        (_with(subject="Automatisch antwoord: Quarterly review"), "Automatisch antwoord"),
        # A person writing about absences is still a person.
        (_with(subject="Re: Out of office next week?"), None),
        (_with(subject="Absence policy for next year"), None),
        (_with(subject="AW: Quarterly review"), None),
    ],
)
def test_auto_reply_reason_on_realistic_headers(headers, reason):
    found = auto_reply_reason(_message(headers))
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_a_delivery_report_and_a_read_receipt_are_machine_messages():
    report = EmailMessage()
    report["From"] = "postmaster@mx.example.com"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.set_content("Your message could not be delivered.")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    assert auto_reply_reason(report) == "sent by a mail server (postmaster@mx.example.com)"
    report.replace_header("From", "Ada <ada@example.com>")
    assert auto_reply_reason(report) == "delivery status notification"
    report.replace_header(
        "Content-Type", 'multipart/report; report-type="disposition-notification"'
    )
    assert auto_reply_reason(report) == "read receipt"


@pytest.mark.parametrize(
    "text, excerpt",
    [
        ("Sounds good.\n\nOn Mon, 3 Jun 2024, Sam wrote:\n> Hello\n> there\n", "Sounds good."),
        (
            "Sounds good.\n\nOn Mon, 3 Jun 2024 at 10:00, Sam Seller <\nsam@host.test> wrote:\n"
            "> Hello\n",
            "Sounds good.",
        ),
        ("Passt!\n\nAm 3. Juni 2024 schrieb Sam:\n> Hallo\n", "Passt!"),
        (
            "Passt!\n\nAm Mo., 3. Juni 2024 um 10:00 Uhr schrieb Sam Seller <\n"
            "sam@host.test>:\n> Hallo\n",
            "Passt!",
        ),
        ("Claro.\n\nEl lun, 3 jun 2024, Sam escribió:\n> Hola\n", "Claro."),
        ("Here are the numbers:\n42 units", "Here are the numbers:\n42 units"),
        ("Parfait.\n\nLe 3 juin 2024, Sam a écrit :\n> Bonjour\n", "Parfait."),
        ("> Can we meet?\nYes, Tuesday.\n> Bring the numbers\nWill do.", "Yes, Tuesday.\nWill do."),
        ("Yes.\n\n-----Original Message-----\nFrom: Sam\nHello", "Yes."),
        ("Yes.\n\n________________________________\nFrom: Sam\nSent: Monday\nHello", "Yes."),
        ("Yes.\n\nFrom: Sam Seller <sam@host.test>\nSent: Monday\nHello", "Yes."),
        ("Yes.\n-- \nAda Lovelace\nAnalytical Engines Ltd", "Yes."),
    ],
)
def test_the_excerpt_is_the_replys_own_words(text, excerpt):
    assert reply_excerpt(text) == excerpt


def test_a_long_excerpt_is_cut_at_a_word():
    excerpt = reply_excerpt("word " * 200)
    assert len(excerpt) <= 301 and excerpt.endswith("word…")


def test_an_html_only_reply_gives_its_text():
    message = EmailMessage()
    message["From"] = "ada@example.com"
    message.set_content("<p>Yes, <b>Tuesday</b>.</p><blockquote>old</blockquote>", subtype="html")
    from engage.replies import _body_text

    assert _body_text(message).startswith("Yes, Tuesday.")


def test_the_outcome_answers_the_inbound_json_shape():
    assert json.dumps(ReplyOutcome("matched", 1, 2).as_dict()) == (
        '{"status": "matched", "email_id": 1, "party_id": 2}'
    )
