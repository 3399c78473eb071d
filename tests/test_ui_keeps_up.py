"""A UI that keeps up (issue 15), through HTTP: the Follow block redrawn for the recipients as
typed, Send that never changes the follow state unannounced, Retry follow and Undo that say what
they did, typed names looked up without JavaScript, the timeline's live poll, Dismiss and Snooze
with Undo, the email page's send time and files, and the chart of opens and clicks."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from engage.interaction_chart import opens_and_clicks
from engage.models import Card, Email, EmailStatus
from tests.hostapp import Customer, db
from tests.support import (
    COMPOSE_URL,
    age_delivery,
    compose_fields,
    csrf_token,
    drain,
    load,
    open_pixel,
    run_delivery,
    save_template,
    send_followed,
    sign_in,
    store_zones,
)
from tests.test_cards import add_card

HX = {"HX-Request": "true"}
PREFIX = "/crm/engage"


def _grace_does_not_allow(app) -> None:
    with app.app_context():
        db.session.get(Customer, 2).tracking_ok = False
        db.session.commit()


def _emails(app) -> list[Email]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Email)))
        for email in rows:
            _ = [p.address for p in email.parties]
        db.session.expunge_all()
        return rows


def _follow_seen(page: str) -> str:
    return re.search(r'name="follow_seen" value="([a-z]*)"', page).group(1)


def test_the_follow_block_redraws_for_the_recipients_as_typed_without_a_save(tracked_app):
    _grace_does_not_allow(tracked_app)
    sam = sign_in(tracked_app.test_client(), 1)
    fields = compose_fields(sam, to="ada@example.com")
    first = sam.post(f"{PREFIX}/compose/follow", data=fields, headers=HX).get_data(as_text=True)
    assert "On" in first and _follow_seen(first) == "on"
    fields["cc"] = "grace@example.com"
    after = sam.post(f"{PREFIX}/compose/follow", data=fields, headers=HX).get_data(as_text=True)
    assert _follow_seen(after) == "blocked" and "Grace Hopper" in after
    assert "1 recipient does not allow following." in after
    assert _emails(tracked_app) == []  # nothing was saved


def test_the_send_later_block_redraws_for_the_recipients_as_typed(tracked_app):
    store_zones(tracked_app, c1="Europe/London", c2="America/New_York")
    sam = sign_in(tracked_app.test_client(), 1)
    fields = compose_fields(sam, to="ada@example.com", cc="grace@example.com")
    fields["compose_action"] = f"{PREFIX}/compose"
    several = sam.post(f"{PREFIX}/compose/send-later", data=fields, headers=HX)
    fields["cc"] = ""
    one = sam.post(f"{PREFIX}/compose/send-later", data=fields, headers=HX)
    assert several.get_data(as_text=True) != one.get_data(as_text=True)
    assert "engage-recipients-changed" in one.get_data(as_text=True)


def test_send_refuses_a_follow_state_the_rep_has_not_seen_then_goes_when_asked_again(
    tracked_app,
):
    _grace_does_not_allow(tracked_app)
    sam = sign_in(tracked_app.test_client(), 1)
    fields = compose_fields(
        sam,
        to="ada@example.com",
        cc="grace@example.com",
        subject="Offer",
        body="Hello",
        follow_seen="on",  # what the panel showed before Grace was added
        action="send",
    )
    refused = sam.post(f"{PREFIX}/compose", data=fields, headers=HX)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "Follow is now “Blocked”" in page and "Nothing was sent" in page
    assert _follow_seen(page) == "blocked" and 'value="Offer"' in page
    assert _emails(tracked_app) == []
    # Seen now: the second Send goes, unfollowed, as the panel said.
    fields["follow_seen"] = "blocked"
    assert sam.post(f"{PREFIX}/compose", data=fields, headers=HX).status_code == 200
    (email,) = _emails(tracked_app)
    assert email.status is not EmailStatus.DRAFT and not email.followed


def test_retry_follow_with_nothing_changed_says_so(tracked_app):
    _grace_does_not_allow(tracked_app)
    sam = sign_in(tracked_app.test_client(), 1)
    fields = compose_fields(sam, to="grace@example.com", action="retry_follow")
    page = sam.post(f"{PREFIX}/compose", data=fields, headers=HX).get_data(as_text=True)
    assert "Nothing changed: 1 recipient still does not allow following." in page
    _grace_does_not_allow_any_more(tracked_app)
    page = sam.post(f"{PREFIX}/compose", data=fields, headers=HX).get_data(as_text=True)
    assert "Every recipient allows following now" in page


def _grace_does_not_allow_any_more(app) -> None:
    with app.app_context():
        db.session.get(Customer, 2).tracking_ok = True
        db.session.commit()


def test_apply_template_over_text_offers_undo_that_brings_it_back(app):
    mia = sign_in(app.test_client(), 3)
    save_template(mia, name="Thanks")
    sam = sign_in(app.test_client(), 1)
    page = sam.get(COMPOSE_URL).get_data(as_text=True)
    template_id = re.search(r'name="template_choice" value="(\d+)"', page).group(1)
    mine = '<div>See <a href="https://example.com/mine">my link</a></div>'
    fields = compose_fields(
        sam,
        to="ada@example.com",
        subject="My own subject",
        body=mine,
        body_format="html",
        template_choice=template_id,
        action="apply_template",
    )
    applied = sam.post(f"{PREFIX}/compose", data=fields, headers=HX).get_data(as_text=True)
    assert 'value="Thanks, Ada"' in applied
    assert "Undo: bring back my subject and text" in applied
    assert 'name="undo_subject" value="My own subject"' in applied
    # The browser posts the panel as it now is, with the carried Undo fields.
    undo = dict(fields, action="undo_template", subject="Thanks, Ada", body="<div>x</div>")
    for name in ("undo_subject", "undo_body", "undo_body_format"):
        undo[name] = re.search(rf'name="{name}" value="([^"]*)"', applied).group(1)
    undo["undo_body"] = mine  # as the browser decodes the attribute
    back = sam.post(f"{PREFIX}/compose", data=undo, headers=HX).get_data(as_text=True)
    assert 'value="My own subject"' in back and "example.com/mine" in back
    assert "Template removed: your subject and text are back." in back
    assert 'name="template_id" value=""' in back
    # An empty panel has nothing to bring back: no Undo.
    empty = dict(fields, subject="", body="")
    assert "Undo:" not in sam.post(f"{PREFIX}/compose", data=empty, headers=HX).get_data(True)


def test_a_typed_name_becomes_the_address_of_the_one_record_it_names(app):
    sam = sign_in(app.test_client(), 1)
    fields = compose_fields(sam, to="Grace Hopper", subject="Hi", body="Hello", action="save")
    response = sam.post(f"{PREFIX}/compose", data=fields)
    assert response.status_code == 302
    (email,) = _emails(app)
    (grace,) = email.recipients
    assert grace.address == "grace@example.com" and grace.record_id == "2"


def test_a_name_of_several_records_or_of_none_is_explained_and_the_text_kept(app):
    with app.app_context():
        db.session.add(Customer(id=9, name="Ada Byron", email="byron@example.com", owner_id=1))
        db.session.commit()
    sam = sign_in(app.test_client(), 1)
    fields = compose_fields(sam, to="Ada", cc="Nobody Known", subject="Kept", action="save")
    response = sam.post(f"{PREFIX}/compose", data=fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Several records match “Ada”" in page
    assert "Ada Lovelace" in page and "ada@example.com" in page and "byron@example.com" in page
    assert "Not a valid email address: Nobody Known. No CRM record" in page
    assert 'value="Ada"' in page and 'value="Nobody Known"' in page and 'value="Kept"' in page
    assert _emails(app) == []


def test_the_email_page_shows_when_it_was_sent_and_its_files(tracked_app):
    sam = sign_in(tracked_app.test_client(), 1)
    fields = compose_fields(sam, to="ada@example.com", subject="With a file", action="send")
    fields["attachment"] = (io.BytesIO(b"%PDF-1.4 offer"), "offer.pdf", "application/pdf")
    assert sam.post(f"{PREFIX}/compose", data=fields).status_code == 302
    (email,) = _emails(tracked_app)
    assert run_delivery(tracked_app, email.id) == "sent"
    page = sam.get(f"{PREFIX}/emails/{email.id}").get_data(as_text=True)
    assert "data-engage-sent-at" in page and "<dt>Sent</dt>" in page
    assert "<h3" in page and "Attachments" in page and "offer.pdf" in page
    assert f"/emails/{email.id}/attachments/" in page


def test_the_timeline_poll_answers_204_until_an_entry_changes(tracked_app):
    email_id = send_followed(tracked_app)
    assert run_delivery(tracked_app, email_id) == "sent"
    age_delivery(tracked_app, email_id)
    sam = sign_in(tracked_app.test_client(), 1)
    timeline = f"{PREFIX}/timeline/customer/1"
    page = sam.get(timeline, headers=HX).get_data(as_text=True)
    live = (
        re.search(r'class="engage-live"[^>]*hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
    )
    assert sam.get(live, headers=HX).status_code == 204
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    open_pixel(tracked_app, ada.token)
    drain(tracked_app)
    changed = sam.get(live, headers=HX)
    assert changed.status_code == 200
    body = changed.get_data(as_text=True)
    assert "Opened ×1" in body and 'class="engage-live"' in body
    # A new entry on the timeline (here a second email) redraws the whole list.
    send_followed(tracked_app)
    assert sam.get(live, headers=HX).headers["HX-Trigger"] == "engage-timeline-changed"


def test_a_timeline_with_nothing_that_can_change_does_not_poll(app):
    sam = sign_in(app.test_client(), 1)
    fields = compose_fields(sam, to="ada@example.com", subject="Draft only", action="save")
    sam.post(f"{PREFIX}/compose", data=fields)
    page = sam.get(f"{PREFIX}/timeline/customer/1", headers=HX).get_data(as_text=True)
    assert "Draft only" in page and "engage-live" not in page


def test_a_blocked_draft_is_not_badged_followed(tracked_app):
    _grace_does_not_allow(tracked_app)
    sam = sign_in(tracked_app.test_client(), 1)
    fields = compose_fields(sam, to="grace@example.com", subject="Blocked draft", action="save")
    sam.post(f"{PREFIX}/compose", data=fields)
    page = sam.get(f"{PREFIX}/timeline/customer/2", headers=HX).get_data(as_text=True)
    assert "Blocked draft" in page and ">Followed<" not in page


def test_dismiss_says_so_and_undo_brings_the_card_back(app):
    card_id = add_card(app, title="Call Ada back")
    sam = sign_in(app.test_client(), 1)
    token = csrf_token(sam, f"{PREFIX}/assistant", meta=True)
    done = sam.post(
        f"{PREFIX}/assistant/cards/{card_id}/dismiss", data={"csrf_token": token}, headers=HX
    ).get_data(as_text=True)
    assert "Dismissed “Call Ada back”." in done and "Undo" in done
    assert 'class="engage-card__title"' not in done
    back = sam.post(
        f"{PREFIX}/assistant/cards/{card_id}/restore", data={"csrf_token": token}, headers=HX
    ).get_data(as_text=True)
    assert "“Call Ada back” is back in your cards." in back
    assert 'class="engage-card__title"' in back
    with app.app_context():
        assert db.session.get(Card, card_id).dismissed_at is None


def test_snooze_says_until_when_and_undo_works_without_javascript(app):
    card_id = add_card(app, title="Send the quote")
    sam = sign_in(app.test_client(), 1)
    token = csrf_token(sam, f"{PREFIX}/assistant", meta=True)
    response = sam.post(
        f"{PREFIX}/assistant/cards/{card_id}/snooze",
        data={"csrf_token": token, "choice": "tomorrow", "browser_zone": "Europe/Berlin"},
    )
    assert response.status_code == 302 and f"undo={card_id}" in response.headers["Location"]
    page = sam.get(response.headers["Location"]).get_data(as_text=True)
    assert "Snoozed “Send the quote” until" in page and "Undo" in page
    sam.post(f"{PREFIX}/assistant/cards/{card_id}/restore", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(Card, card_id).snoozed_until is None


def test_the_chart_counts_people_per_hour_or_per_day():
    start = datetime(2026, 12, 1, 8, 10, tzinfo=UTC)
    chart = opens_and_clicks(
        [(start, "open"), (start + timedelta(minutes=5), "click"), (start, "reply")]
        + [(start + timedelta(hours=3), "open")]
    )
    assert chart is not None and chart.hourly and len(chart.bars) == 4
    assert (chart.opens, chart.clicks, chart.peak) == (2, 1, 1)
    weeks = opens_and_clicks([(start, "open"), (start + timedelta(days=200), "open")])
    assert weeks is not None and not weeks.hourly and len(weeks.bars) <= 48
    assert opens_and_clicks([(start, "reply")]) is None


def test_the_interactions_page_draws_the_chart_with_its_text_alternative(tracked_app):
    email_id = send_followed(tracked_app)
    assert run_delivery(tracked_app, email_id) == "sent"
    age_delivery(tracked_app, email_id)
    ada = next(p for p in load(tracked_app, email_id).recipients if p.address == "ada@example.com")
    open_pixel(tracked_app, ada.token)
    drain(tracked_app)
    sam = sign_in(tracked_app.test_client(), 1)
    page = sam.get(f"{PREFIX}/emails/{email_id}/interactions").get_data(as_text=True)
    assert '<svg class="engage-chart__svg" role="img"' in page
    assert "Opens and clicks over time" in page and "1 open, 0 clicks" in page
    assert 'class="engage-table-scroll"' in page


def test_the_bulk_result_page_redraws_itself_until_every_copy_is_settled(tracked_app):
    sam = sign_in(tracked_app.test_client(), 1)
    token = csrf_token(sam, f"{PREFIX}/bulk?records=customer:1&records=customer:2")
    sent = sam.post(
        f"{PREFIX}/bulk",
        data={
            "csrf_token": token,
            "records": ["customer:1", "customer:2"],
            "subject": "News",
            "body": "Hello",
        },
    )
    result = sent.headers["Location"]
    waiting = sam.get(result).get_data(as_text=True)
    assert 'id="engage-bulk-results"' in waiting and 'hx-trigger="every 2s"' in waiting
    for email in _emails(tracked_app):
        assert run_delivery(tracked_app, email.id) == "sent"
    settled = sam.get(result, headers=HX).get_data(as_text=True)
    assert 'id="engage-bulk-results"' in settled and "hx-trigger" not in settled


def test_a_redraw_of_send_later_keeps_a_time_the_rep_typed(tracked_app):
    sam = sign_in(tracked_app.test_client(), 1)
    fields = compose_fields(sam, to="ada@example.com", cc="grace@example.com")
    fields.update(send_later_open="1", send_at_local="2027-01-05T10:00", send_at_prefill="")
    page = sam.post(f"{PREFIX}/compose/send-later", data=fields, headers=HX).get_data(True)
    assert 'value="2027-01-05T10:00"' in page and re.search(r"<details[^>]*\sopen[\s>]", page)
    # A value left as it was pre-filled follows the new recommendation (none: two recipients).
    fields.update(send_at_prefill="2027-01-05T10:00")
    page = sam.post(f"{PREFIX}/compose/send-later", data=fields, headers=HX).get_data(True)
    assert 'value="2027-01-05T10:00"' not in page
