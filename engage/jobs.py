"""engage's background jobs.

Jobs are plain functions taking ids, never ORM objects or request state (DESIGN "Data and
time"), and each is safe to run twice. They run inside the host app's context (see
:mod:`engage.worker`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from . import tracking
from .extension import current_engage
from .models import Activity, Email, EmailStatus, TrackingEvent, affected_rows, utcnow

#: How long a sending email may wait for its job before the sweep assumes Redis lost it.
STALE_AFTER = timedelta(minutes=2)

#: Redis key holding the time of the last periodic sweep, shown to admins.
SWEEP_HEARTBEAT_KEY = "engage:sweep:last"


def sweep() -> str:
    """The periodic sweep run by ``rq cron`` (see :mod:`engage.cron`).

    The database is the source of truth and Redis only the conveyor belt (DESIGN "Data and
    time"), so the sweep puts back on the queue whatever is due but may have been lost with
    Redis: emails still sending whose retry is overdue, or that were queued long ago. The
    delivery job is idempotent, so a job that was not lost after all does no harm.

    It also records that it ran, so the organisation settings page can tell an admin whether
    the cron scheduler and a worker are alive. Returns the time it ran, in ISO 8601.
    """
    from .delivery import enqueue_delivery
    from .reminders import sweep_reminders
    from .scheduling import sweep_scheduled
    from .template_stats import check_won

    now = utcnow()
    stale = now - STALE_AFTER
    session = current_engage.session
    overdue = session.scalars(
        sa.select(Email).where(
            Email.status == EmailStatus.SENDING,
            sa.or_(
                Email.next_attempt_at < stale,
                sa.and_(Email.next_attempt_at.is_(None), Email.updated_at < stale),
            ),
        )
    )
    for email in overdue:
        enqueue_delivery(email)
    sweep_scheduled(now)
    sweep_reminders(now)
    purge_tracking_details(now)
    check_won(now)
    # Events pushed while no drain job was queued (a flushed Redis, a lost job) are picked up.
    if current_engage.redis.llen(tracking.QUEUE_KEY):
        current_engage.queue.enqueue(tracking.persist_events, job_timeout=600, result_ttl=60)
    when = now.isoformat()
    current_engage.redis.set(SWEEP_HEARTBEAT_KEY, when)
    return when


def purge_tracking_details(now: datetime | None = None) -> int:
    """Delete tracking events older than ``ENGAGE_TRACKING_RETENTION_DAYS`` (SPEC S15).

    The recipients' running totals stay; only the details (times, user agents, hashed
    addresses) go. A reply's timeline entry stays too, without its link to the event.
    """
    days = int(current_app.config["ENGAGE_TRACKING_RETENTION_DAYS"])
    cutoff = (now or utcnow()) - timedelta(days=days)
    session = current_engage.session
    session.execute(
        sa.update(Activity)
        .where(
            Activity.event_id.in_(
                sa.select(TrackingEvent.id).where(TrackingEvent.occurred_at < cutoff)
            )
        )
        .values(event_id=None)
    )
    result = session.execute(sa.delete(TrackingEvent).where(TrackingEvent.occurred_at < cutoff))
    session.commit()
    return affected_rows(result)


def last_sweep() -> datetime | None:
    """When the periodic sweep last ran, or ``None`` when it never did (or Redis forgot)."""
    raw = current_engage.redis.get(SWEEP_HEARTBEAT_KEY)
    if not raw:
        return None
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)
