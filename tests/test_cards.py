"""Action cards and the assistant panel (SPEC S12, S14, S33, S35–S37)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage import organisation as settings
from engage.cards import create_card, snooze_until
from engage.i18n import read
from engage.models import Activity, ActivityKind, Card, Email, utcnow
from engage.records import RecordRef
from tests.hostapp import db
from tests.support import (
    age_delivery,
    csrf_in,
    csrf_token,
    drain,
    load,
    open_pixel,
    run_delivery,
    send_followed,
    sign_in,
)

HX = {"HX-Request": "true"}
ASSISTANT = "/crm/engage/assistant"


def delivered(app, *, age: bool = True) -> tuple[int, str]:
    """A followed email from Sam to Ada (and Grace), delivered; returns its id and Ada's token."""
    email_id = send_followed(app)
    assert run_delivery(app, email_id) == "sent"
    if age:
        age_delivery(app, email_id)
    ada = next(p for p in load(app, email_id).recipients if p.address == "ada@example.com")
    return email_id, ada.token


def cards(app) -> list[Card]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Card).order_by(Card.id)).all()
        db.session.expunge_all()
        return list(rows)


def add_card(app, owner: str = "1", team: str | None = "north", **kwargs) -> int:
    with app.app_context():
        values = {"kind": "reminder", "priority": "normal", "title": "Call back"} | kwargs
        card = create_card(
            db.session,
            owner_id=owner,
            owner_team=team,
            regarding=RecordRef("customer", "1"),
            **values,
        )
        db.session.commit()
        return card.id


def panel_titles(client) -> list[str]:
    page = client.get(ASSISTANT, headers=HX).get_data(as_text=True)
    return [t.strip() for t in re.findall(r'class="engage-card__title"[^>]*>([^<]*)<', page)]


def test_a_human_open_makes_one_card_for_the_sender(tracked_app, redis_client):
    email_id, token = delivered(tracked_app)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    (card,) = cards(tracked_app)
    assert card.kind == "opened" and card.priority == "normal"
    assert card.owner_id == "1" and card.owner_team == "north"
    assert read(card.title) == "Ada Lovelace opened ‘Offer’"
    assert card.email_id == email_id and card.regarding == RecordRef("customer", "1")
    sam = sign_in(tracked_app.test_client(), 1)
    page = sam.get(ASSISTANT, headers=HX).get_data(as_text=True)
    assert "Ada Lovelace opened ‘Offer’" in page
    assert f'href="/crm/engage/emails/{email_id}"' in page
    assert 'href="/customers/1"' in page


def test_machine_opens_make_no_card(tracked_app, redis_client):
    _email_id, token = delivered(tracked_app)
    # Apple Mail Privacy Protection's prefetch.
    open_pixel(tracked_app, token, user_agent="Mozilla/5.0", ip="17.58.101.4")
    drain(tracked_app)
    assert cards(tracked_app) == []


def test_an_open_seconds_after_delivery_makes_no_card(tracked_app, redis_client):
    _email_id, token = delivered(tracked_app, age=False)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    assert cards(tracked_app) == []


def test_more_opens_make_a_new_card_only_after_the_quiet_period(tracked_app, redis_client):
    email_id, token = delivered(tracked_app)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    assert len(cards(tracked_app)) == 1
    # The quiet period has passed since that card.
    with tracked_app.app_context():
        db.session.execute(sa.update(Card).values(created_at=utcnow() - timedelta(minutes=61)))
        db.session.commit()
    open_pixel(tracked_app, token)
    drain(tracked_app)
    found = cards(tracked_app)
    assert len(found) == 2 and all(c.email_id == email_id for c in found)
    assert "3 times" in read(found[1].body)


def test_the_quiet_period_is_configurable(tracked_app, redis_client):
    tracked_app.config["ENGAGE_OPEN_CARD_QUIET_MINUTES"] = 0
    _email_id, token = delivered(tracked_app)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    assert len(cards(tracked_app)) == 2


def test_no_card_while_engagement_is_disabled(tracked_app, redis_client):
    _email_id, token = delivered(tracked_app)
    with tracked_app.app_context():
        settings.set_engagement_enabled(False, by="5")
    open_pixel(tracked_app, token)
    drain(tracked_app)
    assert cards(tracked_app) == []


def test_create_card_refuses_an_unknown_kind_or_priority(app):
    with app.app_context(), pytest.raises(ValueError, match="kind"):
        create_card(db.session, owner_id="1", owner_team=None, kind="x", priority="high", title="t")
    with app.app_context(), pytest.raises(ValueError, match="priority"):
        create_card(
            db.session, owner_id="1", owner_team=None, kind="reminder", priority="x", title="t"
        )


def test_the_panel_lists_high_priority_first_then_newest(app):
    add_card(app, title="Old normal")
    add_card(app, title="Old high", priority="high")
    add_card(app, title="New normal")
    add_card(app, title="New high", priority="high")
    sam = sign_in(app.test_client(), 1)
    assert panel_titles(sam) == ["New high", "Old high", "New normal", "Old normal"]


def test_the_panel_without_htmx_is_a_page_of_its_own(app):
    add_card(app, title="Call back")
    sam = sign_in(app.test_client(), 1)
    response = sam.get(ASSISTANT)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in page and "Call back" in page
    assert "HX-Request" in response.headers["Vary"]


def test_a_snoozed_card_is_hidden_until_its_time_then_returns(app):
    card_id = add_card(app, title="Call back")
    sam = sign_in(app.test_client(), 1)
    token = csrf_token(sam, f"{ASSISTANT}/cards/{card_id}/snooze", headers=HX)
    response = sam.post(
        f"{ASSISTANT}/cards/{card_id}/snooze",
        data={"csrf_token": token, "choice": "1h"},
        headers=HX,
    )
    assert response.status_code == 200 and "Call back" not in panel_titles(sam)
    with app.app_context():
        until = db.session.get(Card, card_id).snoozed_until
        assert timedelta(minutes=59) < until - utcnow() <= timedelta(hours=1)
        # An hour later: the snooze is over.
        db.session.get(Card, card_id).snoozed_until = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert panel_titles(sam) == ["Call back"]


def test_snoozing_until_a_past_or_malformed_time_says_why(app):
    card_id = add_card(app, title="Call back")
    sam = sign_in(app.test_client(), 1)
    token = csrf_token(sam, f"{ASSISTANT}/cards/{card_id}/snooze", headers=HX)
    for value, words in (("2001-01-01T08:00", "has passed"), ("soon", "Choose a date")):
        response = sam.post(
            f"{ASSISTANT}/cards/{card_id}/snooze",
            data={"csrf_token": token, "until": value, "browser_zone": "Europe/Berlin"},
            headers=HX,
        )
        page = response.get_data(as_text=True)
        assert response.status_code == 200 and words in page and 'role="alert"' in page
    with app.app_context():
        assert db.session.get(Card, card_id).snoozed_until is None


def test_snooze_until_reads_the_time_in_the_users_zone():
    now = utcnow()
    later = (now + timedelta(days=2)).astimezone().replace(tzinfo=None)
    until = snooze_until(later.strftime("%Y-%m-%dT%H:%M"), "UTC", now=now)
    assert until.tzinfo is not None and until > now
    with pytest.raises(ValueError):
        snooze_until("2001-01-01T08:00", "Europe/Berlin", now=now)


def csrf(client) -> str:
    """The session's CSRF token, as engage_assets() puts it in every page."""
    return csrf_token(client, ASSISTANT, meta=True)


def db_activities(app) -> list[Activity]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Activity)))


def test_dismiss_removes_the_card_for_good(app):
    card_id = add_card(app, title="Call back")
    sam = sign_in(app.test_client(), 1)
    token = csrf(sam)
    response = sam.post(f"{ASSISTANT}/cards/{card_id}/dismiss", data={"csrf_token": token})
    assert response.status_code == 302
    assert panel_titles(sam) == []
    with app.app_context():
        assert db.session.get(Card, card_id).dismissed_at is not None


def test_actions_need_the_csrf_token(app):
    card_id = add_card(app, title="Call back")
    sam = sign_in(app.test_client(), 1)
    assert sam.post(f"{ASSISTANT}/cards/{card_id}/dismiss").status_code == 400
    assert panel_titles(sam) == ["Call back"]


def test_a_phone_call_goes_on_the_records_timeline(app):
    card_id = add_card(app, title="Ada opened ‘Offer’")
    sam = sign_in(app.test_client(), 1)
    form = sam.get(f"{ASSISTANT}/cards/{card_id}/phone-call", headers=HX).get_data(as_text=True)
    assert 'value="Call Ada Lovelace about ‘Ada opened ‘Offer’’"' in form
    assert '<label for="engage-call-' in form
    token = csrf_in(form)
    response = sam.post(
        f"{ASSISTANT}/cards/{card_id}/phone-call",
        data={
            "csrf_token": token,
            "subject": "Call Ada about the offer",
            "phone": "+44 20 7946 0000",
            "notes": "She wants a discount.",
        },
        headers=HX,
    )
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "engage-timeline-changed"
    with app.app_context():
        (call,) = db.session.scalars(
            sa.select(Activity).where(Activity.kind == ActivityKind.PHONE_CALL)
        ).all()
        assert call.record == RecordRef("customer", "1") and call.owner_id == "1"
        assert call.title == "Call Ada about the offer" and "discount" in call.notes
    timeline = sam.get("/crm/engage/timeline/customer/1", headers=HX).get_data(as_text=True)
    assert "engage-activity--phone_call" in timeline and "Call Ada about the offer" in timeline
    assert "+44 20 7946 0000" in timeline


def test_a_phone_call_needs_a_subject(app):
    card_id = add_card(app)
    sam = sign_in(app.test_client(), 1)
    token = csrf(sam)
    response = sam.post(
        f"{ASSISTANT}/cards/{card_id}/phone-call",
        data={"csrf_token": token, "subject": " ", "notes": "kept"},
        headers=HX,
    )
    page = response.get_data(as_text=True)
    assert "Give the phone call a subject." in page and ">kept</textarea>" in page
    with app.app_context():
        assert db.session.query(Activity).count() == 0


def test_another_rep_cannot_see_or_touch_a_card(app):
    card_id = add_card(app, title="Sam's card")
    rita = sign_in(app.test_client(), 2)
    assert panel_titles(rita) == []
    headers = {**HX, "X-CSRFToken": csrf(rita)}
    for path in ("snooze", "phone-call"):
        assert rita.get(f"{ASSISTANT}/cards/{card_id}/{path}", headers=HX).status_code == 404
    for path in ("snooze", "phone-call", "dismiss"):
        response = rita.post(
            f"{ASSISTANT}/cards/{card_id}/{path}",
            data={"choice": "1h", "subject": "x"},
            headers=headers,
        )
        assert response.status_code == 404
    with app.app_context():
        card = db.session.get(Card, card_id)
        assert card.dismissed_at is None and card.snoozed_until is None
    assert not db_activities(app)


def test_a_manager_sees_the_teams_cards_with_the_owner_named(tracked_app, redis_client):
    _email_id, token = delivered(tracked_app)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    add_card(tracked_app, owner="6", team="south", title="South card")
    mia = sign_in(tracked_app.test_client(), 3)
    page = mia.get(ASSISTANT, headers=HX).get_data(as_text=True)
    assert "Ada Lovelace opened ‘Offer’" in page and "For Sam Seller" in page
    assert "South card" not in page
    assert "engage-count" not in page  # the rep's card is unread for the rep, not for Mia
    sven = sign_in(tracked_app.test_client(), 6)
    assert panel_titles(sven) == ["South card"]


def test_a_user_without_a_sales_role_is_told_why(app):
    nora = sign_in(app.test_client(), 4)
    response = nora.get(ASSISTANT, headers=HX)
    assert response.status_code == 403 and "sales role" in response.get_data(as_text=True)


def test_the_poll_answers_204_until_something_changes(app):
    add_card(app, title="First")
    sam = sign_in(app.test_client(), 1)
    page = sam.get(ASSISTANT, headers=HX).get_data(as_text=True)
    version = re.search(r'data-engage-version="([0-9a-f]+)"', page).group(1)
    poll = sam.get(f"{ASSISTANT}?part=cards&v={version}", headers=HX)
    assert poll.status_code == 204 and poll.get_data() == b""
    assert poll.headers["ETag"] == f'"{version}"'
    add_card(app, title="Second")
    poll = sam.get(f"{ASSISTANT}?part=cards&v={version}", headers=HX)
    body = poll.get_data(as_text=True)
    assert poll.status_code == 200 and "Second" in body and "First" in body
    assert f"v={version}" not in body  # the next poll carries the new version


def test_the_unread_count_and_mark_all_read(app):
    add_card(app, title="First")
    add_card(app, title="Second")
    sam = sign_in(app.test_client(), 1)
    page = sam.get(ASSISTANT, headers=HX).get_data(as_text=True)
    assert 'data-engage-unread="2"' in page and "2 unread cards" in page
    token = csrf_in(page)
    page = sam.post(f"{ASSISTANT}/read", data={"csrf_token": token}, headers=HX).get_data(
        as_text=True
    )
    assert "data-engage-unread" not in page and "engage-card--unread" not in page
    assert panel_titles(sam) == ["Second", "First"]


def test_the_assistant_global_loads_the_panel(app):
    with app.test_request_context():
        from flask import render_template_string

        markup = render_template_string("{{ engage_assistant() }}")
    assert 'hx-get="/crm/engage/assistant"' in markup and 'hx-trigger="load"' in markup


def test_an_open_card_is_for_the_emails_owner_only(tracked_app, redis_client):
    _email_id, token = delivered(tracked_app)
    open_pixel(tracked_app, token)
    drain(tracked_app)
    rita = sign_in(tracked_app.test_client(), 2)
    assert panel_titles(rita) == []
    card_id = cards(tracked_app)[0].id
    assert rita.get(f"{ASSISTANT}/cards/{card_id}/snooze", headers=HX).status_code == 404
    with tracked_app.app_context():
        assert db.session.get(Email, _email_id).owner_id == "1"
