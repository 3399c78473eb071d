"""Recipients' out-of-office absences (SPEC S42): kept from auto-replies, asked for by the rest.

The reply intake (:func:`engage.replies.ingest`) reads a return date in every auto-reply it
matched (:mod:`engage.out_of_office`) and, if there is one, keeps it with
:func:`note_auto_reply`. The rest of engage asks
:func:`absent_until`: the recommended send time (:mod:`engage.send_later`) moves after it, a
reminder due during it says so (:mod:`engage.reminders`), and sequences pause through it.

An absence is kept by address, the thing an auto-reply comes from, so it holds for every email
to that address, whoever sent it. It lasts from the auto-reply until the start of the working
day on the return date in the recipient's zone (UTC midnight when the zone is not known).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .best_time import DEFAULT_WORKING_HOURS, WorkingHours
from .models import Absence, Activity, ActivityKind, Party
from .records import RecordRef


def back_at(day: date, zone: str | None, hours: WorkingHours = DEFAULT_WORKING_HOURS) -> datetime:
    """The moment someone back on ``day`` is back: their working day's start there, in UTC."""
    if not zone:
        return datetime.combine(day, time(0), tzinfo=UTC)
    return datetime.combine(day, hours.start, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def record_absence(
    session: Session,
    *,
    address: str,
    returns_on: date,
    noted_at: datetime,
    zone: str | None = None,
    record: RecordRef | None = None,
    event_id: int | None = None,
    hours: WorkingHours = DEFAULT_WORKING_HOURS,
) -> Absence:
    """Keep that ``address`` is away from ``noted_at`` until ``returns_on``; the caller commits.

    :param zone: the recipient's IANA zone, when known: they are back when their working day
        starts there.
    :param record: the CRM record of the address, for the record's timeline.
    :param event_id: the auto-reply it was read from (one absence per auto-reply).
    """
    row = Absence(
        address=address.strip().lower(),
        record_type=record.type if record else None,
        record_id=record.id if record else None,
        noted_at=noted_at,
        return_date=returns_on,
        until=back_at(returns_on, zone, hours),
        event_id=event_id,
    )
    session.add(row)
    session.flush()
    return row


def absent_until(session: Session, address: str, at: datetime) -> datetime | None:
    """When ``address`` is back, if an auto-reply said they are away at ``at``; else ``None``.

    An absence counts from the auto-reply that stated it; several overlapping ones give the
    latest return.
    """
    return session.scalar(
        sa.select(sa.func.max(Absence.until)).where(
            Absence.address == address.strip().lower(),
            Absence.noted_at <= at,
            Absence.until > at,
        )
    )


def absences_of(session: Session, addresses: list[str], at: datetime) -> dict[str, datetime]:
    """:func:`absent_until` for several addresses at once (lower case keys), the absent ones."""
    wanted = sorted({a.strip().lower() for a in addresses})
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(Absence.address, sa.func.max(Absence.until))
        .where(Absence.address.in_(wanted), Absence.noted_at <= at, Absence.until > at)
        .group_by(Absence.address)
    )
    return {address: until for address, until in rows}


def note_auto_reply(
    session: Session,
    party: Party,
    *,
    event_id: int,
    returns_on: date,
    written_at: datetime,
    zone: str | None = None,
    hours: WorkingHours = DEFAULT_WORKING_HOURS,
) -> Absence | None:
    """Keep the absence an auto-reply from ``party`` states, and show it on a timeline.

    ``returns_on`` is what :func:`engage.out_of_office.return_date` read in it. Nothing is
    kept when the return lies in the past. The absence is shown on the timeline of the
    recipient's record, else of the email's regarding record. The caller commits.
    """
    until = back_at(returns_on, zone, hours)
    if until <= written_at:
        return None
    row = record_absence(
        session,
        address=party.address,
        returns_on=returns_on,
        noted_at=written_at,
        zone=zone,
        record=party.record,
        event_id=event_id,
        hours=hours,
    )
    email = party.email
    ref = party.record or email.regarding
    if ref is not None:
        session.add(
            Activity(
                record_type=ref.type,
                record_id=ref.id,
                kind=ActivityKind.ABSENCE,
                occurred_at=written_at,
                owner_id=email.owner_id,
                owner_team=email.owner_team,
                event_id=event_id,
                # Plain data, shown in the reader's language and zone by the timeline.
                title=party.display,
                notes=row.until.isoformat(),
            )
        )
    return row
