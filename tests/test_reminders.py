"""Follow-up reminders (SPEC S25–S28): the Set reminder dialog, the job, the sweep.

Opens arrive through the pixel and the event worker, replies through the inbound endpoint,
so the conditions are judged on exactly what a real recipient (or their machine) produces.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engage import current_engage
from engage.emails import ReminderInput
from engage.i18n import read
from engage.jobs import sweep
from engage.models import Card, Email, Reminder, utcnow
from engage.reminders import (
    ANYWAY,
    NO_REPLY,
    NOT_OPENED,
    RecipientFacts,
    check,
    evaluate,
    fire_reminder,
    summary,
)
from tests.hostapp import db
from tests.support import (
    CHROME,
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
    run_delivery,
    send_followed,
    sign_in,
)

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def rem_app(app, smtp_sink, redis_client):
    app.config.update(
        ENGAGE_SMTP_URL=smtp_sink.url,
        ENGAGE_PUBLIC_URL="https://crm.example.com",
        ENGAGE_INBOUND_TOKEN=TOKEN,
    )
    return app


def local(delta: timedelta) -> str:
    """A datetime-local value in Berlin, ``delta`` from now."""
    return (utcnow() + delta).astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M")


def compose_form(client, **fields):
    """The compose form to Ada with a reminder in it (no reply within two days)."""
    defaults = {
        "to": "Ada Lovelace <ada@example.com>",
        "subject": "Quarterly review",
        "body": "Hello Ada",
        "browser_zone": "Europe/Berlin",
        "reminder_title_input": "Call Ada",
        "reminder_condition_input": NO_REPLY,
        "reminder_at_local": local(timedelta(days=2)),
    }
    return compose_fields(client, **(defaults | fields))


def sent_email(app, *, follow=True) -> int:
    """A followed email to Ada alone, delivered."""
    email_id = send_followed(app, cc="", follow=follow)
    assert run_delivery(app, email_id) == "sent"
    return email_id


def come_due(app, reminder_id: int, ago=timedelta(seconds=1)) -> str:
    """Move the reminder's time to just now, as if the clock had reached it."""
    with app.app_context():
        row = db.session.get(Reminder, reminder_id)
        row.remind_at = utcnow() - ago
        db.session.commit()
        return row.remind_at.isoformat()


def run(app, reminder_id: int, due: str) -> str:
    with app.app_context():
        return fire_reminder(reminder_id, due)


def cards(app) -> list[Card]:
    """The reminder cards (a human open also makes an *opened* card, not counted here)."""
    with app.app_context():
        return list(db.session.query(Card).filter(Card.kind == "reminder").order_by(Card.id))


def state(app, reminder_id: int) -> Reminder | None:
    with app.app_context():
        row = db.session.get(Reminder, reminder_id)
        if row is not None:
            db.session.expunge(row)
        return row


# -- rules, without Flask --------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday


def test_each_condition_holds_until_a_human_reply_or_open():
    nobody = [RecipientFacts("Ada"), RecipientFacts("Grace")]
    replied = [RecipientFacts("Ada", replied_at=NOW), RecipientFacts("Grace")]
    opened = [RecipientFacts("Ada"), RecipientFacts("Grace", opens=1, first_open_at=NOW)]
    assert evaluate(NO_REPLY, nobody, "Hi").holds
    assert not evaluate(NO_REPLY, replied, "Hi").holds
    assert read(evaluate(NO_REPLY, replied, "Hi").what) == "Ada replied"
    assert evaluate(NOT_OPENED, nobody, "Hi").holds
    verdict = evaluate(NOT_OPENED, opened, "Hi")
    assert not verdict.holds and read(verdict.what) == "Grace opened it" and verdict.met_at == NOW
    assert evaluate(ANYWAY, replied, "Hi").holds


def test_the_summary_reads_as_a_sentence_in_the_senders_zone():
    at = NOW + timedelta(days=1, hours=0)  # Tue 08:00 UTC, 09:00 in Berlin
    kw = {"remind_at": at, "zone": "Europe/Berlin", "now": NOW}
    assert (
        summary(condition=NO_REPLY, state="pending", who="Ada", **kw)
        == "Remind me Tue, Nov 24, 9:00\u202fAM if Ada hasn't replied"
    )
    assert (
        summary(condition=NOT_OPENED, state="pending", who=None, **kw)
        == "Remind me Tue, Nov 24, 9:00\u202fAM if nobody has opened it"
    )
    assert (
        summary(condition=ANYWAY, state="pending", who="Ada", **kw)
        == "Remind me Tue, Nov 24, 9:00\u202fAM"
    )
    resolved = summary(
        condition=NO_REPLY,
        state="resolved",
        who="Ada",
        resolved_reason="Ada replied",
        met_at=NOW + timedelta(hours=6, minutes=2),
        **kw,
    )
    assert resolved == "Resolved itself, no reminder needed: Ada replied (3:02\u202fPM)."


def test_the_rules_refuse_a_past_time_a_time_before_the_send_and_watching_an_unfollowed_email():
    later = ReminderInput("Call", NO_REPLY, NOW + timedelta(hours=1))
    assert check(later, followed=True, send_at=None, now=NOW) == {}
    assert "reminder_at" in check(later, followed=True, send_at=None, now=later.remind_at)
    assert "reminder_at" in check(later, followed=True, send_at=NOW + timedelta(hours=2), now=NOW)
    assert "reminder_condition" in check(later, followed=False, send_at=None, now=NOW)
    anyway = ReminderInput("Call", ANYWAY, NOW + timedelta(hours=1))
    assert check(anyway, followed=False, send_at=None, now=NOW) == {}
    assert "reminder_title" in check(
        ReminderInput(" ", ANYWAY, NOW + timedelta(hours=1)), followed=True, send_at=None, now=NOW
    )


# -- the compose panel -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"reminder_at_local": local(-timedelta(hours=1))}, "reminder_at", "That time has passed"),
        ({"reminder_at_local": "next tuesday"}, "reminder_at", "Enter a date and a time"),
        (
            {
                "send_at": (utcnow() + timedelta(days=3)).isoformat(),
                "reminder_at_local": local(timedelta(days=2)),
            },
            "reminder_at",
            "after the email goes out",
        ),
        (
            {"follow": "0", "reminder_condition_input": NOT_OPENED},
            "reminder_condition",
            "only watched on a followed email",
        ),
        (
            {"follow": "0", "reminder_condition_input": NO_REPLY},
            "reminder_condition",
            "only watched on a followed email",
        ),
    ],
    ids=["past", "malformed", "before the scheduled send", "not opened unfollowed", "no reply"],
)
def test_a_refused_reminder_is_explained_and_nothing_typed_is_lost(rem_app, fields, field, message):
    client = sign_in(rem_app.test_client(), 1)
    response = client.post(
        "/crm/engage/compose", data=compose_form(client, action="set_reminder", **fields)
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in page
    assert f'id="engage-compose-customer-1-reminder-{field.split("_")[1]}-error"' in page
    assert "Quarterly review" in page and "Hello Ada" in page and 'value="Call Ada"' in page
    assert "engage-badge--reminder" not in page  # no reminder was set
    with rem_app.app_context():
        assert db.session.query(Email).count() == 0  # the dialog never saves


def test_ok_turns_the_indicator_blue_with_a_summary_and_save_keeps_it_with_the_draft(rem_app):
    client = sign_in(rem_app.test_client(), 1)
    panel = client.post("/crm/engage/compose", data=compose_form(client, action="set_reminder"))
    page = panel.get_data(as_text=True)
    assert panel.status_code == 200
    assert "engage-badge--reminder" in page and "Change reminder" in page
    assert "Remove reminder" in page
    assert re.search(
        r"Remind me (\w{3}, \w{3} \d+, )?\d+:\d\d\W[AP]M if Ada hasn&#39;t replied", page
    )
    carried = dict(re.findall(r'name="(reminder_(?:title|condition|at))" value="([^"]*)"', page))
    assert carried["reminder_title"] == "Call Ada" and carried["reminder_condition"] == NO_REPLY
    with rem_app.app_context():
        assert db.session.query(Email).count() == 0

    saved = client.post("/crm/engage/compose", data=compose_form(client, action="save", **carried))
    assert saved.status_code == 302
    email_id = int(re.search(r"/emails/(\d+)/edit", saved.headers["Location"]).group(1))
    with rem_app.app_context():
        row = db.session.query(Reminder).one()
        assert (row.email_id, row.title, row.condition, row.state) == (
            email_id,
            "Call Ada",
            NO_REPLY,
            "pending",
        )
    reopened = client.get(f"/crm/engage/emails/{email_id}/edit").get_data(as_text=True)
    assert "engage-badge--reminder" in reopened and "Call Ada" in reopened
    # Nothing is scheduled for a draft: its reminder waits for Send.
    assert len(current_engage_scheduled(rem_app)) == 0

    removed = client.post(
        f"/crm/engage/emails/{email_id}/edit",
        data=compose_form(client, action="remove_reminder", **carried),
    ).get_data(as_text=True)
    assert "engage-badge--reminder" not in removed and "No reminder." in removed
    client.post(
        f"/crm/engage/emails/{email_id}/edit",
        data=compose_form(client, action="save", reminder_at=""),
    )
    with rem_app.app_context():
        assert db.session.query(Reminder).count() == 0


def current_engage_scheduled(app) -> list[str]:
    with app.app_context():
        return list(current_engage.queue.scheduled_job_registry.get_job_ids())


def test_send_activates_the_reminder_on_the_scheduler(rem_app):
    client = sign_in(rem_app.test_client(), 1)
    page = client.post(
        "/crm/engage/compose", data=compose_form(client, action="set_reminder")
    ).get_data(as_text=True)
    carried = dict(re.findall(r'name="(reminder_(?:title|condition|at))" value="([^"]*)"', page))
    sent = client.post("/crm/engage/compose", data=compose_form(client, action="send", **carried))
    assert sent.status_code == 302
    with rem_app.app_context():
        row = db.session.query(Reminder).one()
    assert f"engage-reminder-{row.id}-{int(row.remind_at.timestamp())}" in (
        current_engage_scheduled(rem_app)
    )


def test_sending_after_unfollowing_refuses_a_reply_reminder(rem_app):
    client = sign_in(rem_app.test_client(), 1)
    page = client.post(
        "/crm/engage/compose", data=compose_form(client, action="set_reminder")
    ).get_data(as_text=True)
    carried = dict(re.findall(r'name="(reminder_(?:title|condition|at))" value="([^"]*)"', page))
    refused = client.post(
        "/crm/engage/compose", data=compose_form(client, action="send", follow="0", **carried)
    )
    assert refused.status_code == 422
    assert "only watched on a followed email" in refused.get_data(as_text=True)


# -- firing ----------------------------------------------------------------------------------


def test_no_reply_fires_a_high_priority_card_when_nobody_replied(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, NO_REPLY)
    assert run(rem_app, reminder_id, come_due(rem_app, reminder_id)) == "fired"
    [card] = cards(rem_app)
    assert (card.kind, card.priority, card.title) == ("reminder", "high", "Follow up with Ada")
    assert card.email_id == email_id and card.reminder_id == reminder_id
    assert (card.record_type, card.record_id) == ("customer", "1")
    assert "No reply yet" in read(card.body) and "late" not in read(card.body)
    assert state(rem_app, reminder_id).state == "fired"


def test_no_reply_resolves_itself_when_ada_replied_through_the_inbound_endpoint(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, NO_REPLY)
    message_id = load(rem_app, email_id).message_id
    assert post_inbound(rem_app, reply(message_id)).get_json()["status"] == "matched"
    # Settled the moment the reply came in, days before the reminder's time (S28).
    row = state(rem_app, reminder_id)
    assert row.state == "resolved" and read(row.resolved_reason) == "Ada Lovelace replied"
    assert row.met_at is not None and row.remind_at > utcnow()
    # Its job, should it still run, finds nothing to do.
    assert run(rem_app, reminder_id, row.remind_at.isoformat()) == "stale"
    assert cards(rem_app) == []
    client = sign_in(rem_app.test_client(), 1)
    page = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "Resolved itself, no reminder needed: Ada Lovelace replied (" in page


def test_an_auto_reply_does_not_resolve_no_reply(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, NO_REPLY)
    message_id = load(rem_app, email_id).message_id
    out_of_office = reply(
        message_id,
        text="I am out of the office until Monday.",
        headers={"Auto-Submitted": "auto-replied"},
    )
    assert post_inbound(rem_app, out_of_office).get_json()["status"] == "auto_reply"
    assert run(rem_app, reminder_id, come_due(rem_app, reminder_id)) == "fired"
    assert len(cards(rem_app)) == 1


def open_email(app, email_id: int, *, human: bool) -> None:
    if human:
        age_delivery(app, email_id)  # an open minutes after delivery is a person's
    ada = load(app, email_id).recipients[0]
    open_pixel(
        app,
        ada.token,
        user_agent=CHROME if human else "Mozilla/5.0",
        ip="203.0.113.9" if human else "17.58.101.4",
    )
    assert drain(app) == 1


def test_not_opened_fires_when_nobody_opened(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, NOT_OPENED)
    assert run(rem_app, reminder_id, come_due(rem_app, reminder_id)) == "fired"
    [card] = cards(rem_app)
    assert "has not been opened" in read(card.body)


def test_not_opened_resolves_itself_after_a_human_open_through_the_pixel(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, NOT_OPENED)
    open_email(rem_app, email_id, human=True)  # the event worker settles it at once
    row = state(rem_app, reminder_id)
    assert (row.state, read(row.resolved_reason)) == ("resolved", "Ada Lovelace opened it")
    assert run(rem_app, reminder_id, row.remind_at.isoformat()) == "stale"
    assert cards(rem_app) == []


def test_the_job_still_resolves_a_reminder_met_without_the_workers_noticing(rem_app):
    # A reply recorded before this reminder existed (or by an older worker): the job judges it.
    email_id = sent_email(rem_app)
    with rem_app.app_context():
        party = load(rem_app, email_id).recipients[0]
        db.session.get(type(party), party.id).replied_at = utcnow()
        db.session.commit()
    reminder_id = add_reminder(rem_app, email_id, NO_REPLY)
    assert run(rem_app, reminder_id, come_due(rem_app, reminder_id)) == "resolved"
    assert read(state(rem_app, reminder_id).resolved_reason) == "Ada Lovelace replied"


def test_a_machine_open_does_not_resolve_not_opened(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, NOT_OPENED)
    open_email(rem_app, email_id, human=False)  # a prefetch seconds after delivery
    assert run(rem_app, reminder_id, come_due(rem_app, reminder_id)) == "fired"
    assert len(cards(rem_app)) == 1


def test_remind_me_anyway_fires_even_after_a_reply(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, ANYWAY)
    post_inbound(rem_app, reply(load(rem_app, email_id).message_id))
    assert run(rem_app, reminder_id, come_due(rem_app, reminder_id)) == "fired"
    assert len(cards(rem_app)) == 1


def test_a_reminder_fires_once_even_when_its_job_runs_twice(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, ANYWAY)
    due = come_due(rem_app, reminder_id)
    assert run(rem_app, reminder_id, due) == "fired"
    assert run(rem_app, reminder_id, due) == "stale"
    assert len(cards(rem_app)) == 1


def test_a_job_that_runs_early_puts_itself_back(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, ANYWAY)
    row = state(rem_app, reminder_id)
    assert run(rem_app, reminder_id, row.remind_at.isoformat()) == "early"
    assert cards(rem_app) == []


# -- on the email's page: set, change, remove --------------------------------------------------


def page_form(client, email_id, **fields):
    data = {
        "csrf_token": csrf_token(client, f"/crm/engage/emails/{email_id}"),
        "browser_zone": "Europe/Berlin",
        "reminder_title_input": "Call Ada",
        "reminder_condition_input": NOT_OPENED,
        "reminder_at_local": local(timedelta(days=1)),
    }
    data.update(fields)
    return data


def test_a_changed_or_removed_reminder_never_fires_at_its_old_time(rem_app):
    email_id = sent_email(rem_app)
    client = sign_in(rem_app.test_client(), 1)
    page = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "Set reminder" in page and "No reminder." in page
    url = f"/crm/engage/emails/{email_id}/reminder"
    assert client.post(url, data=page_form(client, email_id)).status_code == 303
    first = state(rem_app, Reminder_id(rem_app))
    page = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "engage-badge--reminder" in page and "Remind me" in page and "opened it" in page

    changed = page_form(client, email_id, reminder_at_local=local(timedelta(days=2)))
    assert client.post(url, data=changed).status_code == 303
    assert run(rem_app, first.id, first.remind_at.isoformat()) == "stale"
    second = state(rem_app, first.id)
    assert second.remind_at > first.remind_at
    assert f"engage-reminder-{first.id}-{int(first.remind_at.timestamp())}" not in (
        current_engage_scheduled(rem_app)
    )

    removed = client.post(url, data=page_form(client, email_id, action="remove_reminder"))
    assert removed.status_code == 303
    assert run(rem_app, first.id, second.remind_at.isoformat()) == "stale"
    assert state(rem_app, first.id) is None
    assert cards(rem_app) == []


def Reminder_id(app) -> int:  # noqa: N802
    with app.app_context():
        return db.session.query(Reminder).one().id


def test_the_reminder_of_a_scheduled_email_must_come_after_its_send_time(rem_app):
    client = sign_in(rem_app.test_client(), 1)
    send_at = utcnow() + timedelta(days=2)
    sent = client.post(
        "/crm/engage/compose",
        data=compose_form(client, action="send", send_at=send_at.isoformat()),
    )
    assert sent.status_code == 302
    with rem_app.app_context():
        email_id = db.session.query(Email).one().id
    url = f"/crm/engage/emails/{email_id}/reminder"
    early = client.post(url, data=page_form(client, email_id, reminder_condition_input=ANYWAY))
    assert early.status_code == 422
    assert "after the email goes out" in early.get_data(as_text=True)
    ok = page_form(
        client, email_id, reminder_condition_input=ANYWAY, reminder_at_local=local(timedelta(3))
    )
    assert client.post(url, data=ok).status_code == 303
    assert state(rem_app, Reminder_id(rem_app)).state == "pending"


def test_another_rep_cannot_see_or_change_your_reminder(rem_app):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, ANYWAY)
    rita = sign_in(rem_app.test_client(), 2)
    token = csrf_token(rita)
    url = f"/crm/engage/emails/{email_id}/reminder"
    for action in ("set_reminder", "remove_reminder"):
        response = rita.post(
            url,
            data={
                "csrf_token": token,
                "action": action,
                "reminder_title_input": "Mine now",
                "reminder_condition_input": ANYWAY,
                "reminder_at_local": local(timedelta(days=1)),
            },
        )
        assert response.status_code == 404
    assert state(rem_app, reminder_id).title == "Follow up with Ada"
    manager = sign_in(rem_app.test_client(), 3)  # may read the team's email, not its reminder
    page = manager.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "Follow up with Ada" not in page


# -- the sweep -------------------------------------------------------------------------------


def test_after_a_redis_flush_the_sweep_fires_a_lost_reminder_once_and_says_it_is_late(
    rem_app, redis_client
):
    email_id = sent_email(rem_app)
    reminder_id = add_reminder(rem_app, email_id, NO_REPLY)
    redis_client.flushdb()  # the scheduled job is lost
    come_due(rem_app, reminder_id, ago=timedelta(minutes=3))
    with rem_app.app_context():
        sweep()
        sweep()  # twice: two jobs, one card
        jobs = [j for j in current_engage.queue.get_jobs() if j.func_name.endswith("fire_reminder")]
        assert len(jobs) == 2
        for job in jobs:
            job.perform()
    [card] = cards(rem_app)
    assert "Fired 3 minutes late: the reminder job was lost." in read(card.body)
    with rem_app.app_context():
        sweep()
        assert not [
            j for j in current_engage.queue.get_jobs() if j.func_name.endswith("fire_reminder")
        ][2:]


def test_the_sweep_leaves_a_drafts_reminder_alone(rem_app):
    client = sign_in(rem_app.test_client(), 1)
    page = client.post(
        "/crm/engage/compose", data=compose_form(client, action="set_reminder")
    ).get_data(as_text=True)
    carried = dict(re.findall(r'name="(reminder_(?:title|condition|at))" value="([^"]*)"', page))
    client.post("/crm/engage/compose", data=compose_form(client, action="save", **carried))
    reminder_id = Reminder_id(rem_app)
    due = come_due(rem_app, reminder_id, ago=timedelta(minutes=5))
    with rem_app.app_context():
        sweep()
        assert not [
            j for j in current_engage.queue.get_jobs() if j.func_name.endswith("fire_reminder")
        ]
    assert run(rem_app, reminder_id, due) == "stale"
