"""Driving the real demo CRM from a test: a signed-in rep, the mailbox, waiting for the worker.

The bad-input suites run against the demo as ``start_demo`` serves it: the demo app, a real
``rq`` worker, the demo's SMTP sink and Redis. Requests go through the app's WSGI door with
Flask's test client (the same app object the live server serves), so the demo's own CSRF
protection, sessions and error handlers all apply.
"""

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from flask.testing import FlaskClient

from engage.demo.models import Contact, Lead, MailMessage, MailRecipient, User, db
from engage.models import Email, EmailStatus
from tests.support import csrf_token, wait_for

PREFIX = "/engage"


class Rep:
    """A demo user signed in through the sign-in page, with their CSRF token at hand."""

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        with app.app_context():
            self.user = db.session.scalars(sa.select(User).where(User.name == name)).one()
            self.user_id = self.user.id
        answer = self.client.post(
            "/sign-in",
            data={"user_id": self.user_id, "csrf_token": csrf_token(self.client, "/sign-in")},
        )
        assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
        self.token = self.csrf()

    def csrf(self, url: str = f"{PREFIX}/compose") -> str:
        return csrf_token(self.client, url)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        fields = {"csrf_token": self.token, **(data or {})}
        return self.client.post(url, data=fields, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, **kwargs)


def contact(app: Any, last_name: str) -> Contact:
    with app.app_context():
        row = db.session.scalars(sa.select(Contact).where(Contact.last_name == last_name)).one()
        db.session.expunge(row)
        return row


def set_preference(app: Any, model: type[Contact] | type[Lead], row_id: int, value: str) -> None:
    with app.app_context():
        db.session.get_one(model, row_id).follow_preference = value
        db.session.commit()


def emails(app: Any) -> list[Email]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Email).order_by(Email.id)))
        for row in rows:
            _ = row.parties, row.attachments
            db.session.expunge(row)
        return rows


def email(app: Any, email_id: int) -> Email:
    with app.app_context():
        row = db.session.get_one(Email, email_id)
        _ = row.parties, row.attachments
        db.session.expunge(row)
        return row


def wait_until_settled(app: Any, email_id: int, *, timeout: float = 20.0) -> Email:
    """Wait until the worker has finished with the email (sent, partly sent or failed)."""

    def settled() -> Email | None:
        row = email(app, email_id)
        return row if row.status in (EmailStatus.SENT, EmailStatus.FAILED) else None

    return wait_for(settled, timeout=timeout, what=f"email {email_id} to be delivered")


def received(app: Any, address: str) -> list[EmailMessage]:
    """Every message the demo's SMTP sink received for ``address`` (Bcc included)."""
    with app.app_context():
        rows = db.session.scalars(
            sa.select(MailMessage)
            .join(MailRecipient)
            .where(sa.func.lower(MailRecipient.address) == address.lower())
            .order_by(MailMessage.id)
        )
        return [
            message_from_bytes(row.raw, policy=email_policy.default)  # type: ignore[misc]
            for row in rows
        ]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    return part.get_content() if part is not None else ""


def is_followed_copy(message: EmailMessage) -> bool:
    """Whether a received copy carries engage's tracking: the open pixel or tracked links."""
    body = html_of(message)
    return "/t/o/" in body or "/t/c/" in body or "/t/a/" in body
