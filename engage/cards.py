"""Action cards and the assistant panel (SPEC S12, S33, S35, S37).

A card tells a rep that something happened which asks for their attention: a recipient opened
a followed email (``kind="opened"``, created here from the event worker) or a follow-up
reminder fired (``kind="reminder"``, created by :mod:`engage.reminders` through
:func:`create_card`). Cards are listed in the assistant panel, high priority first, then newest.

Public API::

    create_card(session, *, owner_id: str, owner_team: str | None, kind: str, priority: str,
                title: str, body: str = "", email_id: int | None = None,
                regarding: RecordRef | None = None, party_id: int | None = None,
                reminder_id: int | None = None) -> Card
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from .models import Base, Email, Party, UTCDateTime, utcnow
from .records import RecordRef

#: What a card can be about.
KINDS = frozenset({"opened", "reminder"})
#: How urgent a card is; ``high`` cards come first in the panel.
PRIORITIES = frozenset({"high", "normal"})


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
    #: The reminder that fired this card; a plain id, the reminders table is not ours.
    reminder_id: Mapped[int | None] = mapped_column(index=True)
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


def create_card(
    session: Session,
    *,
    owner_id: str,
    owner_team: str | None,
    kind: str,
    priority: str,
    title: str,
    body: str = "",
    email_id: int | None = None,
    regarding: RecordRef | None = None,
    party_id: int | None = None,
    reminder_id: int | None = None,
) -> Card:
    """Add a card to ``owner_id``'s assistant panel; flushes, the caller commits.

    :param owner_id: the host user the card is for.
    :param owner_team: their team, so their sales manager sees the card too.
    :param kind: ``"opened"`` or ``"reminder"``.
    :param priority: ``"high"`` or ``"normal"``.
    :param title: what happened, in one line the rep reads first.
    :param body: more detail, shown under the title.
    :param email_id: the email the card is about; the card links to it.
    :param regarding: the email's regarding record; the card links to it and a phone call
        created from the card lands on its timeline.
    :param party_id: the recipient who did something (opened), if any.
    :param reminder_id: the reminder that fired this card, if any.
    :raises ValueError: for an unknown kind or priority.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown card kind {kind!r}; expected one of {sorted(KINDS)}")
    if priority not in PRIORITIES:
        raise ValueError(
            f"unknown card priority {priority!r}; expected one of {sorted(PRIORITIES)}"
        )
    card = Card(
        owner_id=str(owner_id),
        owner_team=owner_team,
        kind=kind,
        priority=priority,
        title=title[:300],
        body=body,
        email_id=email_id,
        record_type=regarding.type if regarding else None,
        record_id=regarding.id if regarding else None,
        party_id=party_id,
        reminder_id=reminder_id,
        created_at=utcnow(),
    )
    session.add(card)
    session.flush()
    return card
