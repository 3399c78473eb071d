"""Following on the wire and back: tokens, pixel, clicks, the event queue, machine events."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import sqlalchemy as sa

from engage import current_engage
from engage.models import Email, EventKind, TrackingEvent, utcnow
from engage.tracking import QUEUE_KEY, new_token, token_is_genuine
from tests.hostapp import Customer, db
from tests.support import (
    CHROME,
    FOLLOWED_BODY,
    age_delivery,
    compose_fields,
    drain,
    load,
    run_delivery,
    send_followed,
    sign_in,
)


def copies(sink):
    """Each delivered copy's recipient and HTML part."""
    out = {}
    for received in sink.messages:
        message = received.message
        html = message.get_payload()[1].get_payload(decode=True).decode()
        text = message.get_payload()[0].get_payload(decode=True).decode()
        out[received.rcpt_tos[0]] = (html, text)
    return out


def test_tokens_are_random_signed_and_refuse_forgery(tracked_app):
    with tracked_app.test_request_context():
        a, b = new_token(), new_token()
        assert a != b and token_is_genuine(a) and token_is_genuine(b)
        body, mac = a.split(".")
        assert not token_is_genuine(f"{body}.{'A' * len(mac)}")
        assert not token_is_genuine("../../etc/passwd")


def test_each_recipient_gets_its_own_pixel_and_tracked_links(tracked_app, smtp_sink, redis_client):
    email_id = send_followed(tracked_app, bcc="bcc@example.com")
    assert run_delivery(tracked_app, email_id) == "sent"
    email = load(tracked_app, email_id)
    assert email.followed
    tokens = {p.address: p.token for p in email.recipients}
    assert len(set(tokens.values())) == 3 and all(tokens.values())
    for address, (html, text) in copies(smtp_sink).items():
        token = tokens[address]
        assert f'src="https://crm.example.com/crm/engage/t/o/{token}.gif"' in html
        assert f'href="https://crm.example.com/crm/engage/t/c/{token}/0"' in html
        assert f'href="https://crm.example.com/crm/engage/t/c/{token}/1"' in html
        assert 'href="mailto:sam@host.test"' in html  # not a web link: left alone
        assert "example.com/offer" not in html  # the real URL is only behind the redirect
        assert f"https://crm.example.com/crm/engage/t/c/{token}/0" in text
        for other in set(tokens.values()) - {token}:
            assert other not in html


def test_the_pixel_answers_at_once_and_the_worker_stores_the_open(
    tracked_app, smtp_sink, redis_client
):
    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    age_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    client = tracked_app.test_client()
    response = client.get(
        f"/crm/engage/t/o/{ada.token}.gif",
        headers={"User-Agent": CHROME},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert "no-store" in response.headers["Cache-Control"]
    with tracked_app.app_context():
        assert db.session.query(TrackingEvent).count() == 0  # nothing written on the request path
    queued = [json.loads(x) for x in redis_client.lrange(QUEUE_KEY, 0, -1)]
    assert [q["kind"] for q in queued] == ["open"]
    assert drain(tracked_app) == 1
    assert redis_client.llen(QUEUE_KEY) == 0
    with tracked_app.app_context():
        (event,) = db.session.query(TrackingEvent).all()
        assert event.kind is EventKind.OPEN and not event.machine
        assert event.ip_hash and "203.0.113.9" not in event.ip_hash  # never the IP in clear
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    grace = next(
        p for p in load(tracked_app, email_id).recipients if p.address == "grace@example.com"
    )
    assert ada.opens == 1 and ada.first_open_at and grace.opens == 0


def test_a_click_redirects_only_to_the_url_stored_with_the_message(
    tracked_app, smtp_sink, redis_client
):
    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    client = tracked_app.test_client()
    first = client.get(f"/crm/engage/t/c/{ada.token}/0", headers={"User-Agent": CHROME})
    assert (
        first.status_code == 302
        and first.headers["Location"] == "https://example.com/offer?a=1&b=2"
    )
    second = client.get(f"/crm/engage/t/c/{ada.token}/1")
    assert second.headers["Location"] == "https://example.com/terms"
    assert client.get(f"/crm/engage/t/c/{ada.token}/2").status_code == 404  # no third link
    assert (
        client.get(f"/crm/engage/t/c/{ada.token}/0?url=https://evil.example").headers["Location"]
        == "https://example.com/offer?a=1&b=2"
    )
    with tracked_app.test_request_context():
        forged = new_token()  # genuine-looking, but nobody's
    assert client.get(f"/crm/engage/t/c/{forged}/0").status_code == 404
    assert client.get("/crm/engage/t/c/not-a-token/0").status_code == 404
    assert redis_client.llen(QUEUE_KEY) == 3  # the two clicks and the stray ?url one


def test_an_unknown_or_forged_token_gets_the_pixel_and_records_nothing(tracked_app, redis_client):
    client = tracked_app.test_client()
    with tracked_app.test_request_context():
        unknown = new_token()
    for token in (unknown, "forged.token", "x" * 39):
        response = client.get(f"/crm/engage/t/o/{token}.gif")
        assert response.status_code == 200 and response.mimetype == "image/gif"
    assert redis_client.llen(QUEUE_KEY) == 1  # only the well-signed one is even queued
    assert drain(tracked_app) == 0
    with tracked_app.app_context():
        assert db.session.query(TrackingEvent).count() == 0


def test_machine_opens_and_scanner_clicks_are_kept_but_do_not_count(
    tracked_app, smtp_sink, redis_client
):
    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)  # delivered just now: an immediate open is a prefetch
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    client = tracked_app.test_client()
    client.get(
        f"/crm/engage/t/o/{ada.token}.gif",
        headers={"User-Agent": "Mozilla/5.0"},
        environ_base={"REMOTE_ADDR": "17.58.101.4"},
    )
    client.get(
        f"/crm/engage/t/c/{ada.token}/0",
        headers={"User-Agent": "Mozilla/5.0 (compatible; BingPreview/1.0b)"},
    )
    client.head(f"/crm/engage/t/c/{ada.token}/1", headers={"User-Agent": CHROME})
    assert drain(tracked_app) == 3
    with tracked_app.app_context():
        events = db.session.query(TrackingEvent).order_by(TrackingEvent.id).all()
        assert [e.machine for e in events] == [True, True, True]
        assert all(e.reason for e in events)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    assert ada.opens == 0 and ada.clicks == 0
    sam = sign_in(tracked_app.test_client(), 1)
    page = sam.get(f"/crm/engage/emails/{email_id}/interactions").get_data(as_text=True)
    assert "Apple Mail Privacy Protection" in page and "Machine" in page
    timeline = sam.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "Opened ×" not in timeline and "Clicked" not in timeline


def test_the_interactions_view_shows_each_recipient_on_their_own(
    tracked_app, smtp_sink, redis_client
):
    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    age_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    client = tracked_app.test_client()
    client.get(f"/crm/engage/t/o/{ada.token}.gif", headers={"User-Agent": CHROME})
    client.get(f"/crm/engage/t/c/{ada.token}/1", headers={"User-Agent": CHROME})
    drain(tracked_app)
    sam = sign_in(tracked_app.test_client(), 1)
    page = sam.get(f"/crm/engage/emails/{email_id}/interactions").get_data(as_text=True)
    ada_row = re.search(r'<tr data-recipient="ada@example.com">(.*?)</tr>', page, re.S).group(1)
    grace_row = re.search(r'<tr data-recipient="grace@example.com">(.*?)</tr>', page, re.S).group(1)
    assert "Yes" in ada_row and "https://example.com/terms ×1" in ada_row
    assert "Yes" not in grace_row and "terms" not in grace_row
    timeline = sam.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "Opened ×1" in timeline and "Clicked" in timeline
    other = sign_in(tracked_app.test_client(), 2)
    assert other.get(f"/crm/engage/emails/{email_id}/interactions").status_code == 404


def test_a_recipient_who_does_not_allow_following_blocks_it_and_gets_a_clean_copy(
    tracked_app, smtp_sink, redis_client
):
    with tracked_app.app_context():
        db.session.get(Customer, 2).tracking_ok = False
        db.session.commit()
    sam = sign_in(tracked_app.test_client(), 1)
    form = compose_fields(
        sam,
        body_format="html",
        to="ada@example.com",
        cc="grace@example.com",
        subject="Offer",
        body=FOLLOWED_BODY,
    )
    blocked = sam.post("/crm/engage/compose", data={**form, "action": "retry_follow"})
    html = blocked.get_data(as_text=True)
    assert "Blocked" in html and "View preferences" in html and "Grace Hopper" in html
    assert 'href="/customers/2"' in html
    email_id = send_followed(tracked_app)  # sent anyway, unfollowed
    run_delivery(tracked_app, email_id)
    assert not load(tracked_app, email_id).followed
    for html, _text in copies(smtp_sink).values():
        assert "/t/o/" not in html and "/t/c/" not in html
        assert 'href="https://example.com/terms"' in html
    with tracked_app.app_context():
        db.session.get(Customer, 2).tracking_ok = True
        db.session.commit()
    retried = sam.post("/crm/engage/compose", data={**form, "action": "retry_follow"})
    assert "Blocked" not in retried.get_data(as_text=True)
    assert "Don&#39;t follow" in retried.get_data(as_text=True)


def test_the_admin_switch_off_means_no_follow_controls_and_no_tracking_on_the_wire(
    tracked_app, smtp_sink, redis_client
):
    with tracked_app.app_context():
        from engage.organisation import set_engagement_enabled

        set_engagement_enabled(False, by="5")
    sam = sign_in(tracked_app.test_client(), 1)
    page = sam.get("/crm/engage/compose?regarding=customer:1").get_data(as_text=True)
    assert "turned off for your organisation" in page and "Don&#39;t follow" not in page
    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    assert not load(tracked_app, email_id).followed
    for html, _text in copies(smtp_sink).values():
        assert "/t/o/" not in html and "/t/c/" not in html


def test_dont_follow_sends_an_untracked_copy(tracked_app, smtp_sink, redis_client):
    email_id = send_followed(tracked_app, follow=False)
    run_delivery(tracked_app, email_id)
    for html, _text in copies(smtp_sink).values():
        assert "/t/o/" not in html and 'href="https://example.com/offer?a=1&amp;b=2"' in html


def test_tracking_details_past_retention_are_purged_but_totals_stay(
    tracked_app, smtp_sink, redis_client
):
    from engage.events import purge_tracking_details

    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    age_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    tracked_app.test_client().get(
        f"/crm/engage/t/o/{ada.token}.gif", headers={"User-Agent": CHROME}
    )
    drain(tracked_app)
    with tracked_app.app_context():
        assert purge_tracking_details() == 0
        assert purge_tracking_details(utcnow() + timedelta(days=181)) == 1
        assert db.session.query(TrackingEvent).count() == 0
        assert current_engage.db.session.get(type(ada), ada.id).opens == 1


def test_a_redis_flush_of_the_pending_flag_is_recovered_by_the_sweep(
    tracked_app, smtp_sink, redis_client
):
    from engage.jobs import sweep

    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    age_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    tracked_app.test_client().get(
        f"/crm/engage/t/o/{ada.token}.gif", headers={"User-Agent": CHROME}
    )
    with tracked_app.app_context():
        current_engage.queue.empty()  # the drain job is lost
        sweep()
        (job,) = current_engage.queue.get_jobs()
        job.perform()
        assert db.session.query(TrackingEvent).count() == 1


def test_buffered_hits_reach_redis_within_moments_and_all_arrive(
    tracked_app, smtp_sink, redis_client
):
    import time

    from engage.tracking import flush_buffered_events

    tracked_app.config["ENGAGE_EVENT_BUFFER_MS"] = 20
    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    client = tracked_app.test_client()
    for _ in range(50):
        assert client.get(f"/crm/engage/t/o/{ada.token}.gif").status_code == 200
    deadline = time.monotonic() + 2
    while redis_client.llen(QUEUE_KEY) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    flush_buffered_events()
    assert redis_client.llen(QUEUE_KEY) == 50
    assert drain(tracked_app) == 50


def test_the_pixel_is_answered_below_flask_and_head_works_too(tracked_app, smtp_sink, redis_client):
    from flask import url_for

    from engage.web.fastpath import PixelFastPath

    assert isinstance(tracked_app.wsgi_app, PixelFastPath)
    email_id = send_followed(tracked_app)
    run_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    calls = []
    tracked_app.before_request(lambda: calls.append(1))  # Flask never sees the pixel
    client = tracked_app.test_client()
    head = client.head(f"/crm/engage/t/o/{ada.token}.gif")
    assert head.status_code == 200 and head.data == b"" and head.mimetype == "image/gif"
    assert client.post(f"/crm/engage/t/o/{ada.token}.gif").status_code in (400, 405)
    assert calls == [1]  # only the POST went through Flask
    assert redis_client.llen(QUEUE_KEY) == 1
    with tracked_app.test_request_context():
        assert url_for("engage.tracking_pixel", token="x") == "/crm/engage/t/o/x.gif"


def test_a_burst_over_every_link_relabels_the_scanners_open_and_everything_follows(
    tracked_app, smtp_sink, redis_client
):
    """A gateway renders the message 20 s after delivery (too late for the fast-open rule: a
    person's open, a card, the template's open, a settled "not opened" reminder), then, in a
    later batch, walks both links within a second: the open and the first click were the
    scanner's, and the totals, the card, the template figure and the reminder follow."""
    from engage.models import Card, EmailTemplate, Reminder, TemplateUse

    email_id = send_followed(tracked_app, cc="")
    with tracked_app.app_context():
        template = EmailTemplate(
            name="Offer", language="en", subject="Offer", created_by="1", updated_by="1"
        )
        db.session.add(template)
        db.session.flush()
        db.session.get(Email, email_id).template_id = template.id
        template_id = template.id
        reminder = Reminder(
            email_id=email_id,
            owner_id="1",
            title="Follow up",
            condition="not_opened",
            remind_at=utcnow() + timedelta(hours=2),
        )
        db.session.add(reminder)
        db.session.commit()
        reminder_id = reminder.id
    assert run_delivery(tracked_app, email_id) == "sent"
    age_delivery(tracked_app, email_id, seconds=20)
    ada = load(tracked_app, email_id).recipients[0]
    client = tracked_app.test_client()
    scanner = (
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/80.0.3987.132 Safari/537.36"
    )
    client.get(f"/crm/engage/t/o/{ada.token}.gif", headers={"User-Agent": scanner})
    drain(tracked_app)

    def state():
        with tracked_app.app_context():
            party = db.session.get(type(ada), ada.id)
            card = db.session.scalar(sa.select(Card).where(Card.email_id == email_id))
            return (
                (party.opens, party.clicks, party.first_open_at is not None),
                card is not None and card.dismissed_at is None,
                db.session.get(EmailTemplate, template_id).opened,
                db.session.get(TemplateUse, email_id).opened,
                db.session.get(Reminder, reminder_id).state,
            )

    assert state() == ((1, 0, True), True, 1, True, "resolved")
    client.get(f"/crm/engage/t/c/{ada.token}/0", headers={"User-Agent": scanner})
    drain(tracked_app)  # one click alone: not yet a burst
    assert state()[0] == (1, 1, True)
    client.get(f"/crm/engage/t/c/{ada.token}/1", headers={"User-Agent": scanner})
    drain(tracked_app)
    assert state() == ((0, 0, False), False, 0, False, "pending")
    with tracked_app.app_context():
        events = db.session.scalars(
            sa.select(TrackingEvent).order_by(TrackingEvent.occurred_at)
        ).all()
        assert [(e.kind.value, e.machine, e.reason) for e in events] == [
            ("open", True, "burst_open"),
            ("click", True, "every_link|1"),
            ("click", True, "every_link|1"),
        ]
        jobs = current_engage.queue.scheduled_job_registry.get_job_ids()
        assert any(job.startswith(f"engage-reminder-{reminder_id}-") for job in jobs)
    sam = sign_in(tracked_app.test_client(), 1)
    page = sam.get(f"/crm/engage/emails/{email_id}/interactions").get_data(as_text=True)
    assert page.count('data-label="machine"') == 3 and 'data-label="human"' not in page
    assert "opened by the link scanner that then followed every link" in page
    assert "every link followed within 1 s, as a link scanner does" in page
