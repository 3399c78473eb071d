"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from engage.models import Email, EmailStatus, Party, PartyRole
from engage.timeline import sync_email_activities
from tests import hostapp
from tests.hostapp import db


def sign_in(client, person_id: int):
    client.post(f"/login/{person_id}")
    return client


def add_email(app, owner: int, subject: str, *, team: str = "north") -> int:
    """Write an email straight into engage's tables, as the compose path will."""
    with app.app_context():
        email = Email(
            owner_id=str(owner),
            owner_team=team,
            subject=subject,
            status=EmailStatus.SENT,
            html_body="<p>Hello</p>",
            text_body="Hello",
        )
        email.regarding = hostapp.RecordRef("customer", "1")
        email.parties = [
            Party(role=PartyRole.FROM, address=f"p{owner}@host.test"),
            Party(
                role=PartyRole.TO, address="ada@example.com", record_type="customer", record_id="1"
            ),
            Party(
                role=PartyRole.CC,
                address="grace@example.com",
                record_type="customer",
                record_id="2",
                position=1,
            ),
            Party(
                role=PartyRole.BCC,
                address="bcc@example.com",
                record_type="customer",
                record_id="3",
                position=2,
            ),
        ]
        db.session.add(email)
        db.session.flush()
        sync_email_activities(db.session, email)
        db.session.commit()
        return email.id
