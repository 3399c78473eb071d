"""Bad input, compose and time: nothing a rep types loses their work, sticks an email or
answers 500.

Against the real demo (its app, a real ``rq`` worker, its SMTP sink and Redis). Each case
asserts the exact status, that what was typed comes back, and that nothing was saved, sent or
left in "Sending".
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from markupsafe import escape

from engage.content import format_address
from engage.demo.models import Contact, db
from engage.i18n import read
from engage.models import Attachment, Card, Email, EmailStatus, utcnow
from tests.demo_support import (
    PREFIX,
    Rep,
    contact,
    email,
    received,
    wait_until_settled,
)

ALLOWING = "Johnson"

#: Characters the MIME layer reads as line ends, and other control characters.
BAD_HEADER_CHARACTERS = {
    "line separator U+2028": "\u2028",
    "paragraph separator U+2029": "\u2029",
    "next line U+0085": "\x85",
    "vertical tab": "\x0b",
    "form feed": "\x0c",
    "file separator": "\x1c",
    "NUL": "\x00",
    "escape": "\x1b",
    "carriage return": "\r",
}


@pytest.fixture
def demo(start_demo):
    return start_demo()


@pytest.fixture
def web(start_demo):
    """The demo without a worker: for answers that must come before any sending."""
    return start_demo(worker=False)


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Email)) or 0


def _form(to: str, **fields: str) -> dict[str, object]:
    return {
        "to": to,
        "subject": "Our offer",
        "body": "<div>The typed body stays</div>",
        "body_format": "html",
        "follow": "0",
        "action": "save",
        **fields,
    }


@pytest.mark.parametrize("char", BAD_HEADER_CHARACTERS.values(), ids=BAD_HEADER_CHARACTERS.keys())
@pytest.mark.parametrize("action", ["save", "send"])
def test_a_control_character_in_the_subject_is_refused_and_nothing_is_lost(web, char, action):
    rep = Rep(web.app, "Mia Berg")
    answer = rep.post(
        f"{PREFIX}/compose",
        _form("ada@example.com", subject=f"Hello{char}Bcc: x@evil.example", action=action),
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "The typed body stays" in page and "ada@example.com" in page
    assert _count(web.app) == 0


@pytest.mark.parametrize("char", BAD_HEADER_CHARACTERS.values(), ids=BAD_HEADER_CHARACTERS.keys())
def test_a_control_character_in_a_display_name_is_refused(web, char):
    rep = Rep(web.app, "Mia Berg")
    answer = rep.post(f"{PREFIX}/compose", _form(f"Ada{char}Lovelace <ada@example.com>"))
    assert answer.status_code == 422
    assert "Not a valid email address" in answer.get_data(as_text=True)
    assert _count(web.app) == 0


def test_a_host_record_whose_name_breaks_a_header_is_still_delivered(demo):
    """Names come from the host too: engage makes them fit a header instead of crashing."""
    app = demo.app
    katherine = contact(app, ALLOWING)
    with app.app_context():
        db.session.get_one(Contact, katherine.id).last_name = "Johnson\u2028Bcc: x@evil.example"
        db.session.commit()
    rep = Rep(app, "Mia Berg")
    opened = rep.get(f"{PREFIX}/compose?regarding=contact:{katherine.id}")
    assert opened.status_code == 200
    # The panel offers the record's name made fit for a header; the rep sends it as offered.
    prefilled = format_address("Katherine Johnson Bcc: x@evil.example", katherine.email)
    assert str(escape(prefilled)) in opened.get_data(as_text=True)
    answer = rep.post(
        f"{PREFIX}/compose",
        _form(prefilled, action="send", regarding=f"contact:{katherine.id}"),
    )
    assert answer.status_code in (200, 302)
    with app.app_context():
        email_id = db.session.scalars(sa.select(Email.id)).one()
    assert wait_until_settled(app, email_id).status is EmailStatus.SENT
    (copy,) = received(app, katherine.email)
    assert "evil" not in str(copy.get("Bcc", ""))
    assert received(app, "x@evil.example") == []


def test_a_copy_that_cannot_be_built_fails_with_its_reason_and_is_not_retried(demo):
    """An attachment gone from the store: the email ends Failed, never stuck in Sending."""
    app = demo.app
    rep = Rep(app, "Mia Berg")
    saved = rep.post(f"{PREFIX}/compose", _form("ada@example.com"))
    assert saved.status_code in (200, 302)
    with app.app_context():
        draft = db.session.scalars(sa.select(Email)).one()
        draft.attachments.append(
            Attachment(
                filename="gone.pdf",
                content_type="application/pdf",
                size=10,
                sha256="0" * 64,
                storage_key="no-such-key",
                followed=False,
            )
        )
        db.session.commit()
        email_id = draft.id
    sent = rep.post(f"{PREFIX}/emails/{email_id}/edit", _form("ada@example.com", action="send"))
    assert sent.status_code in (200, 302)
    settled = wait_until_settled(app, email_id)
    assert settled.status is EmailStatus.FAILED
    (party,) = settled.recipients
    assert "gone.pdf is missing" in read(party.delivery_error)
    assert received(app, "ada@example.com") == []


# -- times at the edge of the calendar --------------------------------------------------------

EDGE_TIMES = {
    "last minute of the calendar": "9999-12-31T23:59",
    "first minute of the calendar": "0001-01-01T00:00",
    "far future": "9000-06-01T09:00",
    "not a time": "next tuesday",
    "empty": "",
    "a time with an offset": "2030-01-01T09:00+05:00",
}


@pytest.mark.parametrize("value", EDGE_TIMES.values(), ids=EDGE_TIMES.keys())
@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Pacific/Kiritimati"])
def test_send_later_at_an_impossible_time_comes_back_with_its_error(web, value, zone):
    rep = Rep(web.app, "Mia Berg")
    answer = rep.post(
        f"{PREFIX}/compose",
        _form("ada@example.com", action="schedule", send_at_local=value, browser_zone=zone),
    )
    assert answer.status_code == 422
    assert "The typed body stays" in answer.get_data(as_text=True)
    assert _count(web.app) == 0


HIDDEN_TIMES = {
    "last instant, west of UTC": "9999-12-31T23:59:59-12:00",
    "first instant, east of UTC": "0001-01-01T00:00:00+14:00",
    "far future": "9000-01-01T00:00:00+00:00",
    "naive": "2030-01-01T09:00:00",
    "garbage": "tomorrow-ish",
}


@pytest.mark.parametrize("value", HIDDEN_TIMES.values(), ids=HIDDEN_TIMES.keys())
@pytest.mark.parametrize("field", ["send_at", "reminder_at"])
def test_a_hand_made_hidden_time_is_dropped_and_the_draft_saved_whole(web, field, value):
    rep = Rep(web.app, "Mia Berg")
    extra = {field: value}
    if field == "reminder_at":
        extra.update(reminder_title="Follow up", reminder_condition="anyway")
    answer = rep.post(f"{PREFIX}/compose", _form("ada@example.com", **extra))
    assert answer.status_code in (200, 302), answer.get_data(as_text=True)[:500]
    (saved,) = _emails(web.app)
    assert saved.status is EmailStatus.DRAFT and saved.scheduled_at is None


def _emails(app) -> list[Email]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Email)))
        for row in rows:
            db.session.expunge(row)
        return rows


@pytest.mark.parametrize("value", EDGE_TIMES.values(), ids=EDGE_TIMES.keys())
def test_a_reminder_at_an_impossible_time_comes_back_with_its_error(web, value):
    rep = Rep(web.app, "Mia Berg")
    answer = rep.post(
        f"{PREFIX}/compose",
        _form(
            "ada@example.com",
            action="set_reminder",
            reminder_title_input="Follow up",
            reminder_condition_input="anyway",
            reminder_at_local=value,
            browser_zone="America/Los_Angeles",
        ),
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Follow up" in page and "The typed body stays" in page
    assert _count(web.app) == 0


@pytest.mark.parametrize("value", EDGE_TIMES.values(), ids=EDGE_TIMES.keys())
def test_rescheduling_to_an_impossible_time_keeps_the_schedule(web, value):
    rep = Rep(web.app, "Mia Berg")
    tomorrow = (utcnow() + timedelta(days=1)).replace(second=0, microsecond=0)
    rep.post(
        f"{PREFIX}/compose",
        _form("ada@example.com", action="send", send_at=tomorrow.isoformat()),
    )
    (scheduled,) = _emails(web.app)
    assert scheduled.status is EmailStatus.SCHEDULED
    answer = rep.post(
        f"{PREFIX}/emails/{scheduled.id}/reschedule",
        {"send_at_local": value, "browser_zone": "Pacific/Kiritimati"},
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert 'role="alert"' in page
    assert email(web.app, scheduled.id).scheduled_at == tomorrow


@pytest.mark.parametrize("value", EDGE_TIMES.values(), ids=EDGE_TIMES.keys())
def test_snoozing_to_an_impossible_time_comes_back_with_its_error(web, value):
    app = web.app
    rep = Rep(app, "Mia Berg")
    with app.app_context():
        card = Card(
            owner_id=str(rep.user_id), owner_team=None, kind="reminder", priority="high", title="T"
        )
        db.session.add(card)
        db.session.commit()
        card_id = card.id
    answer = rep.post(
        f"{PREFIX}/assistant/cards/{card_id}/snooze",
        {"until": value, "browser_zone": "Pacific/Kiritimati"},
    )
    assert answer.status_code == 422
    with app.app_context():
        assert db.session.get_one(Card, card_id).snoozed_until is None


# -- numbers in URLs and forms ------------------------------------------------------------------

HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    "method,url,status",
    [
        ("GET", f"/emails/{HUGE}", 404),
        ("GET", f"/emails/{HUGE}/edit", 404),
        ("GET", f"/emails/{HUGE}/interactions", 404),
        ("POST", f"/emails/{HUGE}/delete", 404),
        ("POST", f"/emails/{HUGE}/reminder", 404),
        ("GET", f"/emails/1/attachments/{HUGE}", 404),
        ("GET", f"/activities/{HUGE}", 404),
        ("POST", f"/assistant/cards/{HUGE}/dismiss", 404),
        ("GET", f"/templates/{HUGE}", 404),
        ("GET", f"/bulk/sent?ids=²,{HUGE},-1", 200),
        ("GET", f"/timeline/contact/1?before={HUGE}.{HUGE}", 400),
        ("GET", "/timeline/contact/1?before=²³.1", 400),
        ("GET", f"/t/c/x/{HUGE}", 404),
    ],
)
def test_numbers_no_row_can_have_are_not_found(web, method, url, status):
    rep = Rep(web.app, "Mia Berg")
    answer = rep.post(PREFIX + url) if method == "POST" else rep.get(PREFIX + url)
    assert answer.status_code == status


def test_a_genuine_token_with_an_impossible_link_or_file_number_is_not_found(demo):
    from engage.tracking import new_token

    app = demo.app
    with app.app_context():
        token = new_token()
    client = app.test_client()
    assert client.get(f"{PREFIX}/t/c/{token}/{HUGE}").status_code == 404
    assert client.get(f"{PREFIX}/t/a/{token}/{HUGE}").status_code == 404


def test_a_template_id_in_unicode_digits_is_ignored(web):
    rep = Rep(web.app, "Mia Berg")
    answer = rep.post(f"{PREFIX}/compose", _form("ada@example.com", template_id="²"))
    assert answer.status_code in (200, 302)
    (saved,) = _emails(web.app)
    assert saved.template_id is None


# -- recipients and reflected markup ----------------------------------------------------------


def test_more_recipients_than_allowed_are_refused_with_the_limit(web):
    web.app.config["ENGAGE_MAX_RECIPIENTS"] = 5
    rep = Rep(web.app, "Mia Berg")
    many = ", ".join(f"r{n}@example.com" for n in range(6))
    answer = rep.post(f"{PREFIX}/compose", _form(many))
    assert answer.status_code == 422
    assert "at most 5 recipients" in answer.get_data(as_text=True)
    assert _count(web.app) == 0


@pytest.mark.parametrize(
    "ref",
    [
        'contact:"><script>alert(1)</script>',
        "contact:1' onmouseover='alert(1)",
        "x<svg onload=alert(1)>:1",
    ],
)
def test_a_record_reference_is_never_echoed_as_markup(web, ref):
    rep = Rep(web.app, "Mia Berg")
    closed = rep.get(
        f"{PREFIX}/compose/closed", query_string={"regarding": ref}, headers={"HX-Request": "true"}
    )
    assert closed.status_code == 200
    body = closed.get_data(as_text=True)
    assert "<script" not in body and "<svg" not in body and "'" not in body
    opened = rep.get(f"{PREFIX}/compose", query_string={"regarding": ref})
    assert opened.status_code == 404


# -- uploads ---------------------------------------------------------------------------------


def test_an_upload_far_over_the_limit_is_refused_even_if_the_layout_reads_the_form(start_demo):
    """A host layout that reads ``request.files`` while the refusal renders: 413, not 500."""
    from jinja2 import ChoiceLoader, DictLoader

    server = start_demo(worker=False, MAX_CONTENT_LENGTH=64 * 1024)
    app = server.app
    layout = (
        "{% extends 'demo/layout.html' %}"
        "{% block notices %}<p data-files='{{ request.files|length }}'"
        " data-form='{{ request.form|length }}'></p>{{ super() }}{% endblock %}"
    )
    app.jinja_env.loader = ChoiceLoader(
        [DictLoader({"engage/layout.html": layout}), app.jinja_env.loader]
    )
    rep = Rep(app, "Mia Berg")
    big = b"x" * (256 * 1024)
    from io import BytesIO

    answer = rep.client.post(
        f"{PREFIX}/compose",
        data={
            **_form("ada@example.com"),
            "csrf_token": rep.token,
            "attachment": (BytesIO(big), "big.bin"),
        },
        content_type="multipart/form-data",
    )
    assert answer.status_code == 413
    assert "data-files='0'" in answer.get_data(as_text=True)
    assert _count(app) == 0
