"""Send later and scheduled delivery (SPEC S19–S23), through the endpoints, the jobs and the sweep."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from engage import current_engage
from engage.jobs import sweep
from engage.models import Email, EmailStatus, RecordTimezone, utcnow
from engage.records import RecordRef
from engage.send_later import reschedule, send_scheduled
from tests.hostapp import db
from tests.support import compose_fields, csrf_in, load, send, sign_in

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def sched_app(app, smtp_sink):
    app.config.update(ENGAGE_SMTP_URL=smtp_sink.url)
    return app


def form(client, **fields):
    defaults = {
        "to": "ada@example.com",
        "subject": "Later",
        "body": "Hello",
        "browser_zone": "Europe/Berlin",
    }
    return compose_fields(client, **(defaults | fields))


def schedule(app, when) -> int:
    """An email to Ada alone, scheduled for ``when``."""
    return send(
        app, to="ada@example.com", cc="", bcc="", subject="Later", html="<p>x</p>", send_at=when
    )


def run(app, email_id, due) -> str:
    with app.app_context():
        return send_scheduled(email_id, due.isoformat())


def test_send_later_takes_the_senders_local_time_and_send_schedules_it(sched_app, redis_client):
    client = sign_in(sched_app.test_client(), 1)
    local = (
        (utcnow() + timedelta(days=2))
        .astimezone(BERLIN)
        .replace(hour=9, minute=30, second=0, microsecond=0)
    )
    panel = client.post(
        "/crm/engage/compose",
        data=form(client, action="schedule", send_at_local=local.strftime("%Y-%m-%dT%H:%M")),
    )
    body = panel.get_data(as_text=True)
    assert panel.status_code == 200 and "Delayed send" in body and "Europe/Berlin" in body
    send_at = re.search(r'name="send_at" value="([^"]+)"', body).group(1)
    sent = client.post("/crm/engage/compose", data=form(client, action="send", send_at=send_at))
    assert sent.status_code == 302
    (email,) = db_emails(sched_app)
    assert email.status is EmailStatus.SCHEDULED
    assert email.scheduled_at == local.astimezone(ZoneInfo("UTC"))
    timeline = client.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "Scheduled" in timeline and "Goes out" in timeline
    from rq.registry import ScheduledJobRegistry

    with sched_app.app_context():
        assert len(ScheduledJobRegistry(queue=current_engage.queue)) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2020-01-01T08:00", "That time has passed"),
        ("next tuesday", "Enter a date and a time"),
        ("", "Enter a date and a time"),
    ],
)
def test_a_past_or_malformed_time_gets_a_clear_error_and_keeps_the_draft(sched_app, value, message):
    client = sign_in(sched_app.test_client(), 1)
    response = client.post(
        "/crm/engage/compose",
        data=form(client, action="schedule", send_at_local=value, subject="Keep me"),
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and message in body and 'value="Keep me"' in body


def test_remove_delay_in_the_panel_sends_at_once(sched_app, redis_client):
    client = sign_in(sched_app.test_client(), 1)
    later = (utcnow() + timedelta(days=1)).isoformat()
    body = client.post(
        "/crm/engage/compose", data=form(client, action="unschedule", send_at=later)
    ).get_data(as_text=True)
    assert "Delayed send" not in body and 'name="send_at" value=""' in body


def test_the_job_sends_at_its_time_and_a_rescheduled_emails_old_job_does_nothing(
    sched_app, smtp_sink, redis_client
):
    first = utcnow() + timedelta(seconds=2)
    email_id = schedule(sched_app, first)
    later = utcnow() + timedelta(hours=3)
    with sched_app.app_context():
        reschedule(db.session.get(Email, email_id), later)
    assert run(sched_app, email_id, first) == "stale"  # the old job, should it still run
    assert smtp_sink.messages == []
    assert load(sched_app, email_id).status is EmailStatus.SCHEDULED
    with sched_app.app_context():
        email = db.session.get(Email, email_id)
        email.scheduled_at = utcnow() - timedelta(seconds=1)  # its new time has come
        due = email.scheduled_at
        db.session.commit()
    assert run(sched_app, email_id, due) == "sent"
    assert run(sched_app, email_id, due) == "stale"  # a duplicate job sends nothing more
    assert len(smtp_sink.messages) == 1


def test_a_job_that_runs_early_puts_itself_back(sched_app, smtp_sink, redis_client):
    due = utcnow() + timedelta(minutes=10)
    email_id = schedule(sched_app, due)
    assert run(sched_app, email_id, due) == "early"
    assert smtp_sink.messages == [] and load(sched_app, email_id).status is EmailStatus.SCHEDULED


def test_a_deleted_scheduled_email_never_goes(sched_app, smtp_sink, redis_client):
    due = utcnow() + timedelta(minutes=10)
    email_id = schedule(sched_app, due)
    client = sign_in(sched_app.test_client(), 1)
    detail = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    assert "Change schedule" in detail and "Remove delay" in detail
    csrf = csrf_in(detail)
    url = f"/crm/engage/emails/{email_id}/delete"
    # Delete asks first, and deletes nothing until confirmed.
    asked = client.post(url, data={"csrf_token": csrf})
    assert asked.status_code == 200 and "Delete the scheduled email?" in asked.get_data(True)
    assert load(sched_app, email_id).status is EmailStatus.SCHEDULED
    done = client.post(url, data={"csrf_token": csrf, "confirmed": "1"}, follow_redirects=True)
    assert "Scheduled email deleted" in done.get_data(True)
    assert "Draft deleted" not in done.get_data(True)
    assert run(sched_app, email_id, due) == "stale" and smtp_sink.messages == []


def test_change_schedule_and_send_now_on_the_email_page(sched_app, smtp_sink, redis_client):
    due = utcnow() + timedelta(hours=5)
    email_id = schedule(sched_app, due)
    client = sign_in(sched_app.test_client(), 1)
    detail = client.get(f"/crm/engage/emails/{email_id}").get_data(as_text=True)
    csrf = csrf_in(detail)
    new = (utcnow() + timedelta(days=3)).astimezone(BERLIN).replace(second=0, microsecond=0)
    client.post(
        f"/crm/engage/emails/{email_id}/reschedule",
        data={
            "csrf_token": csrf,
            "browser_zone": "Europe/Berlin",
            "send_at_local": new.strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert load(sched_app, email_id).scheduled_at == new.astimezone(ZoneInfo("UTC"))
    past = client.post(
        f"/crm/engage/emails/{email_id}/reschedule",
        data={
            "csrf_token": csrf,
            "browser_zone": "Europe/Berlin",
            "send_at_local": "2020-01-01T08:00",
        },
        follow_redirects=True,
    )
    assert "That time has passed" in past.get_data(as_text=True)
    client.post(f"/crm/engage/emails/{email_id}/send-now", data={"csrf_token": csrf})
    assert load(sched_app, email_id).status is EmailStatus.SENDING
    other = sign_in(sched_app.test_client(), 2)
    assert other.post(
        f"/crm/engage/emails/{email_id}/send-now", data={"csrf_token": csrf}
    ).status_code in (400, 404)


def test_after_a_redis_flush_the_sweep_sends_a_due_email_exactly_once(
    sched_app, smtp_sink, redis_client
):
    email_id = schedule(sched_app, utcnow() + timedelta(seconds=1))
    redis_client.flushdb()  # the scheduled job is lost
    with sched_app.app_context():
        email = db.session.get(Email, email_id)
        email.scheduled_at = utcnow() - timedelta(minutes=2)
        db.session.commit()
        sweep()
        sweep()  # twice: two jobs, one send
        jobs = [
            j for j in current_engage.queue.get_jobs() if j.func_name.endswith("send_scheduled")
        ]
        assert len(jobs) == 2
        for job in jobs:
            job.perform()
    assert len(smtp_sink.messages) == 1
    assert load(sched_app, email_id).status is EmailStatus.SENT


def test_the_dialog_recommends_from_the_recipients_zone_and_explains_it(sched_app, redis_client):
    with sched_app.app_context():
        from engage.geocoding import address_fingerprint

        record = current_engage.records.get(RecordRef("customer", "1"))
        db.session.add(
            RecordTimezone(
                record_type="customer",
                record_id="1",
                timezone="Asia/Tokyo",
                fingerprint=address_fingerprint(record.address),
                status="found",
                reason="",
                provider="offline",
                looked_up_at=utcnow(),
            )
        )
        db.session.commit()
    client = sign_in(sched_app.test_client(), 1)
    body = client.post("/crm/engage/compose/send-later", data=form(client)).get_data(as_text=True)
    assert "Tokyo" in body and "Recommended:" in body
    two = client.post(
        "/crm/engage/compose/send-later", data=form(client, to="ada@example.com, grace@example.com")
    )
    # Several recipients get one time for all (S40, beyond S20): Grace's zone is looked up
    # first (tests/test_beyond.py follows it through).
    assert "Looking up" in two.get_data(as_text=True)


def test_while_the_zone_is_looked_up_the_dialog_says_so_and_the_job_result_reaches_it(
    sched_app, redis_client
):
    from engage.geocoding import lookup_timezone

    client = sign_in(sched_app.test_client(), 1)
    waiting = client.post("/crm/engage/compose/send-later", data=form(client)).get_data(
        as_text=True
    )
    assert "Looking up the recipient" in waiting and 'hx-trigger="every 2s"' in waiting
    with sched_app.app_context():
        jobs = [
            j for j in current_engage.queue.get_jobs() if j.func_name.endswith("lookup_timezone")
        ]
        assert len(jobs) == 1
        assert lookup_timezone("customer", "1") == "found"  # London, GB
    ready = client.post("/crm/engage/compose/send-later", data=form(client)).get_data(as_text=True)
    assert "Looking up" not in ready and "London" in ready


def db_emails(app):
    with app.app_context():
        emails = db.session.query(Email).order_by(Email.id).all()
        db.session.expunge_all()
        return emails
