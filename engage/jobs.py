"""engage's background jobs.

Jobs are plain functions taking ids, never ORM objects or request state (DESIGN "Data and
time"), and each is safe to run twice. They run inside the host app's context (see
:mod:`engage.worker`).
"""

from __future__ import annotations

from datetime import datetime

from .extension import current_engage
from .models import utcnow

#: Redis key holding the time of the last periodic sweep, shown to admins.
SWEEP_HEARTBEAT_KEY = "engage:sweep:last"


def sweep() -> str:
    """The periodic sweep run by ``rq cron`` (see :mod:`engage.cron`).

    It records that it ran, so the organisation settings page can tell an admin whether the
    cron scheduler and a worker are alive. Returns the time it ran, in ISO 8601.
    """
    when = utcnow().isoformat()
    current_engage.redis.set(SWEEP_HEARTBEAT_KEY, when)
    return when


def last_sweep() -> datetime | None:
    """When the periodic sweep last ran, or ``None`` when it never did (or Redis forgot)."""
    raw = current_engage.redis.get(SWEEP_HEARTBEAT_KEY)
    return datetime.fromisoformat(raw.decode()) if raw else None
