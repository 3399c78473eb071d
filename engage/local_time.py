"""The times a user types and reads, in their own zone: rules with no app behind them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .i18n import gettext as _
from .records import EngageUser

#: How far ahead a rep may send, remind or snooze: far enough for any plan, near enough that no
#: date arithmetic downstream (working days, holidays, retries) runs off the end of the calendar.
HORIZON = timedelta(days=3653)


def valid_zone(name: str | None) -> str | None:
    """``name`` when it is a time zone this machine knows (``Europe/Berlin``), else ``None``."""
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def sender_zone(user: EngageUser, browser_zone: str | None) -> str:
    """The zone the sender's times are shown in: their profile's, else their browser's, else UTC."""
    return valid_zone(user.timezone) or valid_zone(browser_zone) or "UTC"


def parse_local(value: str, zone: str) -> datetime:
    """A ``datetime-local`` value (``2026-11-27T08:00``) in ``zone``, as UTC.

    :raises ValueError: for anything else.
    """
    naive = datetime.fromisoformat(value.strip())
    if naive.tzinfo is not None:
        raise ValueError("expected a local time")
    try:
        return naive.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    except OverflowError:  # the first or last hours of the calendar, shifted past its end
        raise ValueError("a time at the edge of the calendar") from None


def read_future_time(value: str, zone: str, *, now: datetime) -> datetime:
    """A time the user typed (``datetime-local``, in ``zone``) that lies ahead, within the
    :data:`HORIZON`; as UTC.

    :raises ValueError: with a sentence for the user.
    """
    try:
        when = parse_local(value, zone)
    except ValueError:
        raise ValueError(_("Enter a date and a time, like 2026-11-27 08:00.")) from None
    if when <= now:
        raise ValueError(_("That time has passed; choose a time in the future."))
    if when > now + HORIZON:
        raise ValueError(_("That is too far ahead: choose a time within the next ten years."))
    return when


def parse_carried(value: str, *, now: datetime) -> datetime | None:
    """A time carried in a hidden form field (ISO 8601 with its offset), as UTC; ``None`` when
    it is not one, or lies beyond the :data:`HORIZON` (a hand-made value)."""
    try:
        when = datetime.fromisoformat(value.strip())
        if when.tzinfo is None:
            return None
        when = when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return when if when <= now + HORIZON else None
