"""A record's timeline: which activities it shows and in what order (SPEC S1–S3).

Each email has one :class:`~engage.models.Activity` row per record it belongs to: its regarding
record and every From/To/Cc party that is a CRM record. Bcc parties are left out on purpose:
the other recipients never learn of a Bcc, so neither does the Bcc'd record's timeline of theirs.
Pages are cut by keyset pagination on ``(occurred_at, id)``, so the hundredth page costs what
the first one does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from .access import owned_by_visible
from .ids import parse_id
from .models import Activity, ActivityKind, Email, PartyRole, TrackingEvent, utcnow
from .records import EngageUser, RecordRef


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: strictly older than this time and id."""

    occurred_at: datetime
    id: int

    def __str__(self) -> str:
        micros = int(self.occurred_at.timestamp() * 1_000_000)
        return f"{micros}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Read a cursor written by :meth:`__str__`.

        :raises ValueError: when ``text`` is not such a cursor.
        """
        micros, sep, ident = text.partition(".")
        moment, row = parse_id(micros), parse_id(ident)
        if not sep or moment is None or row is None:
            raise ValueError(f"not a timeline cursor: {text!r}")
        try:
            when = datetime.fromtimestamp(moment / 1_000_000, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"not a timeline cursor: {text!r}") from None
        return cls(when, row)


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """One page of a timeline and the cursor of the next page (``None`` on the last)."""

    activities: list[Activity]
    next_cursor: Cursor | None


def timeline_page(
    session: Session,
    user: EngageUser,
    ref: RecordRef,
    *,
    before: Cursor | None = None,
    size: int = 20,
) -> TimelinePage:
    """The activities on ``ref``'s timeline that ``user`` may see, newest first."""
    query = (
        sa.select(Activity)
        .where(
            Activity.record_type == ref.type,
            Activity.record_id == ref.id,
            owned_by_visible(user, Activity.owner_id, Activity.owner_team),
        )
        .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        .limit(size + 1)
        .options(
            selectinload(Activity.email).selectinload(Email.parties),
            selectinload(Activity.event).selectinload(TrackingEvent.party),
        )
    )
    if before is not None:
        query = query.where(
            sa.or_(
                Activity.occurred_at < before.occurred_at,
                sa.and_(Activity.occurred_at == before.occurred_at, Activity.id < before.id),
            )
        )
    rows = list(session.scalars(query))
    more = len(rows) > size
    rows = rows[:size]
    cursor = Cursor(rows[-1].occurred_at, rows[-1].id) if more and rows else None
    return TimelinePage(rows, cursor)


def move_email_activities(session: Session, email: Email) -> None:
    """Move the email's timeline entries to its latest time, for a change of status alone.

    Its records cannot change while it is scheduled or sending (both go through
    :func:`sync_email_activities` on the way there), so one UPDATE does it. The caller commits.
    """
    activities = cast(sa.Table, Activity.__table__)
    session.connection().execute(
        sa.update(activities)
        .where(activities.c.email_id == email.id)
        .values(occurred_at=email.sent_at or email.scheduled_at or email.updated_at or utcnow())
    )


#: Delivery states in which an email's entry changes by itself.
IN_FLIGHT = frozenset({"scheduled", "sending", "retrying"})


def can_change(activity: Activity, *, now: datetime, live_days: float) -> bool:
    """Whether ``activity``'s entry can still change without the rep doing anything.

    An email on its way changes (its delivery status); a followed email that went out in the
    last ``live_days`` days changes as recipients open, click, reply and open its files. Older
    ones, unfollowed ones, drafts, replies and phone calls stay as they are (until the rep acts,
    which redraws the timeline anyway).
    """
    email = activity.email
    if email is None:
        return False
    summary = email.delivery_summary
    if summary in IN_FLIGHT:
        return True
    if not email.followed or summary == "draft" or email.sent_at is None:
        return False
    return now - email.sent_at < timedelta(days=live_days)


def live_version(activities: list[Activity]) -> str:
    """A short digest of what the entries of ``activities`` show that can change by itself."""
    parts: list[str] = []
    for activity in activities:
        parts.append(str(activity.id))
        email = activity.email
        if email is None:
            continue
        parts.append(email.delivery_summary)
        for party in email.recipients:
            replied = party.replied_at.isoformat() if party.replied_at else ""
            parts.append(
                f"{party.id}:{party.delivery_state.value}:{party.opens}:{party.clicks}:"
                f"{party.attachment_opens}:{replied}"
            )
    return hashlib.blake2s("|".join(parts).encode(), digest_size=8).hexdigest()


def records_of(email: Email) -> set[RecordRef]:
    """The records on whose timelines ``email`` belongs (S1, S2)."""
    refs = {p.record for p in email.parties if p.role is not PartyRole.BCC and p.record}
    if email.regarding is not None:
        refs.add(email.regarding)
    return {r for r in refs if r is not None}


def sync_email_activities(session: Session, email: Email) -> None:
    """Make the email's timeline entries match its regarding record and parties.

    Call after creating or changing an email (its parties, regarding record or status); entries
    for records it no longer belongs to are removed, new ones added, and all move to the
    email's latest time so the timeline stays newest first. The caller commits.
    """
    if email.id is None:
        session.flush()
    wanted = records_of(email)
    existing = {
        a.record: a
        for a in session.scalars(sa.select(Activity).where(Activity.email_id == email.id))
    }
    when = email.sent_at or email.scheduled_at or email.updated_at or utcnow()
    for ref, activity in existing.items():
        if ref not in wanted:
            session.delete(activity)
        else:
            activity.occurred_at = when
            activity.title = email.subject
    for ref in wanted - existing.keys():
        session.add(
            Activity(
                record_type=ref.type,
                record_id=ref.id,
                kind=ActivityKind.EMAIL,
                occurred_at=when,
                owner_id=email.owner_id,
                owner_team=email.owner_team,
                email_id=email.id,
                title=email.subject,
            )
        )
