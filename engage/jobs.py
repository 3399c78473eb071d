"""Every background job of engage: the functions RQ workers run.

Each job takes ids and plain values, never ORM objects or request state (DESIGN "Data and
time"), is safe to run twice, and is thin: it calls the domain, which checks the database
before doing anything. The jobs run inside the host app's context (see :mod:`engage.worker`).
They are queued through :mod:`engage.queueing`, which names them by path and holds each one's
time limit; ``rq cron`` schedules :func:`sweep` and :func:`poll_imap` (see :mod:`engage.cron`).
"""

from __future__ import annotations

from . import (
    delivery,
    events,
    geocoding,
    queueing,
    reminders,
    replies,
    send_later,
    sequences,
    tracking,
)
from . import template_performance as performance
from .models import utcnow


def deliver(email_id: int) -> str:
    """Send the copies of an email not yet accepted by the relay (see :mod:`engage.delivery`)."""
    return delivery.deliver(email_id)


def send_scheduled(email_id: int, due: str) -> str:
    """Send a scheduled email if it is still due at ``due`` (see :mod:`engage.send_later`)."""
    return send_later.send_scheduled(email_id, due)


def fire_reminder(reminder_id: int, due: str, requeued: bool = False) -> str:
    """Fire or settle a follow-up reminder due at ``due`` (see :mod:`engage.reminders`)."""
    return reminders.fire_reminder(reminder_id, due, requeued)


def lookup_timezone(record_type: str, record_id: str) -> str:
    """Geocode a record's address to its time zone (see :mod:`engage.geocoding`)."""
    return geocoding.lookup_timezone(record_type, record_id)


def persist_events() -> int:
    """Store the tracking events waiting in Redis (see :func:`engage.events.persist_events`)."""
    return events.persist_events()


def opportunity_won(record_type: str, record_id: str) -> int:
    """Count a won opportunity for the templates of its emails (S31)."""
    return performance.opportunity_won(record_type, record_id)


def advance_sequences(enrolment_ids: list[int]) -> int:
    """Do the due steps of these sequence enrolments (see :func:`engage.sequences.advance`)."""
    return sequences.advance(enrolment_ids)


def poll_imap() -> int:
    """Read the reply mailbox, if one is configured (see :func:`engage.replies.poll_imap`)."""
    return replies.poll_imap()


def sweep() -> str:
    """The periodic sweep run by ``rq cron`` (see :mod:`engage.cron`).

    The database is the source of truth and Redis only the conveyor belt (DESIGN "Data and
    time"), so the sweep puts back on the queue whatever is due but may have been lost with
    Redis: emails still sending whose retry is overdue or that were queued long ago, scheduled
    emails and reminders past their time, tracking events waiting without a drain job. It also
    deletes tracking details past their retention, counts won opportunities, and records that
    it ran, so the organisation settings page can tell an admin whether the cron scheduler and
    a worker are alive. Returns the time it ran, in ISO 8601.
    """
    now = utcnow()
    delivery.release_when_the_relay_is_back(now)
    delivery.sweep_sending(now)
    send_later.sweep_scheduled(now)
    reminders.sweep_reminders(now)
    sequences.sweep_sequences(now)
    events.purge_tracking_details(now)
    performance.check_won(now)
    tracking.requeue_waiting_events()
    queueing.note_sweep(now)
    return now.isoformat()
