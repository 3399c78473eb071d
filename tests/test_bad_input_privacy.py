"""Bad input, privacy (SPEC S9): no form and no change of heart gets around "do not allow".

Against the real demo: its app, a real ``rq`` worker, its SMTP sink and Redis. Each case checks
what the recipient actually received (no pixel, no tracked link) and what engage stored.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from engage.demo.models import Contact, Lead, db
from engage.models import Email, Party, PartyRole, utcnow
from tests.demo_support import (
    PREFIX,
    Rep,
    contact,
    email,
    is_followed_copy,
    received,
    set_preference,
    wait_until_settled,
)

DOROTHY = "Vaughan"  # seeded with "do not allow"
ALLOWING = "Johnson"  # seeded with "allow"


@pytest.fixture
def demo(start_demo):
    return start_demo()


def _allowing(app) -> Contact:
    found = contact(app, ALLOWING)
    assert found.follow_preference == "allow"
    return found


def _send(rep: Rep, *, to: str, picked: list[str], action: str = "send") -> int:
    answer = rep.post(
        f"{PREFIX}/compose",
        {
            "to": to,
            "picked": picked,
            "subject": "Our offer",
            "body": '<div>See <a href="https://example.com/offer">the offer</a></div>',
            "body_format": "html",
            "follow": "1",
            "action": action,
        },
    )
    assert answer.status_code in (200, 302), answer.get_data(as_text=True)[:800]
    with rep.app.app_context():
        return db.session.scalars(sa.select(Email.id).order_by(Email.id.desc())).first()


def _forged_picks(app) -> list[tuple[str, str]]:
    dorothy = contact(app, DOROTHY)
    other = _allowing(app)
    return [
        ("another record's id", f"{dorothy.email}|contact:{other.id}"),
        ("an unknown record id", f"{dorothy.email}|contact:999999999"),
        ("a record type that does not exist", f"{dorothy.email}|nothing:1"),
        ("no record at all", f"{dorothy.email}|"),
    ]


@pytest.mark.parametrize("case", range(4), ids=lambda n: f"forged-pick-{n}")
def test_a_forged_pick_cannot_make_a_do_not_allow_recipient_followed(demo, case):
    app = demo.app
    label, pick = _forged_picks(app)[case]
    dorothy = contact(app, DOROTHY)
    rep = Rep(app, "Mia Berg")

    # The panel says Blocked whatever record the form claims ...
    panel = rep.post(
        f"{PREFIX}/compose",
        {"to": dorothy.email, "picked": [pick], "subject": "x", "follow": "1", "action": "follow"},
    )
    assert panel.status_code == 200, label
    assert "does not allow" in panel.get_data(as_text=True), label

    # ... and sending it sends it unfollowed.
    email_id = _send(rep, to=dorothy.email, picked=[pick])
    sent = wait_until_settled(app, email_id)
    assert sent.followed is False, label
    assert all(p.token is None for p in sent.recipients), label
    copies = received(app, dorothy.email)
    assert len(copies) == 1, label
    assert not is_followed_copy(copies[0]), label
    # The party is Dorothy's own record, never the one the form claimed.
    (party,) = sent.recipients
    assert party.record_type in (None, "contact")
    if party.record_type == "contact":
        assert party.record_id == str(dorothy.id), label


def test_the_strictest_record_of_an_address_wins(demo):
    """Two records share an address; one does not allow following: nobody follows it."""
    app = demo.app
    allowing = _allowing(app)
    with app.app_context():
        lead = Lead(
            first_name="Kay",
            last_name="Twin",
            email=allowing.email.upper(),  # the same address, written otherwise
            follow_preference="do_not_allow",
            owner_id=allowing.owner_id,
        )
        db.session.add(lead)
        db.session.commit()
    rep = Rep(app, "Mia Berg")
    email_id = _send(rep, to=allowing.email, picked=[f"{allowing.email}|contact:{allowing.id}"])
    sent = wait_until_settled(app, email_id)
    assert sent.followed is False
    assert not is_followed_copy(received(app, allowing.email)[0])


def test_a_recipient_who_opts_out_after_scheduling_gets_an_unfollowed_copy(demo):
    app = demo.app
    allowing = _allowing(app)
    with app.app_context():
        other = db.session.scalars(
            sa.select(Contact).where(
                Contact.follow_preference == "allow",
                Contact.id != allowing.id,
                Contact.email.is_not(None),
            )
        ).first()
        db.session.expunge(other)
    rep = Rep(app, "Mia Berg")
    tomorrow = (utcnow() + timedelta(days=1)).replace(second=0, microsecond=0)
    # Scheduled for tomorrow, followed: both recipients allow it today.
    form = {
        "to": f"{allowing.email}, {other.email}",
        "picked": [
            f"{allowing.email}|contact:{allowing.id}",
            f"{other.email}|contact:{other.id}",
        ],
        "subject": "Tomorrow",
        "body": '<div><a href="https://example.com/a">a link</a></div>',
        "body_format": "html",
        "follow": "1",
    }
    local = tomorrow.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%dT%H:%M")
    answer = rep.post(f"{PREFIX}/compose", {**form, "action": "schedule", "send_at_local": local})
    assert answer.status_code == 200
    hidden = {**form, "action": "send", "send_at": tomorrow.isoformat()}
    assert rep.post(f"{PREFIX}/compose", hidden).status_code in (200, 302)
    with app.app_context():
        email_id = db.session.scalars(sa.select(Email.id).order_by(Email.id.desc())).first()
    scheduled = email(app, email_id)
    assert scheduled.status.value == "scheduled" and scheduled.followed is True

    # One of them switches to "do not allow"; then the email goes out (Remove delay).
    set_preference(app, Contact, allowing.id, "do_not_allow")
    assert rep.post(f"{PREFIX}/emails/{email_id}/send-now").status_code in (200, 302)
    sent = wait_until_settled(app, email_id)

    mine = next(p for p in sent.recipients if p.address == allowing.email)
    theirs = next(p for p in sent.recipients if p.address == other.email)
    assert mine.follow_refused is True and mine.token is None
    assert theirs.follow_refused is False and theirs.token is not None
    assert not is_followed_copy(received(app, allowing.email)[0])
    assert is_followed_copy(received(app, other.email)[0])
    page = rep.get(f"{PREFIX}/emails/{email_id}").get_data(as_text=True)
    assert "Sent without following" in page
    with app.app_context():
        refused = db.session.scalars(
            sa.select(Party).where(Party.email_id == email_id, Party.role == PartyRole.TO)
        ).all()
        assert sum(p.follow_refused for p in refused) == 1
