"""Send later (SPEC S19–S24): the dialog's recommendation, and scheduled delivery.

The dialog shows times in the sender's own zone (their profile's, else their browser's),
pre-filled with the recommended time when there is one (:mod:`engage.best_time` makes it). The
recipient's zone comes from the geocoding job; while it is being looked up, the dialog says so.

Scheduled delivery: a frozen email waits for its time, then goes. RQ's scheduler is the clock
(``enqueue_at``), the database the truth: the job carries the time it was scheduled for, and
does nothing unless the email is still scheduled for exactly that time. A rescheduled email
therefore never goes early through its old job, a deleted one never goes at all, and the
transition to *sending* is one conditional UPDATE, so two jobs (a lost job requeued by the
sweep, say) cannot both send it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app

from . import queueing
from .absences import absences_of
from .best_time import (
    GroupRecommendation,
    Recommendation,
    local_hour_histogram,
    recommend,
    recommend_for_group,
    working_hours_from_config,
)
from .best_time import Recipient as BestTimeRecipient
from .context import current_engage
from .delivery import cancel_scheduled_job, deliver, enqueue_delivery, schedule_delivery
from .emails import DraftInput, draft_recipients
from .geocoding import timezone_of
from .i18n import gettext as _
from .local_time import sender_zone
from .models import Email, EmailStatus, EventKind, Party, TrackingEvent, affected_rows, utcnow
from .records import EngageUser, RecordRef
from .timeline import sync_email_activities

# -- the dialog --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendLater:
    """What the dialog shows."""

    sender_zone: str
    recommendation: Recommendation | None
    looking_up: bool
    prefill: str  # the datetime-local value, in the sender's zone, or ""
    chosen_local: datetime | None  # the delay already set, in the sender's zone
    no_zone_reason: str = ""
    #: For several recipients, or one who is away (S40, S42): the time for all of them and
    #: how it falls for each; ``recommendation`` is then ``None``.
    group: GroupRecommendation | None = None
    #: The recipients away on an out-of-office reply, with when they are back (S42).
    away: tuple[tuple[str, datetime], ...] = ()


def _open_hours(address: str, zone: str) -> list[int]:
    # The recipient's past human opens, on any email: when they usually read mail (S24).
    times = current_engage.session.scalars(
        sa.select(TrackingEvent.occurred_at)
        .join(Party, Party.id == TrackingEvent.party_id)
        .where(
            sa.func.lower(Party.address) == address.lower(),
            TrackingEvent.kind == EventKind.OPEN,
            TrackingEvent.machine.is_(False),
        )
        .order_by(TrackingEvent.occurred_at.desc())
        .limit(200)
    )
    return local_hour_histogram(list(times), zone)


def _group_member(
    address: str, ref: RecordRef | None, away: dict[str, datetime]
) -> tuple[BestTimeRecipient, bool]:
    """One recipient for the common-time search, and whether their zone is still looked up."""
    record = current_engage.records.get(ref) if ref else None
    back = away.get(address.lower())
    if record is None or record.address is None or record.address.is_empty():
        name = record.name if record is not None else ""
        return BestTimeRecipient(address, name, absent_until=back), False
    row = timezone_of(record.ref)
    if row is None or not row.timezone:
        return BestTimeRecipient(address, record.name, absent_until=back), row is None
    return (
        BestTimeRecipient(
            address,
            record.name,
            row.timezone,
            record.address.country,
            _open_hours(address, row.timezone),
            absent_until=back,
        ),
        False,
    )


def send_later_state(draft: DraftInput, user: EngageUser, browser_zone: str | None) -> SendLater:
    """Work out the dialog: the sender's zone, the recommendation, the pre-filled time."""
    zone = sender_zone(user, browser_zone)
    local = ZoneInfo(zone)
    chosen = draft.send_at.astimezone(local) if draft.send_at else None
    recipients = draft_recipients(draft)
    config = current_app.config
    now = utcnow()
    hours = working_hours_from_config(config)
    base: dict[str, Any] = {
        "now": now,
        "sender_zone": zone,
        "recipient_count": len(recipients),
        "hours": hours,
        "min_opens": int(config["ENGAGE_USUAL_HOUR_MIN_OPENS"]),
        "gettext": _,
    }
    away = absences_of(current_engage.session, [address for address, _ref in recipients], now)
    looking_up, reason = False, ""
    rec: Recommendation | None = None
    group: GroupRecommendation | None = None
    if len(recipients) > 1 or (len(recipients) == 1 and away):
        # Several recipients (S40), or one who is away (S42): the common-time search, which
        # waits for absences and lists each recipient's local time.
        members = [_group_member(address, ref, away) for address, ref in recipients]
        looking_up = any(waiting for _member, waiting in members)
        if not looking_up:
            group = recommend_for_group(
                [member for member, _waiting in members],
                now=now,
                sender_zone=zone,
                hours=hours,
                min_opens=base["min_opens"],
            )
    elif not recipients:
        rec = recommend(recipient_zone=None, **base)
    else:
        address, ref = recipients[0]
        record = current_engage.records.get(ref) if ref else None
        if record is None or record.address is None or record.address.is_empty():
            rec = recommend(recipient_zone=None, has_address=False, **base)
        else:
            row = timezone_of(record.ref)
            if row is None:
                looking_up = True
            elif not row.timezone:
                reason = row.reason
                rec = recommend(recipient_zone=None, **base)
            else:
                rec = recommend(
                    recipient_zone=row.timezone,
                    country=record.address.country,
                    open_hours=_open_hours(address, row.timezone),
                    **base,
                )
    proposed = group.at if group is not None else (rec.at if rec is not None else None)
    if chosen is not None:
        prefill = chosen.strftime("%Y-%m-%dT%H:%M")
    elif proposed is not None:
        prefill = proposed.astimezone(local).strftime("%Y-%m-%dT%H:%M")
    else:
        prefill = ""
    away_list = tuple(
        (address, away[address.lower()].astimezone(local))
        for address, _ref in recipients
        if address.lower() in away
    )
    return SendLater(zone, rec, looking_up, prefill, chosen, reason, group, away_list)


# -- scheduled delivery ------------------------------------------------------------------------


#: How late a scheduled email may be before the sweep assumes its job is lost.
SWEEP_GRACE = timedelta(seconds=30)


def reschedule(email: Email, when: datetime) -> None:
    """Move a scheduled email to another future time; the caller has checked ``when``."""
    if email.status is not EmailStatus.SCHEDULED:
        raise ValueError("only a scheduled email can be rescheduled")
    cancel_scheduled_job(email)
    email.scheduled_at = when
    email.updated_at = utcnow()
    session = current_engage.session
    sync_email_activities(session, email)
    session.commit()
    schedule_delivery(email)


def send_now(email: Email) -> bool:
    """Send a scheduled email at once (*Remove delay*); ``False`` if it is no longer scheduled."""
    cancel_scheduled_job(email)
    if not _start_sending(email.id, expected=None):
        return False
    enqueue_delivery(email)
    return True


def _start_sending(email_id: int, *, expected: datetime | None) -> bool:
    """Move the email from scheduled to sending, once; ``expected`` guards against stale jobs."""
    session = current_engage.session
    now = utcnow()
    condition = [Email.id == email_id, Email.status == EmailStatus.SCHEDULED]
    if expected is not None:
        condition.append(Email.scheduled_at == expected)
    moved = affected_rows(
        session.execute(
            sa.update(Email)
            .where(*condition)
            .values(status=EmailStatus.SENDING, submitted_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if not moved:
        session.rollback()
        return False
    email = session.get_one(Email, email_id)
    session.refresh(email)
    sync_email_activities(session, email)
    session.commit()
    return True


def send_scheduled(email_id: int, due: str) -> str:
    """The job that runs at an email's scheduled time: send it if it is still due then.

    Returns ``sent``/``partly_failed``/… (what delivery did), ``stale`` (rescheduled, sent
    or deleted meanwhile) or ``early`` (the clock ran ahead; the job is put back).
    """
    due_at = datetime.fromisoformat(due)
    email = current_engage.session.get(Email, email_id)
    if email is None or email.status is not EmailStatus.SCHEDULED or email.scheduled_at != due_at:
        return "stale"
    early = (due_at - utcnow()).total_seconds()
    if early > 1:
        schedule_delivery(email)
        return "early"
    if early > 0:
        # RQ's scheduler keeps whole seconds and may hand the job over up to a second early;
        # waiting out the rest keeps the promise that nothing goes before its time.
        time.sleep(early)
    if not _start_sending(email_id, expected=due_at):
        return "stale"
    # Deliver in this same job: the time is due, another trip through the queue only adds lag.
    return deliver(email_id)


def sweep_scheduled(now: datetime | None = None) -> int:
    """Queue the emails whose time has passed by more than a grace period (lost jobs)."""
    cutoff = (now or utcnow()) - SWEEP_GRACE
    overdue = list(
        current_engage.session.scalars(
            sa.select(Email).where(
                Email.status == EmailStatus.SCHEDULED, Email.scheduled_at < cutoff
            )
        )
    )
    for email in overdue:
        if email.scheduled_at is None:  # the query asks for a time; this keeps mypy sure
            continue
        queueing.enqueue(queueing.SEND_SCHEDULED, email.id, email.scheduled_at.isoformat())
    return len(overdue)
