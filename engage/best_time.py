"""The recommended delivery time of a message (SPEC S20, S24), as plain functions over plain values.

The recommendation is made in the recipient's time zone:

- A message with anything but exactly one recipient gets no recommendation, nor does a
  recipient without an address or whose time zone is unknown.
- When it is working time where the recipient is (inside the working hours, on a working day
  that is not a public holiday of their country), the recommendation is *now*.
- Otherwise it is the next working time: the start of the working day later today, or the start
  of the next working day, skipping weekends and public holidays.
- A recipient with enough past opens has a usual hour (their most common one); when that hour
  lies inside the working hours, the recommendation is its next occurrence on a working day.

Every recommendation carries a sentence for the UI naming the moment in the recipient's zone
(with the zone's city) and the same instant in the sender's zone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from .geonames import country_code

# A recipient whose working days are all holidays for this long has a broken calendar; the
# search for the next working day stops there rather than looping forever.
_SEARCH_DAYS = 800


def _identity(message: str) -> str:
    return message


class Reason(StrEnum):
    """Why a recommendation is what it is (machine-readable, compares equal to its value)."""

    NOW_IN_HOURS = "now_in_hours"
    NEXT_WORKING_TIME = "next_best_time"
    USUAL_OPEN_HOUR = "usual_open_hour"
    SEVERAL_RECIPIENTS = "several_recipients"
    NO_ADDRESS = "no_address"
    NO_TIMEZONE = "no_timezone"


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The organisation's working day: from ``start`` (inclusive) to ``end`` (exclusive), local
    to the recipient, on the ``weekdays`` listed (Monday is 0).

    A working day must not cross midnight: ``start`` comes before ``end``.
    """

    start: time = time(8, 0)
    end: time = time(17, 0)
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("working hours are wall-clock times without a time zone")
        if not self.start < self.end:
            raise ValueError(f"working hours must start before they end ({self.start}-{self.end})")
        if not self.weekdays:
            raise ValueError("working hours need at least one weekday")
        if not self.weekdays <= frozenset(range(7)):
            raise ValueError(f"weekdays are 0 (Monday) to 6 (Sunday), not {sorted(self.weekdays)}")

    def contains(self, moment: time) -> bool:
        """Whether a wall-clock time falls inside the working hours."""
        return self.start <= moment < self.end


DEFAULT_WORKING_HOURS = WorkingHours()


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A recommended delivery time, or the reason there is none.

    ``at`` is in UTC; ``recipient_local`` and ``sender_local`` are the same instant in each
    party's zone. All three are ``None`` when there is no recommendation.
    """

    at: datetime | None
    reason: Reason
    recipient_local: datetime | None
    sender_local: datetime | None
    explanation: str

    @property
    def recommended(self) -> bool:
        """Whether there is a time to pre-fill the dialog with (S22)."""
        return self.at is not None


def public_holidays(country: str | None, year: int) -> frozenset[date]:
    """The public holidays of a country in one year.

    The country is written as an address has it: an ISO code (``DE``, ``DEU``, any case) or a
    name (``Germany``, ``Deutschland``), resolved by :func:`engage.geonames.country_code` like
    the time zone lookup does. An unknown or missing country has none. Calendars are cached
    per country and year.
    """
    code = country_code(country)
    if code is None:
        return frozenset()
    return _holiday_calendar(code, year)


@lru_cache(maxsize=512)
def _holiday_calendar(country: str, year: int) -> frozenset[date]:
    try:
        calendar = holidays.country_holidays(country, years=year)
    except NotImplementedError:
        # The holidays package has no calendar for this code: treat every day as ordinary.
        return frozenset()
    return frozenset(day for day in calendar if day.year == year)


def is_working_day(day: date, *, country: str | None, hours: WorkingHours) -> bool:
    """Whether a local date is one of the working weekdays and no public holiday of ``country``."""
    return day.weekday() in hours.weekdays and day not in public_holidays(country, day.year)


def usual_open_hour(open_hours: Sequence[int], *, min_opens: int) -> int | None:
    """The recipient's most common open hour (the earliest on a tie), or ``None`` with fewer
    than ``min_opens`` opens.

    :param open_hours: one local hour (0–23) per past human open.
    """
    if any(not 0 <= hour <= 23 for hour in open_hours):
        raise ValueError(f"open hours are 0 to 23: {sorted(set(open_hours))}")
    if not open_hours or len(open_hours) < min_opens:
        return None
    counts = Counter(open_hours)
    return min(counts, key=lambda hour: (-counts[hour], hour))


def local_hour_histogram(open_times: Iterable[datetime], zone: str) -> list[int]:
    """Turn stored open times into the recipient's local hours, one per open, in order.

    The result is what :func:`recommend` takes as ``open_hours``. Each hour is computed at its
    own instant, so opens either side of a daylight-saving change land on the right local hour.
    A naive datetime is taken to be UTC (how engage stores times).
    """
    tz = ZoneInfo(zone)
    return [
        (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(tz).hour
        for moment in open_times
    ]


def working_hours_from_config(config: Mapping[str, Any]) -> WorkingHours:
    """Build the working hours from ``ENGAGE_WORKING_HOURS_START``, ``ENGAGE_WORKING_HOURS_END``
    (``"HH:MM"`` strings or :class:`~datetime.time`) and ``ENGAGE_WORKING_DAYS``, falling back
    to 08:00–17:00, Monday to Friday for a key that is missing.
    """
    return WorkingHours(
        start=_as_time(config.get("ENGAGE_WORKING_HOURS_START", DEFAULT_WORKING_HOURS.start)),
        end=_as_time(config.get("ENGAGE_WORKING_HOURS_END", DEFAULT_WORKING_HOURS.end)),
        weekdays=frozenset(
            int(day) for day in config.get("ENGAGE_WORKING_DAYS", DEFAULT_WORKING_HOURS.weekdays)
        ),
    )


def _as_time(value: time | str) -> time:
    return value if isinstance(value, time) else time.fromisoformat(value)


def city_of(zone: str) -> str:
    """The name a person knows a zone by: the last part of its IANA name, underscores as
    spaces (``America/Argentina/Buenos_Aires`` is ``Buenos Aires``).
    """
    return zone.rsplit("/", 1)[-1].replace("_", " ")


def recommend(
    *,
    now: datetime,
    sender_zone: str,
    recipient_zone: str | None,
    recipient_count: int,
    has_address: bool = True,
    country: str | None = None,
    hours: WorkingHours = DEFAULT_WORKING_HOURS,
    open_hours: Sequence[int] = (),
    min_opens: int = 5,
    gettext: Callable[[str], str] = _identity,
) -> Recommendation:
    """Recommend when to deliver a message to its one recipient (S20, S24).

    :param now: the current instant; must carry a time zone (any).
    :param sender_zone: the sender's IANA zone, for the explanation and ``sender_local``.
    :param recipient_zone: the recipient's IANA zone from geocoding their address (S21);
        ``None`` (or a name the zone database does not know) means it is unknown.
    :param recipient_count: every To, Cc and Bcc recipient; anything but one means no
        recommendation.
    :param has_address: whether the recipient has a physical address in the CRM. ``False``
        gives the reason ``no_address``; an address whose zone is not (yet) known gives
        ``no_timezone``.
    :param country: the recipient's country (ISO 3166-1 alpha-2); its public holidays are not
        working days. ``None`` or a code without a calendar means no holidays.
    :param hours: the organisation's working hours, applied in the recipient's zone.
    :param open_hours: the recipient's past human opens as local hours (0–23), see
        :func:`local_hour_histogram`.
    :param min_opens: how many opens make a usual hour worth following.
    :param gettext: translates a message id; the ``%(name)s`` placeholders are filled in after
        translation, so engage's own ``gettext`` (called without variables) fits.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must carry a time zone")
    if recipient_count != 1:
        return _none(Reason.SEVERAL_RECIPIENTS, gettext)
    if not has_address:
        return _none(Reason.NO_ADDRESS, gettext)
    recipient_tz = _zone_or_none(recipient_zone)
    if recipient_tz is None or recipient_zone is None:
        return _none(Reason.NO_TIMEZONE, gettext)
    sender_tz = ZoneInfo(sender_zone)

    now_utc = now.astimezone(UTC)
    local_now = now_utc.astimezone(recipient_tz)
    working_now = hours.contains(local_now.time()) and is_working_day(
        local_now.date(), country=country, hours=hours
    )

    usual = usual_open_hour(open_hours, min_opens=min_opens)
    if usual is not None and hours.contains(time(usual)):
        if working_now and local_now.hour == usual:
            at, reason = now_utc, Reason.USUAL_OPEN_HOUR
        else:
            at = _next_working(local_now, time(usual), country=country, hours=hours)
            reason = Reason.USUAL_OPEN_HOUR
    elif working_now:
        at, reason = now_utc, Reason.NOW_IN_HOURS
    else:
        at = _next_working(local_now, hours.start, country=country, hours=hours)
        reason = Reason.NEXT_WORKING_TIME

    recipient_local = at.astimezone(recipient_tz)
    sender_local = at.astimezone(sender_tz)
    return Recommendation(
        at=at,
        reason=reason,
        recipient_local=recipient_local,
        sender_local=sender_local,
        explanation=_explain(
            reason,
            is_now=at == now_utc,
            recipient_local=recipient_local,
            sender_local=sender_local,
            city=city_of(recipient_zone),
            gettext=gettext,
        ),
    )


def _zone_or_none(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _next_working(
    local_now: datetime, at: time, *, country: str | None, hours: WorkingHours
) -> datetime:
    """The first moment at wall-clock ``at`` on a working day that is not before ``local_now``,
    in UTC.
    """
    now_utc = local_now.astimezone(UTC)
    day = local_now.date()
    for _ in range(_SEARCH_DAYS):
        if is_working_day(day, country=country, hours=hours):
            # Compare in UTC: aware datetimes sharing a tzinfo compare by wall clock alone.
            candidate = datetime.combine(day, at, tzinfo=local_now.tzinfo).astimezone(UTC)
            if candidate >= now_utc:
                return candidate
        day += timedelta(days=1)
    raise ValueError(f"no working day within {_SEARCH_DAYS} days of {local_now.date()}")


def _none(reason: Reason, gettext: Callable[[str], str]) -> Recommendation:
    if reason is Reason.SEVERAL_RECIPIENTS:
        explanation = gettext("No recommendation: the email has several recipients")
    elif reason is Reason.NO_ADDRESS:
        explanation = gettext("No recommendation: the recipient has no address")
    else:
        explanation = gettext("No recommendation: the recipient's time zone is unknown")
    return Recommendation(None, reason, None, None, explanation)


def _explain(
    reason: Reason,
    *,
    is_now: bool,
    recipient_local: datetime,
    sender_local: datetime,
    city: str,
    gettext: Callable[[str], str],
) -> str:
    # Whole sentences, one per case, so a translator can reorder every part of them.
    if reason is Reason.NOW_IN_HOURS:
        template = gettext(
            "Now, %(weekday)s %(time)s in %(city)s (your %(sender_weekday)s %(sender_time)s):"
            " within the recipient's working day"
        )
    elif reason is Reason.USUAL_OPEN_HOUR and is_now:
        template = gettext(
            "Now, %(weekday)s %(time)s in %(city)s (your %(sender_weekday)s %(sender_time)s):"
            " when they usually open mail"
        )
    elif reason is Reason.USUAL_OPEN_HOUR:
        template = gettext(
            "%(weekday)s %(time)s in %(city)s (your %(sender_weekday)s %(sender_time)s):"
            " when they usually open mail"
        )
    else:
        template = gettext(
            "%(weekday)s %(time)s in %(city)s (your %(sender_weekday)s %(sender_time)s):"
            " outside the recipient's working day"
        )
    weekdays = (
        gettext("Mon"),
        gettext("Tue"),
        gettext("Wed"),
        gettext("Thu"),
        gettext("Fri"),
        gettext("Sat"),
        gettext("Sun"),
    )
    return template % {
        "weekday": weekdays[recipient_local.weekday()],
        "time": f"{recipient_local:%H:%M}",
        "city": city,
        "sender_weekday": weekdays[sender_local.weekday()],
        "sender_time": f"{sender_local:%H:%M}",
    }


# -- several recipients (SPEC S40) -----------------------------------------------------------

#: How many of the organisation's working days ahead a time inside every recipient's working
#: day is looked for, before the time inside the most recipients' is taken instead.
GROUP_SEARCH_WORKING_DAYS = 5


class GroupReason(StrEnum):
    """How a time for several recipients was chosen."""

    EVERY_RECIPIENT = "every_recipient"
    MOST_RECIPIENTS = "most_recipients"
    NO_ZONE_KNOWN = "no_zone_known"


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient as the search for a common time sees them (plain values).

    :param zone: their IANA zone; ``None`` when unknown (no address, or not geocoded): they
        are listed as unknown and do not count.
    :param country: ISO 3166-1 alpha-2, for public holidays.
    :param open_hours: their past human opens as local hours (S24).
    :param absent_until: when an out-of-office reply says they are back (S42): no time before
        it is inside their working day.
    """

    address: str
    name: str = ""
    zone: str | None = None
    country: str | None = None
    open_hours: Sequence[int] = ()
    absent_until: datetime | None = None

    @property
    def label(self) -> str:
        """The name, else the address."""
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class RecipientAt:
    """A recipient at the proposed moment: their local time, and whether they are working."""

    recipient: Recipient
    local: datetime | None
    working: bool | None
    #: Their local zone's city, for the dialog (``None`` when unknown).
    city: str | None = None


@dataclass(frozen=True, slots=True)
class GroupRecommendation:
    """The time proposed for several recipients, and how it falls for each of them.

    ``at`` is in UTC, ``None`` when no recipient's zone is known. ``covered`` recipients of the
    ``known`` ones are inside their working day then; ``recipients`` lists everyone in the
    order given, the unknown ones with ``local`` and ``working`` set to ``None``.
    """

    at: datetime | None
    reason: GroupReason
    covered: int
    known: int
    recipients: tuple[RecipientAt, ...]
    sender_local: datetime | None

    @property
    def recommended(self) -> bool:
        """Whether there is a time to pre-fill the dialog with."""
        return self.at is not None

    @property
    def unknown(self) -> tuple[Recipient, ...]:
        """The recipients whose zone is not known, who did not count."""
        return tuple(r.recipient for r in self.recipients if r.local is None)


def working_intervals(
    recipient: Recipient, *, start: datetime, end: datetime, hours: WorkingHours
) -> list[tuple[datetime, datetime]]:
    """A recipient's working time between ``start`` and ``end`` (UTC), as UTC intervals.

    Each working day (their weekdays, not a public holiday of their country) gives one
    interval from the working day's start to its end in their zone, computed per day so that
    daylight-saving changes move it; nothing before ``absent_until`` counts.
    """
    tz = _zone_or_none(recipient.zone)
    if tz is None:
        return []
    begin = max(start, recipient.absent_until or start)
    day = begin.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    intervals = []
    while day <= last:
        if is_working_day(day, country=recipient.country, hours=hours):
            opens = datetime.combine(day, hours.start, tzinfo=tz).astimezone(UTC)
            closes = datetime.combine(day, hours.end, tzinfo=tz).astimezone(UTC)
            opens, closes = max(opens, begin), min(closes, end)
            if opens < closes:
                intervals.append((opens, closes))
        day += timedelta(days=1)
    return intervals


def _horizon(now: datetime, hours: WorkingHours, working_days: int) -> datetime:
    # The end of the organisation's n-th working weekday from today, plus a day for the zones
    # furthest west: the window in which everyone's shared time is looked for.
    day, counted = now.astimezone(UTC).date(), 0
    while True:
        if day.weekday() in hours.weekdays:
            counted += 1
            if counted >= working_days:
                break
        day += timedelta(days=1)
    return datetime.combine(day + timedelta(days=2), time(0), tzinfo=UTC)


def is_working_at(recipient: Recipient, moment: datetime, hours: WorkingHours) -> bool | None:
    """Whether ``moment`` falls inside the recipient's working day; ``None`` without a zone."""
    tz = _zone_or_none(recipient.zone)
    if tz is None:
        return None
    if recipient.absent_until is not None and moment < recipient.absent_until:
        return False
    local = moment.astimezone(tz)
    return hours.contains(local.time()) and is_working_day(
        local.date(), country=recipient.country, hours=hours
    )


def recommend_for_group(
    recipients: Sequence[Recipient],
    *,
    now: datetime,
    sender_zone: str,
    hours: WorkingHours = DEFAULT_WORKING_HOURS,
    min_opens: int = 5,
    working_days: int = GROUP_SEARCH_WORKING_DAYS,
) -> GroupRecommendation:
    """One best time for several recipients (S40), across their zones, hours and holidays.

    The earliest moment inside every known recipient's working day within ``working_days`` of
    the organisation's working days; failing that, the earliest moment inside the most
    recipients' working days. Within the chosen stretch of time, the moment that is the usual
    open hour (S24) of the most recipients is preferred, if any has one. Recipients without a
    zone are listed as unknown and block nobody. A recipient away on an out-of-office reply
    (S42) has no working time before their return; when all are away, the working days are
    counted from the first return.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must carry a time zone")
    now = now.astimezone(UTC)
    known = [r for r in recipients if _zone_or_none(r.zone) is not None]
    if not known:
        return _group_result(None, GroupReason.NO_ZONE_KNOWN, recipients, sender_zone, hours, 0)
    # While every one of them is away (S42), the search starts when the first is back.
    start = max(now, min(r.absent_until or now for r in known))
    end = _horizon(start, hours, working_days)
    changes: list[tuple[datetime, int]] = []
    for recipient in known:
        for opens, closes in working_intervals(recipient, start=start, end=end, hours=hours):
            changes += [(opens, 1), (closes, -1)]
    # Ends before starts at the same instant: the intervals are half-open.
    changes.sort(key=lambda change: (change[0], change[1]))
    best: tuple[int, datetime, datetime] | None = None  # (count, from, to)
    count = 0
    for index, (moment, delta) in enumerate(changes):
        count += delta
        following = changes[index + 1][0] if index + 1 < len(changes) else None
        if following is None or following == moment or count == 0:
            continue
        if best is None or count > best[0]:
            best = (count, moment, following)
            if count == len(known):
                break
    if best is None:
        return _group_result(None, GroupReason.MOST_RECIPIENTS, recipients, sender_zone, hours, 0)
    covered, stretch_from, stretch_to = best
    at = _usual_moment(known, stretch_from, stretch_to, hours=hours, min_opens=min_opens)
    reason = GroupReason.EVERY_RECIPIENT if covered == len(known) else GroupReason.MOST_RECIPIENTS
    return _group_result(at, reason, recipients, sender_zone, hours, covered)


def _usual_moment(
    known: Sequence[Recipient],
    stretch_from: datetime,
    stretch_to: datetime,
    *,
    hours: WorkingHours,
    min_opens: int,
) -> datetime:
    # Every whole hour inside the stretch that is someone's usual open hour is a candidate;
    # the one most recipients usually open mail at wins, the earliest on a tie.
    best_at, best_votes = stretch_from, 0
    usual = {}
    for recipient in known:
        hour = usual_open_hour(recipient.open_hours, min_opens=min_opens)
        if hour is not None and hours.contains(time(hour)):
            usual[recipient.address] = (ZoneInfo(recipient.zone or "UTC"), hour)
    if not usual:
        return stretch_from
    candidate = stretch_from.replace(minute=0, second=0, microsecond=0)
    if candidate < stretch_from:
        candidate += timedelta(hours=1)
    # Whole UTC hours are whole local hours in every zone with a whole-hour offset; a zone
    # offset by a half hour simply gets no vote from this grid.
    while candidate < stretch_to:
        votes = sum(1 for tz, hour in usual.values() if candidate.astimezone(tz).hour == hour)
        if votes > best_votes:
            best_at, best_votes = candidate, votes
        candidate += timedelta(hours=1)
    return best_at


def _group_result(
    at: datetime | None,
    reason: GroupReason,
    recipients: Sequence[Recipient],
    sender_zone: str,
    hours: WorkingHours,
    covered: int,
) -> GroupRecommendation:
    rows = []
    for recipient in recipients:
        tz = _zone_or_none(recipient.zone)
        if tz is None or at is None:
            rows.append(RecipientAt(recipient, None, None))
            continue
        rows.append(
            RecipientAt(
                recipient,
                at.astimezone(tz),
                is_working_at(recipient, at, hours),
                city_of(recipient.zone or ""),
            )
        )
    known = sum(1 for r in recipients if _zone_or_none(r.zone) is not None)
    return GroupRecommendation(
        at=at,
        reason=reason,
        covered=covered,
        known=known,
        recipients=tuple(rows),
        sender_local=at.astimezone(ZoneInfo(sender_zone)) if at is not None else None,
    )
