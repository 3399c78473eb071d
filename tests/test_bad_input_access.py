"""Bad input, access (SPEC S36, S37): a sales manager sees the team's cards, drafts, reminders
and files, and changes none of them; only the owner acts on their own objects.

Against the real demo app (its users and teams); the answers are 404 so that acting on
someone else's object reveals nothing more than reading it.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engage.demo.models import db
from engage.models import Card, Email
from tests.demo_support import PREFIX, Rep


@pytest.fixture
def web(start_demo):
    return start_demo(worker=False)


def _card_for(app, rep: Rep) -> int:
    with app.app_context():
        card = Card(
            owner_id=str(rep.user_id),
            owner_team=rep.user.team,
            kind="reminder",
            priority="high",
            title="Call Ada back",
            record_type="contact",
            record_id="1",
        )
        db.session.add(card)
        db.session.commit()
        return card.id


@pytest.mark.parametrize(
    "method,path,data",
    [
        ("POST", "dismiss", {}),
        ("GET", "snooze", {}),
        ("POST", "snooze", {"choice": "tomorrow"}),
        ("GET", "phone-call", {}),
        ("POST", "phone-call", {"subject": "Called", "phone": "", "notes": ""}),
    ],
)
def test_a_manager_sees_a_reps_card_but_cannot_act_on_it(web, method, path, data):
    app = web.app
    mia = Rep(app, "Mia Berg")
    lena = Rep(app, "Lena Vogel")  # Mia's sales manager, same team
    card_id = _card_for(app, mia)
    panel = lena.get(f"{PREFIX}/assistant").get_data(as_text=True)
    assert "Call Ada back" in panel  # S37: she sees it ...
    assert f"/assistant/cards/{card_id}/dismiss" not in panel  # ... without its buttons
    url = f"{PREFIX}/assistant/cards/{card_id}/{path}"
    answer = lena.post(url, data) if method == "POST" else lena.get(url)
    assert answer.status_code == 404
    with app.app_context():
        card = db.session.get_one(Card, card_id)
        assert card.dismissed_at is None and card.snoozed_until is None
    # The owner can.
    mine = f"{PREFIX}/assistant/cards/{card_id}/{path}"
    answer = mia.post(mine, data) if method == "POST" else mia.get(mine)
    assert answer.status_code in (200, 302)


def test_a_manager_cannot_change_a_reps_draft(web):
    app = web.app
    mia = Rep(app, "Mia Berg")
    lena = Rep(app, "Lena Vogel")
    mia.post(
        f"{PREFIX}/compose",
        {"to": "ada@example.com", "subject": "Mine", "body": "x", "action": "save"},
    )
    with app.app_context():
        email_id = db.session.scalars(sa.select(Email.id)).one()
    assert lena.get(f"{PREFIX}/emails/{email_id}").status_code == 200
    for url, data in (
        (f"/emails/{email_id}/edit", {"to": "x@example.com", "subject": "Hers", "action": "save"}),
        (f"/emails/{email_id}/delete", {}),
    ):
        assert lena.post(PREFIX + url, data).status_code == 404
    with app.app_context():
        assert db.session.get_one(Email, email_id).subject == "Mine"
