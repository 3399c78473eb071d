"""Putting engage's background jobs on the RQ queue, and what the queue's health looks like.

The jobs themselves are the functions of :mod:`engage.jobs`, which builds on the domain. The
domain queues them by their dotted path (a worker imports a job's function by name when it runs
it), so nothing below :mod:`engage.jobs` imports it and the arrows keep pointing down. Each
job's time limit and result lifetime are in its :class:`JobSpec` below, and only here.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from rq.job import Job

from .context import current_engage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One of engage's jobs: the function in :mod:`engage.jobs` and its limits."""

    #: The function's name in :mod:`engage.jobs`.
    name: str
    #: Seconds a run may take before RQ stops it.
    timeout: int
    #: Seconds RQ keeps the job's result (``None``: RQ's default).
    result_ttl: int | None = None

    @property
    def path(self) -> str:
        return f"engage.jobs.{self.name}"

    def options(self, job_id: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {"job_timeout": self.timeout}
        if self.result_ttl is not None:
            options["result_ttl"] = self.result_ttl
        if job_id is not None:
            options["job_id"] = job_id
        return options


#: Sends the copies of an email not yet accepted by the relay.
DELIVER = JobSpec("deliver", timeout=600)
#: Sends a scheduled email at its time.
SEND_SCHEDULED = JobSpec("send_scheduled", timeout=600, result_ttl=600)
#: Fires (or settles) a follow-up reminder at its time.
FIRE_REMINDER = JobSpec("fire_reminder", timeout=300, result_ttl=600)
#: Geocodes a record's address to its time zone.
LOOKUP_TIMEZONE = JobSpec("lookup_timezone", timeout=120, result_ttl=300)
#: Stores the tracking events waiting in Redis.
PERSIST_EVENTS = JobSpec("persist_events", timeout=600, result_ttl=60)
#: Counts a won opportunity for the templates of its emails.
OPPORTUNITY_WON = JobSpec("opportunity_won", timeout=180)
#: Does the due steps of a batch of sequence enrolments (S46–S48).
ADVANCE_SEQUENCES = JobSpec("advance_sequences", timeout=600, result_ttl=600)
#: The periodic sweep (``rq cron``).
SWEEP = JobSpec("sweep", timeout=600)
#: Reads the reply mailbox (``rq cron``).
POLL_IMAP = JobSpec("poll_imap", timeout=600)

#: Every job, by name.
JOBS = {
    spec.name: spec
    for spec in (
        DELIVER,
        SEND_SCHEDULED,
        FIRE_REMINDER,
        LOOKUP_TIMEZONE,
        PERSIST_EVENTS,
        OPPORTUNITY_WON,
        ADVANCE_SEQUENCES,
        SWEEP,
        POLL_IMAP,
    )
}


def enqueue(spec: JobSpec, *args: Any, job_id: str | None = None) -> Job | None:
    """Queue ``spec``'s job with ``args`` (ids and plain values only) to run now.

    Returns ``None`` when Redis cannot be reached: the database holds what is due, and the
    periodic sweep queues it once Redis is back (DESIGN "Data and time"), so a caller that has
    committed its work goes on; it may tell the user that the work waits for the queue.
    """
    try:
        return current_engage.queue.enqueue(spec.path, *args, **spec.options(job_id))
    except RedisError as exc:
        _queue_down(spec, exc)
        return None


def enqueue_at(when: datetime, spec: JobSpec, *args: Any, job_id: str | None = None) -> Job | None:
    """Queue ``spec``'s job to run at ``when`` (RQ's scheduler is the clock); ``None`` when
    Redis cannot be reached (see :func:`enqueue`)."""
    try:
        return current_engage.queue.enqueue_at(when, spec.path, *args, **spec.options(job_id))
    except RedisError as exc:
        _queue_down(spec, exc)
        return None


def enqueue_in(delay: timedelta, spec: JobSpec, *args: Any) -> Job | None:
    """Queue ``spec``'s job to run after ``delay``; ``None`` when Redis cannot be reached."""
    try:
        return current_engage.queue.enqueue_in(delay, spec.path, *args, **spec.options(None))
    except RedisError as exc:
        _queue_down(spec, exc)
        return None


def _queue_down(spec: JobSpec, exc: RedisError) -> None:
    logger.warning("engage: could not queue %s, the sweep will (%s)", spec.path, exc)


def cancel(job_id: str) -> None:
    """Best effort: take a queued or scheduled job off the queue.

    The jobs check the database when they run, so a job that is not cancelled (Redis is down,
    the job already started) finds its row changed and does nothing.
    """
    with contextlib.suppress(Exception):
        Job.fetch(job_id, connection=current_engage.redis).cancel()


#: Redis key holding the time of the last periodic sweep, shown to admins.
SWEEP_HEARTBEAT_KEY = "engage:sweep:last"


def note_sweep(when: datetime) -> None:
    """Record that the periodic sweep ran at ``when``."""
    current_engage.redis.set(SWEEP_HEARTBEAT_KEY, when.isoformat())


def last_sweep() -> datetime | None:
    """When the periodic sweep last ran, or ``None`` when it never did (or Redis forgot)."""
    raw = current_engage.redis.get(SWEEP_HEARTBEAT_KEY)
    if not raw:
        return None
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)


def worker_health() -> dict[str, Any]:
    """What an admin needs to know about the background side: workers, waiting jobs, the sweep.

    Never raises for an unreachable Redis: ``{"ok": False, "error": …}`` says what is wrong.
    """
    from redis.exceptions import RedisError
    from rq import Worker

    try:
        queue = current_engage.queue
        return {
            "ok": True,
            "queue": queue.name,
            "workers": Worker.count(queue=queue),
            "waiting": len(queue),
            "last_sweep": last_sweep(),
        }
    except RedisError as exc:
        return {"ok": False, "error": str(exc)}
