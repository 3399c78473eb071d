"""engage's own tables, on engage's own metadata, all prefixed ``engage_``.

They live on :data:`metadata` rather than on the host's ``db.Model`` so that they never mix with
the host's models, yet are queried through the host's Flask-SQLAlchemy session (which binds them
to the host's default engine). A host using Alembic adds :data:`metadata` to its
``target_metadata``; a standalone app calls :meth:`engage.Engage.create_all`.

Times are stored as UTC and always come back timezone-aware (:class:`UTCDateTime`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .i18n import gettext as _
from .records import RecordRef

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def affected_rows(result: sa.Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` changed."""
    return cast(sa.CursorResult[Any], result).rowcount or 0


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware.

    SQLite keeps no zone and PostgreSQL's ``timestamptz`` converts to the session zone; storing
    naive UTC on both and attaching UTC on the way out gives one behaviour everywhere.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("engage stores only timezone-aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """The declarative base of engage's tables."""

    metadata = metadata


class EmailStatus(StrEnum):
    """Where an email is in its life."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class PartyRole(StrEnum):
    """The header a party appears in."""

    FROM = "from"
    TO = "to"
    CC = "cc"
    BCC = "bcc"


class DeliveryState(StrEnum):
    """The delivery outcome for one recipient's copy."""

    PENDING = "pending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    #: Handed to the relay by a worker that stopped before the answer came: it may or may
    #: not have arrived (see ``ENGAGE_IN_DOUBT``).
    IN_DOUBT = "in_doubt"


class ActivityKind(StrEnum):
    """What a timeline entry stands for."""

    EMAIL = "email"
    REPLY = "reply"
    PHONE_CALL = "phone_call"
    #: A recipient's out-of-office absence, read from an auto-reply (SPEC S42).
    ABSENCE = "absence"
    #: A recipient stopped the tracking of engage's emails with the link in one (SPEC S43).
    OPT_OUT = "opt_out"


class EventKind(StrEnum):
    """What a recipient did with a followed email (SPEC S7)."""

    OPEN = "open"
    CLICK = "click"
    ATTACHMENT_OPEN = "attachment_open"
    REPLY = "reply"


def _enum(kind: type[StrEnum], name: str) -> sa.Enum:
    # Stored as plain strings (no native ENUM type), so adding a value needs no migration.
    return sa.Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda k: [m.value for m in k],
    )


def new_message_id(domain: str) -> str:
    """A fresh, unguessable RFC 5322 Message-ID for ``domain``."""
    return f"<{secrets.token_hex(16)}@{domain}>"


class Email(Base):
    """One email a rep wrote: a draft, a scheduled or a sent message.

    ``owner_id`` is the host user who wrote it; ``owner_team`` is their team when it was
    written, so a sales manager's view of the team needs no call to the host per row.
    """

    __tablename__ = "engage_email"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[EmailStatus] = mapped_column(
        _enum(EmailStatus, "engage_email_status"), default=EmailStatus.DRAFT, index=True
    )
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    html_body: Mapped[str] = mapped_column(sa.Text, default="")
    text_body: Mapped[str] = mapped_column(sa.Text, default="")
    regarding_type: Mapped[str | None] = mapped_column(sa.String(50))
    regarding_id: Mapped[str | None] = mapped_column(sa.String(100))
    owner_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    owner_team: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    #: The compose form's one-time key: a second Save or Send of the same form (a double
    #: click, a retried request) finds this email instead of making another.
    submission_key: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    followed: Mapped[bool] = mapped_column(default=False)
    bulk: Mapped[bool] = mapped_column(default=False)
    #: The sender's language when they wrote it (``"de-DE"``): what engage adds to the message
    #: (the attachment block) is written in it, unless the recipient's own language is known.
    language: Mapped[str | None] = mapped_column(sa.String(35))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When Send was pressed: the message's Date header.
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the last copy was settled (accepted or given up on).
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the next delivery attempt is due, while some copies wait for a retry.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: The template last applied to this email (SPEC S30), for its performance (S31).
    template_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_template.id", ondelete="SET NULL"), index=True
    )
    #: The Message-ID this email answers in its thread (a sequence's later step, S46): sent as
    #: its In-Reply-To and References.
    in_reply_to: Mapped[str | None] = mapped_column(sa.String(255))

    parties: Mapped[list[Party]] = relationship(
        back_populates="email", cascade="all, delete-orphan", order_by="Party.position"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="email", cascade="all, delete-orphan", order_by="Attachment.id"
    )
    links: Mapped[list[Link]] = relationship(cascade="all, delete-orphan", order_by="Link.position")

    @property
    def regarding(self) -> RecordRef | None:
        """The record the email is about (SPEC S1), if any."""
        if self.regarding_type and self.regarding_id:
            return RecordRef(self.regarding_type, self.regarding_id)
        return None

    @regarding.setter
    def regarding(self, ref: RecordRef | None) -> None:
        self.regarding_type = ref.type if ref else None
        self.regarding_id = ref.id if ref else None

    def parties_in(self, role: PartyRole) -> list[Party]:
        """The parties in one header, in the order they were written."""
        return [p for p in self.parties if p.role is role]

    @property
    def recipients(self) -> list[Party]:
        """Every To, Cc and Bcc party."""
        return [p for p in self.parties if p.role is not PartyRole.FROM]

    @property
    def delivery_summary(self) -> str:
        """The status a rep sees: the email's status, or *partly failed* when some copies failed.

        One of ``draft``, ``scheduled``, ``sending``, ``retrying``, ``sent``, ``partly_failed``,
        ``in_doubt``, ``failed``.
        """
        if self.status is EmailStatus.SENDING and any(
            p.delivery_state is DeliveryState.RETRYING for p in self.recipients
        ):
            return "retrying"
        if self.status is not EmailStatus.SENT:
            return self.status.value
        failed = [p for p in self.recipients if p.delivery_state is DeliveryState.FAILED]
        if failed and len(failed) == len(self.recipients):
            return EmailStatus.FAILED.value
        if failed:
            return "partly_failed"
        if any(p.delivery_state is DeliveryState.IN_DOUBT for p in self.recipients):
            return "in_doubt"
        return EmailStatus.SENT.value


class Party(Base):
    """One address on an email (From, To, Cc or Bcc) and, for recipients, its delivery."""

    __tablename__ = "engage_party"
    __table_args__ = (sa.Index("ix_engage_party_record", "record_type", "record_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[PartyRole] = mapped_column(_enum(PartyRole, "engage_party_role"))
    position: Mapped[int] = mapped_column(default=0)
    address: Mapped[str] = mapped_column(sa.String(320))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    record_type: Mapped[str | None] = mapped_column(sa.String(50))
    record_id: Mapped[str | None] = mapped_column(sa.String(100))
    delivery_state: Mapped[DeliveryState] = mapped_column(
        _enum(DeliveryState, "engage_delivery_state"), default=DeliveryState.PENDING
    )
    delivery_error: Mapped[str | None] = mapped_column(sa.Text)
    delivery_attempts: Mapped[int] = mapped_column(default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The attempt in flight: set (and committed) before the copy is handed to the relay,
    #: cleared with its answer. Set with no answer after its job died: the copy is in doubt.
    attempt_id: Mapped[str | None] = mapped_column(sa.String(32))
    #: When the last attempt started.
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: This recipient's tracking token (SPEC S13, S15): random, unguessable, its own. ``None``
    #: for recipients who are not tracked (the email is not followed, or they do not allow it).
    token: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    #: The recipient no longer allowed following when their copy went out (S9): the copy went
    #: unfollowed (no pixel, plain links, files as attachments) and the token was dropped.
    follow_refused: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Running totals of human events, kept by the event worker so that the timeline and the
    # interactions view never count events (machine events are kept but not counted here).
    opens: Mapped[int] = mapped_column(default=0)
    clicks: Mapped[int] = mapped_column(default=0)
    attachment_opens: Mapped[int] = mapped_column(default=0)
    first_open_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_open_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When this recipient used the link in their copy to stop its tracking (SPEC S43): from
    #: then on, nothing their copy's pixel, links or files fetch is recorded.
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    email: Mapped[Email] = relationship(back_populates="parties")

    @property
    def record(self) -> RecordRef | None:
        """The CRM record this address resolved to, if any."""
        if self.record_type and self.record_id:
            return RecordRef(self.record_type, self.record_id)
        return None

    @record.setter
    def record(self, ref: RecordRef | None) -> None:
        self.record_type = ref.type if ref else None
        self.record_id = ref.id if ref else None

    @property
    def display(self) -> str:
        """``Name <address>`` when there is a name, else the address."""
        return f"{self.name} <{self.address}>" if self.name else self.address


class Activity(Base):
    """One entry on one record's timeline.

    An email appears once on the timeline of its regarding record and of every party that is a
    record (SPEC S1, S2), so it has one row here per such record. The timeline of a record is
    then a single index range scan, newest first, paginated by ``(occurred_at, id)``.
    """

    __tablename__ = "engage_activity"
    __table_args__ = (
        sa.Index(
            "ix_engage_activity_timeline",
            "record_type",
            "record_id",
            sa.desc("occurred_at"),
            sa.desc("id"),
        ),
        sa.UniqueConstraint(
            "record_type", "record_id", "email_id", name="uq_engage_activity_email"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(50))
    record_id: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[ActivityKind] = mapped_column(_enum(ActivityKind, "engage_activity_kind"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    owner_id: Mapped[str] = mapped_column(sa.String(100))
    owner_team: Mapped[str | None] = mapped_column(sa.String(100))
    email_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE"), index=True
    )
    #: For a reply: the event it came from.
    event_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_event.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(sa.String(300), default="")
    notes: Mapped[str] = mapped_column(sa.Text, default="")

    email: Mapped[Email | None] = relationship()
    event: Mapped[TrackingEvent | None] = relationship()

    @property
    def record(self) -> RecordRef:
        """The record whose timeline this entry is on."""
        return RecordRef(self.record_type, self.record_id)


class Attachment(Base):
    """A file attached to an email. The bytes live in the attachment store under ``storage_key``."""

    __tablename__ = "engage_attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(sa.String(64), default="")
    storage_key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    followed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    email: Mapped[Email] = relationship(back_populates="attachments")


class StoredChunk(Base):
    """One piece of a file kept by :class:`engage.database_store.DatabaseStore`.

    A file is split into rows of at most :attr:`DatabaseStore.chunk_size` bytes (1 MB), numbered
    from 0 under the file's key, so that neither saving nor reading it ever holds more than one
    piece in memory: a ``bytea`` (PostgreSQL) or BLOB (SQLite) value is always read whole. Every
    stored file has a row 0, an empty one for an empty file. The rows are written in one
    transaction and never updated; deleting a file deletes its rows.
    """

    __tablename__ = "engage_attachment_chunk"

    store_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Setting(Base):
    """An organisation-wide setting that an admin can change at run time (e.g. SPEC S11)."""

    __tablename__ = "engage_setting"

    key: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(sa.String(100))


class Link(Base):
    """A link of a followed email: the only URLs its click endpoint will redirect to (S15)."""

    __tablename__ = "engage_link"
    __table_args__ = (sa.UniqueConstraint("email_id", "position", name="uq_engage_link_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column()
    url: Mapped[str] = mapped_column(sa.Text)


class TrackingEvent(Base):
    """One thing a recipient (or a machine on their behalf) did with a followed email.

    Machine events (S14) are kept with the rule and reason that labelled them, for the
    interactions view, but count nowhere else. No IP address is stored: only a keyed hash of it
    (S15), enough to tell two events from the same place apart.
    """

    __tablename__ = "engage_event"
    __table_args__ = (sa.Index("ix_engage_event_history", "email_id", "party_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(sa.ForeignKey("engage_email.id", ondelete="CASCADE"))
    party_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_party.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind, "engage_event_kind"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    machine: Mapped[bool] = mapped_column(default=False)
    rule: Mapped[str] = mapped_column(sa.String(40), default="")
    reason: Mapped[str] = mapped_column(sa.String(200), default="")
    link_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_link.id", ondelete="SET NULL")
    )
    attachment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_attachment.id", ondelete="SET NULL")
    )
    method: Mapped[str] = mapped_column(sa.String(10), default="")
    user_agent: Mapped[str] = mapped_column(sa.String(400), default="")
    ip_hash: Mapped[str | None] = mapped_column(sa.String(32))
    #: What makes this event unique where it came from (a reply's Message-ID, a tracking
    #: hit's id from the queue), so an event delivered twice is stored once.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(300), unique=True)
    #: For replies: subject and the first lines of the text.
    summary: Mapped[str] = mapped_column(sa.Text, default="")

    email: Mapped[Email] = relationship()
    party: Mapped[Party] = relationship()
    link: Mapped[Link | None] = relationship()


class UnparseableMessage(Base):
    """An inbound message engage could not read as a reply, noted once (see :mod:`engage.replies`).

    Keyed by the SHA-256 of the message's raw bytes, so the same message handed over again (a
    webhook retrying, a mailbox flag lost) is answered from here and never parsed again. The
    message itself is not kept: only its size, its Message-ID when one could be read, and why
    it was given up on (``reason``): too deeply nested, no header fields, or ingesting it
    failed every time the IMAP poller tried.
    """

    __tablename__ = "engage_unparseable_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: Where it came from: ``imap``, ``inbound``, …
    source: Mapped[str] = mapped_column(sa.String(20), default="")
    reason: Mapped[str] = mapped_column(sa.String(300), default="")
    size: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    message_id: Mapped[str | None] = mapped_column(sa.String(300))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecordTimezone(Base):
    """A record's time zone, geocoded from its postal address (SPEC S21).

    One row per record, written by the background lookup (:func:`engage.geocoding.lookup_timezone`)
    and read on the request path (:func:`engage.geocoding.timezone_of`). ``fingerprint`` is the
    hash of the address the zone came from: when the record's address changes, the row is stale
    and is looked up again. ``status`` is one of ``found``, ``not_found``, ``ambiguous``,
    ``no_address`` and ``failed``; ``reason`` says in a sentence for the UI how the zone was
    found or why there is none.
    """

    __tablename__ = "engage_record_timezone"
    __table_args__ = (
        sa.UniqueConstraint("record_type", "record_id", name="uq_engage_record_timezone_record"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(50))
    record_id: Mapped[str] = mapped_column(sa.String(100))
    #: An IANA zone name (``"Europe/Berlin"``), or ``None`` when the lookup found none.
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(20))
    reason: Mapped[str] = mapped_column(sa.String(300), default="")
    #: Who answered: ``offline`` (GeoNames data) or a geocoding service (``nominatim``, …).
    provider: Mapped[str] = mapped_column(sa.String(40), default="")
    looked_up_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def record(self) -> RecordRef:
        """The record whose time zone this is."""
        return RecordRef(self.record_type, self.record_id)


class EmailTemplate(Base):
    """A standard message kept by the sales managers (SPEC S29, S32), with its performance (S31).

    ``subject`` and ``html_body`` are Jinja sources for :mod:`engage.templating`; ``text_body``
    is the body as plain text, kept for search. A retired template stays, with its figures, but
    is no longer offered in Insert template.

    The counters are kept by the workers as messages go out and events come in
    (:mod:`engage.template_performance`), so showing them never counts events:

    - ``sent``: messages sent that used the template (the sample for replies);
    - ``followed_sent`` and ``opened``: of those, the followed ones, and those a person opened;
    - ``replied``: those a person replied to (auto-replies do not count);
    - ``opportunities`` and ``won``: those regarding an open opportunity, and of those, the ones
      whose opportunity was later won.
    """

    __tablename__ = "engage_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: A language code (``"en"``, ``"de"``).
    language: Mapped[str] = mapped_column(sa.String(10), index=True)
    category: Mapped[str] = mapped_column(sa.String(100), default="")
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    html_body: Mapped[str] = mapped_column(sa.Text, default="")
    text_body: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(100))
    updated_by: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    sent: Mapped[int] = mapped_column(default=0)
    followed_sent: Mapped[int] = mapped_column(default=0)
    opened: Mapped[int] = mapped_column(default=0)
    replied: Mapped[int] = mapped_column(default=0)
    opportunities: Mapped[int] = mapped_column(default=0)
    won: Mapped[int] = mapped_column(default=0)


class TemplateUse(Base):
    """One sent message that used a template: what it has already counted for (SPEC S31).

    The flags make every counter move at most once per message, however often an event is
    delivered or a job runs: a counter moves only with the conditional update that sets a flag.
    """

    __tablename__ = "engage_template_use"
    __table_args__ = (
        sa.Index("ix_engage_template_use_opportunity", "opportunity_type", "opportunity_id"),
    )

    email_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE"), primary_key=True
    )
    template_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_template.id", ondelete="CASCADE"), index=True
    )
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    followed: Mapped[bool] = mapped_column(default=False)
    opened: Mapped[bool] = mapped_column(default=False)
    replied: Mapped[bool] = mapped_column(default=False)
    #: The open opportunity the message was about, when it was about one.
    opportunity_type: Mapped[str | None] = mapped_column(sa.String(50))
    opportunity_id: Mapped[str | None] = mapped_column(sa.String(100))
    won: Mapped[bool] = mapped_column(default=False)
    #: When the sweep last asked the host whether the opportunity was won.
    won_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


#: A reminder's states (see :mod:`engage.reminders`): waiting for its time, fired as a card, or
#: settled without firing because its condition was met.
REMINDER_PENDING = "pending"
REMINDER_FIRED = "fired"
REMINDER_RESOLVED = "resolved"


class Reminder(Base):
    """The follow-up reminder of one email, and what became of it."""

    __tablename__ = "engage_reminder"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE"), unique=True
    )
    owner_id: Mapped[str] = mapped_column(sa.String(100))
    title: Mapped[str] = mapped_column(sa.String(300), default="")
    condition: Mapped[str] = mapped_column(sa.String(20))
    remind_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(sa.String(20), default=REMINDER_PENDING, index=True)
    #: Why a resolved reminder did not fire, without the time (``"Ada replied"``).
    resolved_reason: Mapped[str | None] = mapped_column(sa.String(300))
    #: When the condition was met (the first human reply or open), for a resolved reminder.
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the reminder fired or resolved itself.
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The one recipient (address) whose events count, or ``None`` for anyone (SPEC S41).
    recipient: Mapped[str | None] = mapped_column(sa.String(320))
    #: For *If the attachment is not opened by*: the followed file watched, or ``None`` for any.
    attachment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_attachment.id", ondelete="SET NULL")
    )

    email: Mapped[Email] = relationship()

    def reset(
        self,
        title: str,
        condition: str,
        remind_at: datetime,
        *,
        recipient: str | None = None,
        attachment_id: int | None = None,
    ) -> None:
        """Set what the reminder says and when it is due; it is pending again."""
        self.title = title.strip()
        self.condition = condition
        self.remind_at = remind_at
        self.recipient = recipient
        self.attachment_id = attachment_id
        self.state = REMINDER_PENDING
        self.resolved_reason = None
        self.met_at = None
        self.fired_at = None


class Card(Base):
    """One action card in a rep's assistant panel."""

    __tablename__ = "engage_card"
    __table_args__ = (
        # The panel: a user's (or team's) live cards, high priority first, newest first.
        sa.Index(
            "ix_engage_card_panel",
            "owner_id",
            "dismissed_at",
            "snoozed_until",
            "priority",
            sa.desc("created_at"),
        ),
        sa.Index("ix_engage_card_team", "owner_team", "dismissed_at"),
        sa.Index("ix_engage_card_email", "email_id", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[str] = mapped_column(sa.String(100))
    owner_team: Mapped[str | None] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(20))
    priority: Mapped[str] = mapped_column(sa.String(10), default="normal")
    title: Mapped[str] = mapped_column(sa.String(300), default="")
    body: Mapped[str] = mapped_column(sa.Text, default="")
    email_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE")
    )
    record_type: Mapped[str | None] = mapped_column(sa.String(50))
    record_id: Mapped[str | None] = mapped_column(sa.String(100))
    party_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_party.id", ondelete="SET NULL")
    )
    #: The reminder that fired this card.
    reminder_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_reminder.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    email: Mapped[Email | None] = relationship()
    party: Mapped[Party | None] = relationship()

    @property
    def regarding(self) -> RecordRef | None:
        """The record the card is about (the email's regarding record), if any."""
        if self.record_type and self.record_id:
            return RecordRef(self.record_type, self.record_id)
        return None

    @property
    def owner_label(self) -> str:
        """Who the card is for, as a sales manager reads it: the email's sender, else an id."""
        if self.email is not None:
            for party in self.email.parties_in(PartyRole.FROM):
                return party.name or party.address
        return _("user %(id)s", id=self.owner_id)


class Absence(Base):
    """A recipient's absence, as an out-of-office auto-reply stated it (SPEC S42).

    Kept by address (lower case), since that is what an auto-reply comes from; ``record_type``
    and ``record_id`` name the CRM record the address belonged to on the email, if any.
    ``until`` is the moment they are back: the start of the working day on ``return_date``
    in their zone (UTC midnight of that date when their zone is unknown).
    """

    __tablename__ = "engage_absence"
    __table_args__ = (sa.Index("ix_engage_absence_address", "address", "until"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(320))
    record_type: Mapped[str | None] = mapped_column(sa.String(50))
    record_id: Mapped[str | None] = mapped_column(sa.String(100))
    #: When the auto-reply saying so came (the absence is known from then).
    noted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    return_date: Mapped[date] = mapped_column(sa.Date)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The auto-reply it was read from.
    event_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_event.id", ondelete="SET NULL"), unique=True
    )

    @property
    def record(self) -> RecordRef | None:
        """The CRM record of the absent recipient, if known."""
        if self.record_type and self.record_id:
            return RecordRef(self.record_type, self.record_id)
        return None


class TrackingOptOut(Base):
    """A recipient's own *don't track my opens and clicks* (SPEC S43), kept by engage.

    One row per address (lower case). ``in_adapter`` says whether the host's record adapter
    took the preference too (``set_follow_preference``): then the host's record is the truth
    and this row is only the history; otherwise this row is what engage honours (S9).
    """

    __tablename__ = "engage_tracking_opt_out"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(320), unique=True)
    record_type: Mapped[str | None] = mapped_column(sa.String(50))
    record_id: Mapped[str | None] = mapped_column(sa.String(100))
    in_adapter: Mapped[bool] = mapped_column(default=False)
    #: The copy whose link was used.
    party_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_party.id", ondelete="SET NULL")
    )
    opted_out_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- Sequences (SPEC S46–S48) -----------------------------------------------------------------


class StepKind(StrEnum):
    """What one step of a sequence does."""

    #: An email rendered from a template for each recipient and sent by itself.
    AUTO_EMAIL = "auto_email"
    #: A draft prepared from a template that the rep sends from an assistant card.
    MANUAL_EMAIL = "manual_email"
    #: A phone call task: an assistant card.
    CALL = "call"


class EnrolmentState(StrEnum):
    """Where one enrolment is (see :mod:`engage.sequences`)."""

    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


class EndReason(StrEnum):
    """Why an enrolment ended (S48: where the recipients left)."""

    REPLIED = "replied"
    BOUNCED = "bounced"
    OPTED_OUT = "opted_out"
    FINISHED = "finished"
    ENDED_BY_REP = "ended_by_rep"


class EmailSequence(Base):
    """A planned series of follow-ups kept by the sales managers (SPEC S46).

    The counters of where enrolments ended are kept as enrolments end, so the sequence's page
    never counts enrolments.
    """

    __tablename__ = "engage_sequence"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: Later emails go as replies in the thread of the enrolment's first email.
    thread_replies: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[str] = mapped_column(sa.String(100))
    updated_by: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    enrolled: Mapped[int] = mapped_column(default=0)
    replied: Mapped[int] = mapped_column(default=0)
    bounced: Mapped[int] = mapped_column(default=0)
    opted_out: Mapped[int] = mapped_column(default=0)
    finished: Mapped[int] = mapped_column(default=0)
    ended_by_rep: Mapped[int] = mapped_column(default=0)

    steps: Mapped[list[SequenceStep]] = relationship(
        back_populates="sequence", cascade="all, delete-orphan", order_by="SequenceStep.position"
    )


class SequenceStep(Base):
    """One step of a sequence: what it does, after how many of the recipient's working days.

    ``sent`` counts what the step produced (emails sent, drafts or call cards made); ``opened``
    and ``replied`` the recipients who opened (people's opens) or answered its email.
    """

    __tablename__ = "engage_sequence_step"
    __table_args__ = (
        sa.UniqueConstraint("sequence_id", "position", name="uq_engage_sequence_step_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_sequence.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column()
    kind: Mapped[StepKind] = mapped_column(_enum(StepKind, "engage_step_kind"))
    wait_days: Mapped[int] = mapped_column(default=0)
    template_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_template.id", ondelete="SET NULL")
    )
    #: What the rep reads on a call card (or a manual email's card).
    notes: Mapped[str] = mapped_column(sa.Text, default="")

    sent: Mapped[int] = mapped_column(default=0)
    opened: Mapped[int] = mapped_column(default=0)
    replied: Mapped[int] = mapped_column(default=0)

    sequence: Mapped[EmailSequence] = relationship(back_populates="steps")
    template: Mapped[EmailTemplate | None] = relationship()


class Enrolment(Base):
    """One recipient going through one sequence (SPEC S47).

    ``next_position`` is the step to do next and ``due_at`` when; the sweep claims a due step
    with a conditional UPDATE on both, so a step is done once however many jobs try. The rep's
    name, address and zone are kept from enrolment, for the workers that send in their name.
    """

    __tablename__ = "engage_sequence_enrolment"
    __table_args__ = (
        sa.Index("ix_engage_sequence_enrolment_due", "state", "due_at"),
        sa.Index("ix_engage_sequence_enrolment_record", "record_type", "record_id"),
        sa.Index("ix_engage_sequence_enrolment_ended", "sequence_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_sequence.id", ondelete="CASCADE")
    )
    record_type: Mapped[str] = mapped_column(sa.String(50))
    record_id: Mapped[str] = mapped_column(sa.String(100))
    #: The recipient's address, lower case.
    address: Mapped[str] = mapped_column(sa.String(320), index=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    owner_id: Mapped[str] = mapped_column(sa.String(100))
    owner_team: Mapped[str | None] = mapped_column(sa.String(100))
    owner_name: Mapped[str] = mapped_column(sa.String(200), default="")
    owner_email: Mapped[str] = mapped_column(sa.String(320), default="")
    owner_zone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    state: Mapped[EnrolmentState] = mapped_column(
        _enum(EnrolmentState, "engage_enrolment_state"), default=EnrolmentState.ACTIVE
    )
    end_reason: Mapped[EndReason | None] = mapped_column(_enum(EndReason, "engage_end_reason"))
    next_position: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Paused through an absence until then (``None`` while paused by the rep).
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    thread_message_id: Mapped[str | None] = mapped_column(sa.String(255))
    thread_subject: Mapped[str | None] = mapped_column(sa.String(998))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    sequence: Mapped[EmailSequence] = relationship()

    @property
    def record(self) -> RecordRef:
        """The contact or lead enrolled."""
        return RecordRef(self.record_type, self.record_id)


class SequenceSend(Base):
    """One step done for one enrolment: the email sent, or the draft or card made.

    Unique per enrolment and step, so no step is ever done twice for a recipient.
    """

    __tablename__ = "engage_sequence_send"
    __table_args__ = (
        sa.UniqueConstraint("enrolment_id", "position", name="uq_engage_sequence_send_step"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("engage_sequence_enrolment.id", ondelete="CASCADE")
    )
    step_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_sequence_step.id", ondelete="SET NULL"), index=True
    )
    position: Mapped[int] = mapped_column()
    email_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="SET NULL"), index=True
    )
    party_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_party.id", ondelete="SET NULL")
    )
    card_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_card.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    opened: Mapped[bool] = mapped_column(default=False, index=True)
    replied: Mapped[bool] = mapped_column(default=False)


class SequenceQuota(Base):
    """How many sequence emails a rep sent on one day of theirs, and when the last went (S48)."""

    __tablename__ = "engage_sequence_quota"

    owner_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    day: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    sent: Mapped[int] = mapped_column(default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
