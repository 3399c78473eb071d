"""The demo CRM's own tables: users, accounts, contacts, leads, opportunities, and a mailbox.

They belong to the demo host, not to engage: every table name starts with ``demo_`` and they
live on the demo's own Flask-SQLAlchemy metadata, next to (never inside) engage's tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from engage import FollowPreference, PostalAddress, Role


class DemoBase(DeclarativeBase):
    """The declarative base of the demo's models."""


db = SQLAlchemy(model_class=DemoBase)

# Flask-SQLAlchemy builds ``db.Model`` at run time, out of sight of type checkers; to them the
# demo's models derive from the declarative base it is made from.
if TYPE_CHECKING:
    Model = DemoBase
else:
    Model = db.Model

#: The role strings a demo user can hold; ``none`` is a user who may not use email features.
USER_ROLES = ("salesperson", "sales_manager", "admin", "none")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class User(UserMixin, Model):
    """A person who signs in to the demo CRM."""

    __tablename__ = "demo_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    role: Mapped[str] = mapped_column(sa.String(20), default="none")
    team: Mapped[str | None] = mapped_column(sa.String(100))
    timezone: Mapped[str | None] = mapped_column(sa.String(64))

    @property
    def engage_roles(self) -> list[str]:
        """The engage role names this user holds (read by engage's default user loader)."""
        return [self.role] if self.role in {r.value for r in Role} else []

    @property
    def engage_team(self) -> str | None:
        """The sales team, so a sales manager sees their team's work in engage."""
        return self.team


class _PostalAddressColumns:
    """Postal address columns shared by every record that has an address."""

    street: Mapped[str] = mapped_column(sa.String(200), default="")
    city: Mapped[str] = mapped_column(sa.String(100), default="")
    postal_code: Mapped[str] = mapped_column(sa.String(20), default="")
    region: Mapped[str] = mapped_column(sa.String(100), default="")
    #: ISO 3166-1 alpha-2, upper case; empty when unknown.
    country: Mapped[str] = mapped_column(sa.String(2), default="")

    @property
    def address(self) -> PostalAddress | None:
        """The address as engage's value type, or ``None`` when nothing is filled in."""
        address = PostalAddress(
            street=self.street,
            city=self.city,
            postal_code=self.postal_code,
            region=self.region,
            country=self.country,
        )
        return None if address.is_empty() else address


class _PersonColumns(_PostalAddressColumns):
    """What contacts and leads share: a person with a way to reach them."""

    first_name: Mapped[str] = mapped_column(sa.String(100), default="")
    last_name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(320), index=True)
    phone: Mapped[str | None] = mapped_column(sa.String(50))
    #: ``allow`` or ``do_not_allow`` (see :class:`engage.FollowPreference`).
    follow_preference: Mapped[str] = mapped_column(
        sa.String(20), default=FollowPreference.ALLOW.value
    )
    #: A language code such as ``en`` or ``de``.
    language: Mapped[str | None] = mapped_column(sa.String(10))

    @property
    def name(self) -> str:
        """First and last name."""
        return " ".join(p for p in (self.first_name, self.last_name) if p)


class Account(_PostalAddressColumns, Model):
    """A customer organisation."""

    __tablename__ = "demo_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str | None] = mapped_column(sa.String(320), index=True)
    phone: Mapped[str | None] = mapped_column(sa.String(50))
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("demo_user.id"))

    owner: Mapped[User] = relationship()
    contacts: Mapped[list[Contact]] = relationship(
        back_populates="account", order_by="Contact.last_name"
    )
    opportunities: Mapped[list[Opportunity]] = relationship(
        back_populates="account", order_by="Opportunity.name"
    )


class Contact(_PersonColumns, Model):
    """A person at an account."""

    __tablename__ = "demo_contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("demo_account.id"))
    job_title: Mapped[str] = mapped_column(sa.String(100), default="")
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("demo_user.id"))

    account: Mapped[Account | None] = relationship(back_populates="contacts")
    owner: Mapped[User] = relationship()


class Lead(_PersonColumns, Model):
    """A prospective customer who is not an account yet."""

    __tablename__ = "demo_lead"

    id: Mapped[int] = mapped_column(primary_key=True)
    company: Mapped[str] = mapped_column(sa.String(200), default="")
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("demo_user.id"))

    owner: Mapped[User] = relationship()


#: The sales stages of an opportunity, in order.
OPPORTUNITY_STAGES = ("qualify", "develop", "propose", "close")


class Opportunity(Model):
    """A possible sale to an account."""

    __tablename__ = "demo_opportunity"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("demo_account.id"))
    primary_contact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("demo_contact.id"))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal(0))
    currency: Mapped[str] = mapped_column(sa.String(3), default="USD")
    stage: Mapped[str] = mapped_column(sa.String(20), default="qualify")
    #: Whether the sale was won; engage uses it for template performance (SPEC S31).
    won: Mapped[bool] = mapped_column(default=False)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("demo_user.id"))

    account: Mapped[Account] = relationship(back_populates="opportunities")
    primary_contact: Mapped[Contact | None] = relationship()
    owner: Mapped[User] = relationship()


class MailMessage(Model):
    """One message the demo's SMTP sink received, kept whole so it can be read later.

    Subject and header addresses are copied out of the raw bytes when the message arrives, so
    that the mailbox list needs no parsing.
    """

    __tablename__ = "demo_mail_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=_utcnow, index=True
    )
    envelope_from: Mapped[str] = mapped_column(sa.String(320), default="")
    subject: Mapped[str] = mapped_column(sa.Text, default="")
    from_header: Mapped[str] = mapped_column(sa.Text, default="")
    to_header: Mapped[str] = mapped_column(sa.Text, default="")
    raw: Mapped[bytes] = mapped_column(sa.LargeBinary)

    recipients: Mapped[list[MailRecipient]] = relationship(
        back_populates="message", cascade="all, delete-orphan", order_by="MailRecipient.id"
    )

    @property
    def received_at_utc(self) -> datetime:
        """The receipt time, timezone-aware (SQLite gives it back naive)."""
        value = self.received_at
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class MailRecipient(Model):
    """One envelope recipient of a received message (Bcc recipients included)."""

    __tablename__ = "demo_mail_recipient"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        sa.ForeignKey("demo_mail_message.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(sa.String(320), index=True)

    message: Mapped[MailMessage] = relationship(back_populates="recipients")


#: The SQL function, registered on every SQLite connection, that case-folds text the way
#: Python does. SQLite's own ``lower()`` and ``LIKE`` fold ASCII only, so "MÜNCHEN" would not
#: find "München" without it.
SQLITE_CASEFOLD = "demo_casefold"


def _casefold(value: object) -> str | None:
    return None if value is None else str(value).casefold()


def prepare_engine(engine: sa.Engine) -> None:
    """Set up connections of ``engine`` for a demo that several processes share.

    On SQLite the web server, the SMTP sink thread and the RQ worker process all write to one
    file: write-ahead logging lets readers and one writer proceed together, and a busy timeout
    makes a writer wait for its turn instead of failing at once.
    """
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: object, connection_record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        dbapi_connection.create_function(  # type: ignore[attr-defined]
            SQLITE_CASEFOLD, 1, _casefold, deterministic=True
        )
