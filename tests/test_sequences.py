"""Sequences (SPEC S46–S48) through the doors people use: the rules of time as plain functions,
then enrolments driven by real ``rq`` workers from the database to a real SMTP sink, replies
through the inbound endpoint and a real IMAP mailbox, and the pages of managers and reps.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from engage import current_engage, jobs
from engage.best_time import WorkingHours
from engage.models import (
    Card,
    Email,
    EmailSequence,
    EmailStatus,
    EmailTemplate,
    Enrolment,
    EnrolmentState,
    Party,
    PartyRole,
    SequenceSend,
    StepKind,
    utcnow,
)
from engage.opt_out import opt_out_url
from engage.records import RecordRef
from engage.sequences import (
    StepInput,
    advance,
    end_enrolments_for_address,
    enrol,
    pause_enrolments_until,
    reply_subject,
    save_sequence,
    send_gap,
    step_due,
)
from tests.hostapp import Customer, db
from tests.support import (
    ROOT,
    SAM,
    TOKEN,
    csrf_token,
    post_inbound,
    reply,
    rq_worker,
    sign_in,
    store_zones,
    worker_env,
)

SEQUENCES = "/crm/engage/sequences"
ADA = RecordRef("customer", "1")
GRACE = RecordRef("customer", "2")
HIDDEN = RecordRef("customer", "3")


# -- the rules of time ---------------------------------------------------------------------------


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_wait_counts_working_days_in_the_recipients_zone_across_a_dst_change():
    # Friday 27 March 2026, 10:00 UTC; Europe moves to summer time on Sunday 29 March.
    friday = utc(2026, 3, 27, 10, 0)
    due = step_due(friday, 2, zone="Europe/Berlin", country="DE")
    # Two working days on: Tuesday 31 March, 08:00 in Berlin, which is now UTC+2.
    assert due == utc(2026, 3, 31, 6, 0)
    # Los Angeles changed on 8 March: Friday 6 March 12:00 PST, one working day on is Monday
    # 9 March 08:00 PDT (UTC-7).
    assert step_due(utc(2026, 3, 6, 20, 0), 1, zone="America/Los_Angeles") == utc(2026, 3, 9, 15, 0)


def test_a_step_due_now_waits_for_the_working_day_east_and_west_of_the_rep():
    late_friday = utc(2026, 11, 27, 23, 30)  # Saturday morning in Tokyo, evening in New York
    assert step_due(late_friday, 0, zone="Asia/Tokyo") == utc(2026, 11, 29, 23, 0)  # Mon 08:00
    assert step_due(late_friday, 0, zone="America/New_York") == utc(2026, 11, 30, 13, 0)
    inside = utc(2026, 11, 24, 10, 0)  # Tuesday 10:00 in London: working time, so at once
    assert step_due(inside, 0, zone="Europe/London") == inside


def test_public_holidays_of_the_recipients_country_are_not_working_days():
    # Maundy Thursday 2 April 2026; Good Friday and Easter Monday are holidays in Germany.
    thursday = utc(2026, 4, 2, 9, 0)
    assert step_due(thursday, 1, zone="Europe/Berlin", country="DE") == utc(2026, 4, 7, 6, 0)
    assert step_due(thursday, 1, zone="Europe/Berlin") == utc(2026, 4, 3, 6, 0)


def test_the_daily_limit_is_spread_over_the_working_day_and_replies_say_re_once():
    assert send_gap(9, WorkingHours()) == timedelta(hours=1)
    assert send_gap(0, WorkingHours()) == timedelta(0)
    assert reply_subject("Our offer") == "Re: Our offer"
    assert reply_subject("RE: Our offer") == "RE: Our offer"


# -- set-up ---------------------------------------------------------------------------------------


def add_template(app, name: str, subject: str, body: str) -> int:
    with app.app_context():
        template = EmailTemplate(
            name=name,
            language="en",
            subject=subject,
            html_body=body,
            text_body="",
            created_by="3",
            updated_by="3",
        )
        db.session.add(template)
        db.session.commit()
        return template.id


def add_sequence(app, *steps: tuple[StepKind, int, int | None], thread: bool = False) -> int:
    with app.app_context():
        sequence = save_sequence(
            db.session,
            None,
            by="3",
            name="Welcome",
            thread_replies=thread,
            steps=[
                StepInput(kind, wait, template, "Ask about the trial")
                for kind, wait, template in steps
            ],
        )
        return sequence.id


def enrol_now(app, sequence_id: int, *refs: RecordRef, at: datetime | None = None) -> list[int]:
    with app.app_context():
        sequence = db.session.get(EmailSequence, sequence_id)
        result = enrol(db.session, SAM, sequence, refs, now=at)
        return [e.id for e in result.enrolled]


def make_due(app) -> None:
    """Time passes: every running enrolment's step is due now."""
    with app.app_context():
        db.session.execute(
            sa.update(Enrolment)
            .where(Enrolment.state == EnrolmentState.ACTIVE)
            .values(due_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()


def enrolment(app, enrolment_id: int) -> Enrolment:
    with app.app_context():
        row = db.session.get(Enrolment, enrolment_id)
        db.session.expunge(row)
        return row


def sequence_row(app, sequence_id: int) -> EmailSequence:
    with app.app_context():
        row = db.session.get(EmailSequence, sequence_id)
        _ = [s.sent for s in row.steps]
        db.session.expunge_all()
        return row


@pytest.fixture
def run_worker(app, smtp_sink, database_url, redis_url, redis_client):
    """Queue the periodic sweep and let a real ``rq worker --burst`` run it and what it queues."""
    app.config.update(ENGAGE_SMTP_URL=smtp_sink.url, ENGAGE_INBOUND_TOKEN=TOKEN)

    def run(job=jobs.sweep, **config) -> str:
        # No daily limit unless a test sets one: each test sends a handful at once.
        config = {"ENGAGE_SEQUENCE_DAILY_LIMIT": 0, **config}
        with app.app_context():
            current_engage.queue.enqueue(job)
        done = subprocess.run(
            rq_worker(redis_url, "--burst"),
            cwd=ROOT,
            env=worker_env(
                database_url,
                redis_url,
                ENGAGE_SMTP_URL=smtp_sink.url,
                FLASK_APP=f"tests.hostapp:create_app({config!r})",
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    return run


@pytest.fixture
def app_config() -> dict:
    """No daily limit for the jobs run in the test's own process either."""
    return {"ENGAGE_SEQUENCE_DAILY_LIMIT": 0}


@pytest.fixture
def greeting(app) -> int:
    return add_template(
        app,
        "Welcome",
        "Welcome, {{ recipient.first_name }}",
        "<p>Hello {{ recipient.first_name }}, glad to meet you.</p>",
    )


# -- through the worker and the SMTP sink ---------------------------------------------------------


def test_each_recipient_gets_the_step_at_their_own_working_time_written_for_them(
    app, smtp_sink, run_worker, greeting
):
    follow_up = add_template(app, "Follow-up", "Any questions?", "<p>Still there?</p>")
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 3, follow_up)
    )
    store_zones(app, c1="Europe/London", c2="America/New_York")
    monday = utc(2026, 11, 23, 9, 0)  # 09:00 in London, 04:00 in New York
    ada, grace = enrol_now(app, sequence_id, ADA, GRACE, at=monday)
    assert enrolment(app, ada).due_at == monday  # inside London's working day: at once
    assert enrolment(app, grace).due_at == utc(2026, 11, 23, 13, 0)  # 08:00 in New York

    run_worker()  # both first steps are past due now

    received = {m.rcpt_tos[0]: m.message for m in smtp_sink.messages}
    assert set(received) == {"ada@example.com", "grace@example.com"}
    assert received["ada@example.com"]["Subject"] == "Welcome, Ada"
    assert received["grace@example.com"]["Subject"] == "Welcome, Grace"
    texts = {
        m.rcpt_tos[0]: m.message.get_payload()[0].get_payload(decode=True)
        for m in smtp_sink.messages
    }
    assert b"Hello Grace" in texts["grace@example.com"]
    assert b"Hello Ada" in texts["ada@example.com"]
    for enrolment_id, zone in ((ada, "Europe/London"), (grace, "America/New_York")):
        row = enrolment(app, enrolment_id)
        assert row.next_position == 1
        local = row.due_at.astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (8, 0)
        assert local.weekday() < 5
        # Three working days after the day the first step went.
        assert local.date() > utcnow().astimezone(ZoneInfo(zone)).date()
    steps = sequence_row(app, sequence_id).steps
    assert [s.sent for s in steps] == [2, 0]


def test_a_reply_through_the_inbound_endpoint_ends_the_enrolment_and_no_more_is_sent(
    app, smtp_sink, run_worker, greeting
):
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 1, greeting)
    )
    (ada,) = enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker()
    first = smtp_sink.messages[0].message["Message-ID"]

    assert post_inbound(app, reply(first)).status_code == 200

    row = enrolment(app, ada)
    assert (row.state, row.end_reason.value) == (EnrolmentState.ENDED, "replied")
    make_due(app)
    run_worker()
    assert len(smtp_sink.messages) == 1
    sequence = sequence_row(app, sequence_id)
    assert sequence.replied == 1
    assert [s.replied for s in sequence.steps] == [1, 0]


def test_an_auto_reply_does_not_stop_the_sequence(app, smtp_sink, run_worker, greeting):
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 1, greeting)
    )
    (ada,) = enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker()
    first = smtp_sink.messages[0].message["Message-ID"]
    away = reply(
        first,
        subject="Automatic reply: Welcome, Ada",
        text="I am out of the office until Monday.",
        headers={"Auto-Submitted": "auto-replied"},
    )
    assert post_inbound(app, away).get_json()["status"] == "auto_reply"
    assert enrolment(app, ada).state is EnrolmentState.ACTIVE
    make_due(app)
    run_worker()
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["ada@example.com"]] * 2


def test_a_reply_read_from_the_imap_mailbox_ends_the_enrolment(
    app, smtp_sink, run_worker, greeting, mailbox
):
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 1, greeting)
    )
    (ada,) = enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker()
    mailbox.append(reply(smtp_sink.messages[0].message["Message-ID"]))
    run_worker(jobs.poll_imap, ENGAGE_IMAP_URL=mailbox.url)
    assert enrolment(app, ada).end_reason.value == "replied"


def test_later_emails_go_as_replies_in_the_thread_of_the_first(
    app, smtp_sink, run_worker, greeting
):
    other = add_template(app, "Second", "A new subject", "<p>Just checking in.</p>")
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 2, other), thread=True
    )
    enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker()
    make_due(app)
    run_worker()
    first, second = (m.message for m in smtp_sink.messages)
    assert first["In-Reply-To"] is None
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]
    assert second["Subject"] == "Re: Welcome, Ada"
    assert second["Message-ID"] != first["Message-ID"]


def test_an_absence_pauses_the_enrolment_and_it_resumes_after_the_return(
    app, smtp_sink, run_worker, greeting
):
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    (ada,) = enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    back = utcnow() + timedelta(hours=1)
    with app.app_context():
        assert pause_enrolments_until(db.session, "Ada@Example.com", back) == 1
        db.session.commit()
    make_due(app)  # touches running enrolments only
    run_worker()
    assert smtp_sink.messages == []
    assert enrolment(app, ada).state is EnrolmentState.PAUSED

    # The hour passes: Ada is back.
    with app.app_context():
        db.session.execute(
            sa.update(Enrolment).values(paused_until=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    back = utcnow()
    run_worker()  # the sweep sees the absence is over
    row = enrolment(app, ada)
    assert row.state is EnrolmentState.ACTIVE and row.paused_until is None
    local = row.due_at.astimezone(ZoneInfo("UTC"))  # Ada's zone is not known: the rep's
    assert row.due_at >= back - timedelta(seconds=1)
    assert WorkingHours().contains(local.time()) and local.weekday() < 5
    make_due(app)
    run_worker()
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["ada@example.com"]]


def test_an_out_of_office_reply_with_a_return_date_pauses_the_sequence_until_then(
    app, smtp_sink, run_worker, greeting
):
    # Through the door a mail server uses: the auto-reply reaches the inbound endpoint (S42),
    # and the recipient's sequence waits for their return (S47).
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 1, greeting)
    )
    (ada,) = enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker()
    first = smtp_sink.messages[0].message["Message-ID"]
    back_on = (utcnow() + timedelta(days=14)).date()
    away = reply(
        first,
        subject="Abwesenheitsnotiz: Welcome, Ada",
        text=f"Guten Tag,\n\nich bin ab dem {back_on:%d.%m.%Y} wieder im Büro.",
        headers={"Auto-Submitted": "auto-replied"},
    )
    assert post_inbound(app, away).get_json()["status"] == "auto_reply"
    row = enrolment(app, ada)
    assert row.state is EnrolmentState.PAUSED
    assert row.paused_until is not None and row.paused_until.date() >= back_on
    make_due(app)
    run_worker()
    assert len(smtp_sink.messages) == 1  # nothing more while Ada is away


def test_the_recipients_opt_out_link_ends_their_sequence(app, smtp_sink, run_worker, greeting):
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 1, greeting)
    )
    (ada,) = enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker()
    app.config["ENGAGE_PUBLIC_URL"] = "https://crm.example.com"  # where the link points
    with app.app_context():
        party = db.session.scalars(
            sa.select(Party).where(Party.address == "ada@example.com", Party.role == PartyRole.TO)
        ).one()
        path = urlsplit(opt_out_url(party, "de")).path
    # One click on the link's confirmation page: a POST, without signing in (S43).
    assert app.test_client().post(path).status_code == 200
    row = enrolment(app, ada)
    assert (row.state, row.end_reason.value) == (EnrolmentState.ENDED, "opted_out")
    assert sequence_row(app, sequence_id).opted_out == 1
    make_due(app)
    run_worker()
    assert len(smtp_sink.messages) == 1


def test_the_daily_limit_holds_back_what_is_over_it_until_the_reps_next_day(
    app, smtp_sink, run_worker, greeting
):
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    ids = enrol_now(app, sequence_id, ADA, GRACE, HIDDEN, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker(ENGAGE_SEQUENCE_DAILY_LIMIT=2, ENGAGE_SEQUENCE_SPREAD=False)
    assert len(smtp_sink.messages) == 2
    held = [enrolment(app, i) for i in ids if enrolment(app, i).next_position == 0]
    assert len(held) == 1
    tomorrow = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time(), UTC)
    assert held[0].due_at >= tomorrow  # Sam's zone is UTC


def test_a_spread_limit_sends_one_at_a_time_apart(app, smtp_sink, run_worker, greeting):
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    ids = enrol_now(app, sequence_id, ADA, GRACE, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker(ENGAGE_SEQUENCE_DAILY_LIMIT=9)  # a working day of 9 h: one an hour
    assert len(smtp_sink.messages) == 1
    (held,) = [enrolment(app, i) for i in ids if enrolment(app, i).next_position == 0]
    assert held.due_at >= utcnow() + timedelta(minutes=55)


def test_a_step_is_done_once_however_often_its_job_runs_or_redis_forgets(
    app, smtp_sink, run_worker, greeting, redis_client
):
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    ids = enrol_now(app, sequence_id, ADA, GRACE, at=utcnow() - timedelta(days=7))
    app.config["ENGAGE_SMTP_URL"] = smtp_sink.url
    with app.app_context():
        jobs.sweep()  # queues the due enrolments
    redis_client.flushdb()  # and Redis loses the queue
    with app.app_context():
        assert advance(ids) == 2
        assert advance(ids) == 0  # a second job finds the steps done
    run_worker()  # the sweep queues nothing more: the database says it is done
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == [
        "ada@example.com",
        "grace@example.com",
    ]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SequenceSend)) == 2


def test_a_recipient_who_does_not_allow_following_gets_the_step_unfollowed(
    app, smtp_sink, run_worker, greeting
):
    app.config["ENGAGE_PUBLIC_URL"] = "https://crm.example.com"
    with app.app_context():
        db.session.get(Customer, 2).tracking_ok = False
        db.session.commit()
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    enrol_now(app, sequence_id, ADA, GRACE, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker(ENGAGE_PUBLIC_URL="https://crm.example.com")
    bodies = {m.rcpt_tos[0]: m.data.decode() for m in smtp_sink.messages}
    assert "/t/o/" in bodies["ada@example.com"]  # Ada's copy carries her pixel
    assert "/t/o/" not in bodies["grace@example.com"]
    with app.app_context():
        grace = db.session.scalars(
            sa.select(Party).where(Party.address == "grace@example.com")
        ).one()
        assert grace.token is None


def test_a_hard_bounce_ends_the_enrolment(app, start_smtp_sink, database_url, redis_url, greeting):
    refusing = start_smtp_sink(refuse={"grace@example.com": "550 5.1.1 no such user"})
    app.config["ENGAGE_SMTP_URL"] = refusing.url
    sequence_id = add_sequence(
        app, (StepKind.AUTO_EMAIL, 0, greeting), (StepKind.AUTO_EMAIL, 1, greeting)
    )
    (grace,) = enrol_now(app, sequence_id, GRACE, at=utcnow() - timedelta(days=7))
    with app.app_context():
        assert advance([grace]) == 1
    row = enrolment(app, grace)
    assert (row.state, row.end_reason.value) == (EnrolmentState.ENDED, "bounced")
    assert sequence_row(app, sequence_id).bounced == 1


def test_manual_emails_and_calls_reach_the_rep_as_cards(app, smtp_sink, run_worker, greeting):
    sequence_id = add_sequence(
        app, (StepKind.MANUAL_EMAIL, 0, greeting), (StepKind.CALL, 0, None), thread=True
    )
    (ada,) = enrol_now(app, sequence_id, ADA, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker()
    make_due(app)
    run_worker()
    assert smtp_sink.messages == []  # the rep sends the manual email
    with app.app_context():
        cards = db.session.scalars(sa.select(Card).order_by(Card.id)).all()
        assert [c.kind for c in cards] == ["sequence_email", "sequence_call"]
        assert all(c.owner_id == "1" and c.regarding == ADA for c in cards)
        draft = db.session.get(Email, cards[0].email_id)
        assert draft.status is EmailStatus.DRAFT
        assert draft.subject == "Welcome, Ada" and "Hello Ada" in draft.html_body
        assert [p.address for p in draft.parties_in(PartyRole.TO)] == ["ada@example.com"]
        assert cards[1].body == "Ask about the trial"
    row = enrolment(app, ada)
    assert (row.state, row.end_reason.value) == (EnrolmentState.ENDED, "finished")
    assert sequence_row(app, sequence_id).finished == 1


def test_an_opt_out_ends_every_running_enrolment_of_the_address(app, greeting):
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    (ada,) = enrol_now(app, sequence_id, ADA)
    with app.app_context():
        assert end_enrolments_for_address(db.session, "ADA@example.com", "opted_out") == 1
        assert end_enrolments_for_address(db.session, "ada@example.com", "opted_out") == 0
        db.session.commit()
    assert enrolment(app, ada).end_reason.value == "opted_out"
    assert sequence_row(app, sequence_id).opted_out == 1


# -- the pages ----------------------------------------------------------------------------------


def test_only_sales_managers_keep_sequences(app, greeting):
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    rep = sign_in(app.test_client(), 1)
    denied = rep.get(SEQUENCES)
    assert denied.status_code == 403
    assert "Sequences are written and kept by sales managers" in denied.get_data(as_text=True)
    assert rep.get(f"{SEQUENCES}/{sequence_id}").status_code == 403
    manager = sign_in(app.test_client(), 3)
    assert manager.get(SEQUENCES).status_code == 200
    assert manager.get(f"{SEQUENCES}/99999").status_code == 404
    assert manager.get(f"{SEQUENCES}/99999/edit").status_code == 404


def test_a_manager_writes_a_sequence_and_a_missing_template_is_pointed_out(app, greeting):
    manager = sign_in(app.test_client(), 3)
    form = {
        "csrf_token": csrf_token(manager, SEQUENCES + "/new"),
        "name": "Trial follow-up",
        "thread_replies": "y",
        "steps-0-kind": "auto_email",
        "steps-0-wait_days": "0",
        "steps-0-template": str(greeting),
        "steps-1-kind": "manual_email",
        "steps-1-wait_days": "3",
        "steps-1-template": "",
        "action": "save",
    }
    refused = manager.post(SEQUENCES + "/new", data=form)
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "Choose the template this email is written from." in page
    assert 'value="Trial follow-up"' in page  # nothing typed is lost
    form["steps-1-template"] = str(greeting)
    form["steps-2-kind"] = "call"
    form["steps-2-wait_days"] = "2"
    form["steps-2-notes"] = "Ask how the trial goes"
    saved = manager.post(SEQUENCES + "/new", data=form)
    assert saved.status_code == 302
    with app.app_context():
        sequence = db.session.scalars(sa.select(EmailSequence)).one()
        assert sequence.thread_replies
        assert [(s.kind.value, s.wait_days) for s in sequence.steps] == [
            ("auto_email", 0),
            ("manual_email", 3),
            ("call", 2),
        ]


def test_a_rep_enrols_a_record_sees_it_on_the_timeline_and_pauses_resumes_and_ends_it(
    app, greeting
):
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    rep = sign_in(app.test_client(), 1)
    enrol_url = f"{SEQUENCES}/enrol?records=customer:1&records=customer:3"
    assert "Enrol in a sequence" in rep.get(enrol_url).get_data(as_text=True)
    done = rep.post(
        f"{SEQUENCES}/enrol",
        data={
            "csrf_token": csrf_token(rep, enrol_url),
            "records": ["customer:1", "customer:3"],
            "sequence": str(sequence_id),
        },
    )
    assert done.status_code == 302
    timeline = rep.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "Sequence: Welcome" in timeline
    assert "Next: step 1 of 1, automatic email" in timeline
    with app.app_context():
        (row,) = db.session.scalars(sa.select(Enrolment).where(Enrolment.record_id == "1")).all()
    token = csrf_token(rep, "/crm/engage/timeline/customer/1")
    base = f"/crm/engage/enrolments/{row.id}"
    assert rep.post(f"{base}/pause", data={"csrf_token": token}).status_code == 302
    assert enrolment(app, row.id).state is EnrolmentState.PAUSED
    assert rep.post(f"{base}/resume", data={"csrf_token": token}).status_code == 302
    assert enrolment(app, row.id).state is EnrolmentState.ACTIVE
    assert rep.post(f"{base}/end", data={"csrf_token": token}).status_code == 302
    assert enrolment(app, row.id).end_reason.value == "ended_by_rep"
    # Another rep's enrolment is not there for Rita.
    rita = sign_in(app.test_client(), 2)
    assert rita.post(f"{base}/pause", data={"csrf_token": token}).status_code in {400, 404}
    page = sign_in(app.test_client(), 3).get(f"{SEQUENCES}/{sequence_id}").get_data(as_text=True)
    assert 'data-stat="enrolled">2<' in page
    assert 'data-stat="ended_by_rep">1<' in page


def test_a_manager_sees_each_steps_people_opens_and_replies(app, smtp_sink, run_worker, greeting):
    from tests.support import drain, open_pixel

    app.config["ENGAGE_PUBLIC_URL"] = "https://crm.example.com"
    sequence_id = add_sequence(app, (StepKind.AUTO_EMAIL, 0, greeting))
    enrol_now(app, sequence_id, ADA, GRACE, at=utcnow() - timedelta(days=7))
    make_due(app)
    run_worker(ENGAGE_PUBLIC_URL="https://crm.example.com")
    with app.app_context():
        ada = db.session.scalars(sa.select(Party).where(Party.address == "ada@example.com")).one()
        ada.delivered_at = utcnow() - timedelta(minutes=5)
        token = ada.token
        db.session.commit()
    open_pixel(app, token)
    drain(app)
    run_worker()
    (step,) = sequence_row(app, sequence_id).steps
    assert (step.sent, step.opened, step.replied) == (2, 1, 0)


def test_the_timeline_of_a_user_without_sequences_is_unchanged(app):
    rep = sign_in(app.test_client(), 1)
    page = rep.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "Sequence:" not in page
