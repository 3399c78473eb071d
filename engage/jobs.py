"""engage's background jobs.

Jobs are plain functions taking ids, never ORM objects or request state (DESIGN "Data and
time"), and each is safe to run twice. They run inside the host app's context (see
:mod:`engage.worker`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from .extension import current_engage
from .models import Email, EmailStatus, utcnow

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

    now = utcnow()
    stale = now - STALE_AFTER
    session = current_engage.db.session
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
    when = now.isoformat()
    current_engage.redis.set(SWEEP_HEARTBEAT_KEY, when)
    return when


def last_sweep() -> datetime | None:
    """When the periodic sweep last ran, or ``None`` when it never did (or Redis forgot)."""
    raw = current_engage.redis.get(SWEEP_HEARTBEAT_KEY)
    return datetime.fromisoformat(raw.decode()) if raw else None
