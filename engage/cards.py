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

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session, selectinload

from .access import owned_by_visible
from .context import current_engage
from .i18n import STORED_PREFIX, stored
from .i18n import gettext as _
from .local_time import HORIZON, parse_local
from .models import (
    Activity,
    ActivityKind,
    Card,
    Party,
    affected_rows,
    utcnow,
)
from .organisation import engagement_enabled
from .records import EngageUser, RecordRef

#: What a card can be about.
KINDS = frozenset({"opened", "reminder", "sequence_email", "sequence_call"})
#: How urgent a card is; ``high`` cards come first in the panel.
PRIORITIES = frozenset({"high", "normal"})


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
    :param title: what happened, in one line the rep reads first: plain text (a rep's own
        words, such as a reminder's title) or a :func:`engage.i18n.stored` message, read in the
        reader's language (see :attr:`Card.title_text`).
    :param body: more detail, shown under the title; plain or stored like ``title``.
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
        title=title if title.startswith(STORED_PREFIX) else title[:300],
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


# -- Open cards (S12) ----------------------------------------------------------------------


def cards_for_opens(session: Session, opens: list[tuple[Party, datetime]]) -> list[Card]:
    """Create the sender's open cards for a batch of **human** opens; the caller commits.

    Called by the event worker (:func:`engage.events.record_interactions`) with the human opens
    of one batch, in time order. An email gets an open card on its first human open, and
    another only once ``ENGAGE_OPEN_CARD_QUIET_MINUTES`` have passed since its last open card,
    so that a recipient reading a message five times in a row makes one card, not five. No card
    is made while the organisation has email engagement disabled (S11), nor for bulk or
    unfollowed emails.
    """
    if not opens or not engagement_enabled():
        return []
    quiet = timedelta(minutes=float(current_app.config["ENGAGE_OPEN_CARD_QUIET_MINUTES"]))
    email_ids = {party.email_id for party, _when in opens}
    last: dict[int, datetime] = dict(
        session.execute(  # type: ignore[arg-type]  # rows are (email_id, newest) pairs
            sa.select(Card.email_id, sa.func.max(Card.created_at))
            .where(Card.email_id.in_(email_ids), Card.kind == "opened")
            .group_by(Card.email_id)
        ).all()
    )
    made = []
    for party, when in opens:
        email = party.email
        if not email.followed or email.bulk:
            continue
        previous = last.get(email.id)
        if previous is not None and when - previous < quiet:
            continue
        last[email.id] = max(when, utcnow())
        who = party.name or _record_name(party.record) or party.address
        # Stored as what happened, read in the rep's language when shown (S45).
        subject = email.subject[:120] if email.subject else stored("subject.none")
        made.append(
            create_card(
                session,
                owner_id=email.owner_id,
                owner_team=email.owner_team,
                kind="opened",
                priority="normal",
                title=stored("card.opened.title", who=who[:80], subject=subject),
                body=stored("card.opened.first", address=party.address)
                if party.opens <= 1
                else stored("card.opened.again", address=party.address, num=party.opens),
                email_id=email.id,
                regarding=email.regarding,
                party_id=party.id,
            )
        )
    return made


def _record_name(ref: RecordRef | None) -> str:
    record = current_engage.records.get(ref) if ref is not None else None
    return record.name if record is not None else ""


# -- The panel's rules ---------------------------------------------------------------------


def _live(user: EngageUser, now: datetime) -> list[sa.ColumnElement[bool]]:
    """Cards ``user`` may see that are neither dismissed nor snoozed into the future."""
    return [
        owned_by_visible(user, Card.owner_id, Card.owner_team),
        Card.dismissed_at.is_(None),
        sa.or_(Card.snoozed_until.is_(None), Card.snoozed_until <= now),
    ]


@dataclass(frozen=True, slots=True)
class Panel:
    """What the assistant panel shows, and the version a poll compares against."""

    cards: list[Card]
    unread: int
    version: str


def panel_for(session: Session, user: EngageUser, *, limit: int = 50) -> Panel:
    """The cards of ``user``'s panel: high priority first, then newest.

    A sales manager also sees the team's cards (S37). ``unread`` counts only the user's own
    cards that are not marked read: a manager looking at a rep's card does not mark it read for
    that rep. ``version`` changes whenever anything the panel shows changes.
    """
    now = utcnow()
    cards = list(
        session.scalars(
            sa.select(Card)
            .where(*_live(user, now))
            .order_by(
                sa.case((Card.priority == "high", 0), else_=1),
                Card.created_at.desc(),
                Card.id.desc(),
            )
            .limit(limit)
            .options(selectinload(Card.email), selectinload(Card.party))
        )
    )
    unread = (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Card)
            .where(*_live(user, now), Card.owner_id == user.id, Card.read_at.is_(None))
        )
        or 0
    )
    fingerprint = "|".join(f"{c.id}:{c.priority}:{c.read_at is not None}:{c.title}" for c in cards)
    version = hashlib.sha256(f"{unread}|{fingerprint}".encode()).hexdigest()[:16]
    return Panel(cards, unread, version)


def mark_all_read(session: Session, user: EngageUser) -> int:
    """Mark the user's own live cards read; returns how many changed. The caller commits."""
    now = utcnow()
    result = session.execute(
        sa.update(Card)
        .where(*_live(user, now), Card.owner_id == user.id, Card.read_at.is_(None))
        .values(read_at=now)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(result)


def snooze_choices(now_local: datetime) -> list[tuple[str, str, datetime]]:
    """The quick snooze choices: ``(key, label, local time)``, from a local "now"."""
    tomorrow = (now_local + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    days_to_monday = (7 - now_local.weekday()) % 7 or 7
    monday = (now_local + timedelta(days=days_to_monday)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    return [
        ("1h", _("1 hour"), now_local + timedelta(hours=1)),
        ("3h", _("3 hours"), now_local + timedelta(hours=3)),
        ("tomorrow", _("Tomorrow 08:00"), tomorrow),
        ("monday", _("Monday 08:00"), monday),
    ]


def snooze_until(value: str, zone: str, *, now: datetime | None = None) -> datetime:
    """When a snooze chosen as ``value`` ends, in UTC.

    ``value`` is a quick choice key (see :func:`snooze_choices`) or a ``datetime-local`` value
    in ``zone``.

    :raises ValueError: with a sentence for the user, for a malformed or past time.
    """
    now = now or utcnow()
    quick = {key: when for key, _label, when in snooze_choices(now.astimezone(ZoneInfo(zone)))}
    if value in quick:
        return quick[value].astimezone(ZoneInfo("UTC"))
    try:
        until = parse_local(value, zone)
    except ValueError:
        raise ValueError(_("Choose a date and time to snooze until.")) from None
    if until <= now:
        raise ValueError(_("That time has passed: choose a time in the future."))
    if until > now + HORIZON:
        raise ValueError(_("That is too far ahead: choose a time within the next ten years."))
    return until


def dismiss(session: Session, card: Card) -> None:
    """Dismiss a card for good (it leaves the panel) and commit."""
    card.dismissed_at = utcnow()
    card.read_at = card.read_at or card.dismissed_at
    session.commit()


def snooze(session: Session, card: Card, until: datetime) -> None:
    """Hide a card until ``until`` and commit."""
    card.snoozed_until = until
    session.commit()


def restore(session: Session, card: Card) -> None:
    """Undo a dismiss or a snooze: the card is back in the panel, as it was; commits."""
    card.dismissed_at = None
    card.snoozed_until = None
    session.commit()


def add_phone_call(
    session: Session, user: EngageUser, card: Card, *, subject: str, phone: str, notes: str
) -> Activity:
    """Put a phone call activity on the card's regarding record's timeline; the caller commits.

    :raises ValueError: when the card has no regarding record (there is no timeline to put
        it on) or the subject is empty.
    """
    ref = card.regarding
    if ref is None:
        raise ValueError(_("This card is not about a record, so there is no timeline to add to."))
    subject = subject.strip()
    if not subject:
        raise ValueError(_("Give the phone call a subject."))
    lines = [_("Phone: %(number)s", number=phone.strip())] if phone.strip() else []
    if notes.strip():
        lines.append(notes.strip())
    activity = Activity(
        record_type=ref.type,
        record_id=ref.id,
        kind=ActivityKind.PHONE_CALL,
        occurred_at=utcnow(),
        owner_id=user.id,
        owner_team=user.team,
        title=subject[:300],
        notes="\n".join(lines),
    )
    session.add(activity)
    session.flush()
    return activity
