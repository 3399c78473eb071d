"""Scheduled delivery (SPEC S19, S22, S23): a frozen email waits for its time, then goes.

RQ's scheduler is the clock (``enqueue_at``), the database the truth: the job carries the time
it was scheduled for, and does nothing unless the email is still scheduled for exactly that
time. A rescheduled email therefore never goes early through its old job, a deleted one never
goes at all, and the transition to *sending* is one conditional UPDATE, so two jobs (a lost job
requeued by the sweep, say) cannot both send it.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from rq.job import Job

from .delivery import deliver
from .extension import current_engage
from .models import Email, EmailStatus, affected_rows, utcnow
from .timeline import sync_email_activities

#: How late a scheduled email may be before the sweep assumes its job is lost.
SWEEP_GRACE = timedelta(seconds=30)


def _job_id(email: Email) -> str:
    # One job id per email and due time: rescheduling makes a new job, and the old one can be
    # found (and cancelled) by its id.
    stamp = int(email.scheduled_at.timestamp()) if email.scheduled_at else 0
    return f"engage-send-{email.id}-{stamp}"


def schedule_delivery(email: Email) -> None:
    """Put the email's delivery on RQ's scheduler for its ``scheduled_at`` (already committed)."""
    assert email.scheduled_at is not None
    current_engage.queue.enqueue_at(
        email.scheduled_at,
        send_scheduled,
        email.id,
        email.scheduled_at.isoformat(),
        job_id=_job_id(email),
        job_timeout=600,
        result_ttl=600,
    )


def cancel_scheduled_job(email: Email) -> None:
    """Best effort: take the email's current scheduled job off the queue (it would do nothing)."""
    with contextlib.suppress(Exception):
        Job.fetch(_job_id(email), connection=current_engage.redis).cancel()


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
    return _start_sending(email.id, expected=None)


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
        current_engage.queue.enqueue(
            send_scheduled, email.id, email.scheduled_at.isoformat(), job_timeout=600
        )
    return len(overdue)
