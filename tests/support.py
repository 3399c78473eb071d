"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import sqlalchemy as sa

from engage.models import Email, EmailStatus, EventKind, Party, PartyRole, TrackingEvent
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


# -- replies (moved from tests/test_replies.py) ------------------------------------------------

#: The host app's ``ENGAGE_INBOUND_TOKEN`` in the reply tests (the ``sent`` fixture sets it).
TOKEN = "inbound-test-token-0123456789"
INBOUND = "/crm/engage/inbound/replies"


def reply(
    in_reply_to: str | None,
    *,
    sender: str = "Ada Lovelace <ada@example.com>",
    subject: str = "Re: Quarterly review",
    text: str = "Tuesday works for me. Let's talk then.",
    message_id: str | None = "<reply-1@example.com>",
    date: datetime | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A reply as a mail program writes it: threading headers, the original quoted below."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Sam Seller <sam@host.test>"
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime.now(UTC) - timedelta(minutes=5))
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = references or in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(
        f"{text}\n\nOn Mon, 3 Jun 2024 at 10:00, Sam Seller <sam@host.test> wrote:\n"
        "> Hello Ada, see Q3\n> (https://example.com/q3)\n"
    )
    return bytes(message)


def post_inbound(app, body: bytes, token: str | None = TOKEN, **headers: str):
    """POST ``body`` to the inbound endpoint with the bearer token."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return app.test_client().post(
        INBOUND, data=body, headers=headers, content_type="message/rfc822"
    )


def reply_events(app) -> list[TrackingEvent]:
    """Every stored reply event, oldest first."""
    with app.app_context():
        rows = db.session.scalars(
            sa.select(TrackingEvent)
            .where(TrackingEvent.kind == EventKind.REPLY)
            .order_by(TrackingEvent.id)
        ).all()
        db.session.expunge_all()
        return list(rows)
