"""The times a user types and reads, in their own zone: rules with no app behind them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .records import EngageUser


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
    return naive.replace(tzinfo=ZoneInfo(zone)).astimezone(ZoneInfo("UTC"))
