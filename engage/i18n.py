"""engage's own translation domain, stored messages and the times people read (SPEC S45).

All user-facing strings go through these functions, so that a host's Flask-Babel locale
selection applies to engage as well, while engage's catalogues stay in its own ``engage``
domain and never clash with the host's ``messages``.

Text that a worker makes (a card, why a reminder resolved itself, a delivery error) is not
stored in the worker's language: :func:`stored` keeps *what happened* (a message key and its
parameters) and :func:`read` turns it into a sentence in the reader's language when it is
shown. Text stored before that (plain English) is shown as it is.

Every time a person reads goes through :func:`format_local`: the reader's zone, the reader's
language, the date whenever it is not today.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import Domain
from markupsafe import Markup, escape

domain = Domain(
    translation_directories=str(Path(__file__).parent / "translations"), domain="engage"
)

gettext = domain.gettext
ngettext = domain.ngettext
lazy_gettext = domain.lazy_gettext
_ = gettext


def gettext_markup(string: str, **variables: Any) -> Markup:
    """:func:`gettext` for templates: the translation is text (escaped), and so is each value,
    except values that are markup already (a ``<time>`` from ``engage_time``), which stay
    markup. Templates see it as ``_e``."""
    text = escape(domain.get_translations().ugettext(string))
    return text % variables if variables else text


def ngettext_markup(singular: str, plural: str, num: int, **variables: Any) -> Markup:
    """:func:`ngettext` for templates (``ngettext_e``), on the terms of :func:`gettext_markup`."""
    variables.setdefault("num", num)
    return escape(domain.get_translations().ungettext(singular, plural, num)) % variables


#: CLDR patterns for the times engage writes out; weekday and month names follow the language.
#: ``weekday``: "Tue 2026-11-24 09:00"; ``short``: "Tue 09:00"; ``long``: "Tue 24 Nov 2026 09:00".
DATETIME_PATTERNS = {
    "weekday": "EEE yyyy-MM-dd HH:mm",
    "short": "EEE HH:mm",
    "long": "EEE dd MMM yyyy HH:mm",
}


def _locale() -> Any:
    from flask_babel import get_locale

    return get_locale() or "en"


def format_when(moment: datetime, style: str = "weekday") -> str:
    """``moment`` in its own time zone, in the user's language ("Di. 09:00" in German).

    Outside a request (a worker), the app's default locale is used. For times people read on
    engage's pages, prefer :func:`format_local`.
    """
    from babel.dates import format_datetime

    return format_datetime(moment, DATETIME_PATTERNS[style], tzinfo=moment.tzinfo, locale=_locale())


def format_local(
    moment: datetime,
    zone: str | None = None,
    *,
    now: datetime | None = None,
    seconds: bool = False,
) -> str:
    """A time as the reader reads it: in ``zone`` and the reader's language.

    Today's times show the clock only ("08:00"); other days add weekday and date ("Di., 1.
    Dez., 08:00" in German, "Tue, Dec 1, 8:00 AM" in English), and the year when it is not
    this year. Naive datetimes are taken as UTC.

    :param zone: an IANA zone; ``None`` uses the host's Flask-Babel time zone, else UTC.
    :param now: the reader's "now" (for "today"), default the current time.
    :param seconds: show seconds too (delivery retries, the scheduler's last sweep).
    """
    from babel import Locale
    from babel.dates import format_skeleton, format_time

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    tz = ZoneInfo(zone) if zone else _host_zone()
    local = moment.astimezone(tz)
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    locale = Locale.parse(str(_locale()))
    clock = format_time(local, "medium" if seconds else "short", tzinfo=tz, locale=locale)
    if local.date() == today:
        return clock
    skeleton = "MMMEd" if local.year == today.year else "yMMMEd"
    day = format_skeleton(skeleton, local, tzinfo=tz, locale=locale)
    joiner = locale.datetime_formats.get("medium", "{1}, {0}")
    return str(joiner).replace("{1}", day).replace("{0}", clock)


def _host_zone() -> ZoneInfo:
    try:
        from flask_babel import get_timezone

        found = get_timezone()
    except (RuntimeError, KeyError):  # no app context, or a host without Flask-Babel
        found = None
    return ZoneInfo(str(found)) if found is not None else ZoneInfo("UTC")


def locale_tag() -> str:
    """The user's language as a BCP 47 tag (``de-AT``), for ``lang`` attributes and choices."""
    return str(_locale()).replace("_", "-")


def format_size(size: int) -> str:
    """A file size as people read it: ``512 bytes``, ``14 KB``, ``2.5 MB`` (1 KB = 1024 bytes);
    digits in the reader's language (``2,5 MB``)."""
    from babel.numbers import format_decimal

    if size < 1024:
        return ngettext("%(num)s byte", "%(num)s bytes", size)
    value, unit = size / 1024, "KB"
    for larger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    rounded = round(value, 1) if value < 10 else round(value)
    shown = format_decimal(rounded, format="#,##0.#", locale=_locale())
    return f"{shown} {unit}"


@contextmanager
def language(tag: str | None) -> Iterator[None]:
    """Speak ``tag`` (``"de"``, ``"de-AT"``) inside the block; the current language if ``None``.

    For text made outside a request for a particular person, such as the attachment block of
    an email, which is written in the sender's (or the recipient's) language.
    """
    from babel import Locale
    from flask_babel import force_locale

    try:
        locale = Locale.parse(tag.replace("-", "_")) if tag else None
    except (ValueError, TypeError):  # babel's UnknownLocaleError is a ValueError
        locale = None
    if locale is None:
        yield
        return
    with force_locale(str(locale)):
        yield


def status_label(status: str) -> str:
    """The badge of an email's delivery summary or a copy's delivery state (``"sent"``)."""
    labels = {
        "draft": _("Draft"),
        "scheduled": _("Scheduled"),
        "sending": _("Sending"),
        "retrying": _("Retrying"),
        "pending": _("Pending"),
        "sent": _("Sent"),
        "partly_failed": _("Partly failed"),
        "failed": _("Failed"),
        "in_doubt": _("In doubt"),
    }
    return labels.get(status, status.replace("_", " ").capitalize())


# -- Stored messages -----------------------------------------------------------------------

#: What marks a stored message in a text column (old rows hold plain English text).
STORED_PREFIX = "engage-msg:"


#: Every message a worker stores, by key: how to say it, from its parameters. The parameters
#: are names, numbers and codes; a parameter that is itself a stored message is read first.
MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    # Cards (engage.cards, engage.reminders).
    "card.opened.title": lambda p: _("%(who)s opened ‘%(subject)s’", **p),
    "card.opened.first": lambda p: _("First open by %(address)s.", **p),
    "card.opened.again": lambda p: ngettext(
        "%(address)s has opened it %(num)d time.",
        "%(address)s has opened it %(num)d times.",
        p["num"],
        address=p["address"],
    ),
    "reminder.no_reply": lambda p: _("No reply yet to “%(subject)s”.", **p),
    "reminder.not_opened": lambda p: _("“%(subject)s” has not been opened yet.", **p),
    "reminder.anyway": lambda p: _("Your reminder for “%(subject)s”.", **p),
    "reminder.late": lambda p: _("Fired %(late)s late: the reminder job was lost.", **p),
    "reminder.replied": lambda p: _("%(name)s replied", **p),
    "reminder.opened": lambda p: _("%(name)s opened it", **p),
    "reminder.clicked": lambda p: _("%(name)s clicked a link", **p),
    "reminder.no_click": lambda p: _("No link in “%(subject)s” was clicked yet.", **p),
    "reminder.file_opened": lambda p: _("%(name)s opened %(file)s", **p),
    "reminder.some_file_opened": lambda p: _("%(name)s opened an attachment", **p),
    "reminder.file_not_opened": lambda p: _("%(file)s has not been opened yet.", **p),
    "reminder.no_file_opened": lambda p: _("No attachment of “%(subject)s” was opened yet.", **p),
    "reminder.away": lambda p: _(
        "%(who)s is away until %(when)s (out-of-office reply).",
        who=p["who"],
        when=format_local(datetime.fromisoformat(p["until"])),
    ),
    "subject.none": lambda p: _("(no subject)"),
    "minutes": lambda p: ngettext("%(num)d minute", "%(num)d minutes", p["num"]),
    "seconds": lambda p: ngettext("%(num)d second", "%(num)d seconds", p["num"]),
    #: Two sentences one after the other.
    "two": lambda p: f"{p['first']} {p['second']}",
    # Delivery errors a rep reads on the email's page (engage.delivery); ``answer`` is the mail
    # server's own words, which stay as the server wrote them.
    "delivery.server": lambda p: _("The mail server answered: %(answer)s", **p),
    "delivery.timeout": lambda p: _("The mail server %(server)s did not answer in time.", **p),
    "delivery.refused_connection": lambda p: _(
        "The mail server %(server)s refused the connection.", **p
    ),
    "delivery.unreachable": lambda p: _(
        "The mail server %(server)s cannot be reached (%(detail)s).", **p
    ),
    "delivery.broke": lambda p: _("The connection to the mail server broke (%(detail)s).", **p),
    "delivery.no_smtputf8": lambda p: _(
        "The mail server does not accept addresses beyond ASCII (no SMTPUTF8 support)."
    ),
    "delivery.in_doubt": lambda p: _(
        "The mail server may or may not have accepted this copy: the worker sending it "
        "stopped before the answer came."
    ),
    "delivery.stopped": lambda p: ngettext(
        "Delivery stopped after %(num)d error (%(detail)s).",
        "Delivery stopped after %(num)d errors (%(detail)s).",
        p["num"],
        detail=p["detail"],
    ),
    "delivery.gave_up": lambda p: ngettext(
        "%(error)s Gave up after %(num)d attempt.",
        "%(error)s Gave up after %(num)d attempts.",
        p["num"],
        error=p["error"],
    ),
    "delivery.unbuildable": lambda p: _("The message could not be built (%(detail)s).", **p),
    "delivery.missing_attachment": lambda p: _(
        "The attachment %(filename)s is missing from the attachment store.", **p
    ),
    # Time-zone lookups (engage.geocoding): places and regions are names as GeoNames or the
    # address gives them; countries are codes, named in the reader's language.
    "geo.no_address": lambda p: _("The record has no address."),
    "geo.no_country": lambda p: _("The address has no country."),
    "geo.unknown_country": lambda p: _("“%(country)s” is not a known country.", **p),
    "geo.zone_of": lambda p: _("The time zone of %(where)s.", where=_where(p)),
    "geo.zone_of_largest": lambda p: _(
        "The time zone of %(where)s, by far the largest place of that name.", where=_where(p)
    ),
    "geo.ambiguous": lambda p: _(
        "Places called %(city)s lie in several time zones of %(country)s (%(listed)s); "
        "add the state or province to the address.",
        city=p["city"],
        country=country_in_sentence(p["country"]),
        listed=p["listed"],
    ),
    "geo.city.unknown": lambda p: _(
        "No city called %(city)s in %(area)s, and no places of %(area)s are known.",
        city=p["city"],
        area=_area(p),
    ),
    "geo.no_city.unknown": lambda p: _(
        "The address has no city, and no places of %(area)s are known.", area=_area(p)
    ),
    "geo.city.several": lambda p: _(
        "No city called %(city)s in %(area)s, and %(area)s spans several time zones.",
        city=p["city"],
        area=_area(p),
    ),
    "geo.no_city.several": lambda p: _(
        "The address has no city, and %(area)s spans several time zones.", area=_area(p)
    ),
    "geo.city.one": lambda p: _(
        "No city called %(city)s in %(area)s; %(area)s has one time zone.",
        city=p["city"],
        area=_area(p),
    ),
    "geo.no_city.one": lambda p: _(
        "The address has no city; %(area)s has one time zone.", area=_area(p)
    ),
    "geo.service_failed": lambda p: _("%(service)s could not be asked: %(detail)s", **p),
    "geo.service_unknown": lambda p: _("%(service)s does not know this address.", **p),
    "geo.at_sea": lambda p: _("%(service)s placed the address at sea (%(position)s).", **p),
    "geo.located": lambda p: _("Located by %(service)s.", **p),
    "geo.no_zone": lambda p: _("No time zone was found for this address."),
    "geo.found": lambda p: _("The time zone was found from the address."),
}

#: English country names that read better in a sentence ("in the United States").
_EN_COUNTRY_IN_SENTENCE = {
    "US": "the United States",
    "GB": "the United Kingdom",
    "NL": "the Netherlands",
    "AE": "the United Arab Emirates",
    "PH": "the Philippines",
}


def country_name(code: str) -> str:
    """A country's name in the reader's language, from its ISO code (``"DE"``)."""
    from babel import Locale

    locale = Locale.parse(str(_locale()))
    return str(locale.territories.get(code.upper(), code))


def country_in_sentence(code: str) -> str:
    """A country's name as it reads inside a sentence ("the United States" in English)."""
    if str(_locale()).split("_")[0] == "en" and code.upper() in _EN_COUNTRY_IN_SENTENCE:
        return _EN_COUNTRY_IN_SENTENCE[code.upper()]
    return country_name(code)


def _where(p: dict[str, Any]) -> str:
    parts = [
        p.get("place"),
        p.get("region"),
        country_name(p["country"]) if p.get("country") else "",
    ]
    return ", ".join(str(part) for part in parts if part)


def _area(p: dict[str, Any]) -> str:
    return str(p["region"]) if p.get("region") else country_in_sentence(p["country"])


def stored(key: str, /, **params: Any) -> str:
    """A message to keep in a text column and read later in the reader's language.

    :param key: one of :data:`MESSAGES`.
    :param params: names, numbers and codes (JSON values); a value may itself be a stored
        message (``stored(...)``), read in the same language.
    :raises KeyError: for an unknown key, so that a typo fails where it is written.
    """
    if key not in MESSAGES:
        raise KeyError(f"unknown stored message {key!r}")
    body = json.dumps(_message(key, params), ensure_ascii=False, separators=(",", ":"))
    return STORED_PREFIX + body


def _message(key: str, params: dict[str, Any]) -> dict[str, Any]:
    # A parameter that is itself a stored message is kept as its data, not as escaped text.
    return {
        "k": key,
        "p": {
            name: json.loads(value[len(STORED_PREFIX) :])
            if isinstance(value, str) and value.startswith(STORED_PREFIX)
            else value
            for name, value in params.items()
        },
    }


def read(text: str | None) -> str:
    """A stored text as the reader reads it: a stored message in the current language, old
    plain text as it was written, ``""`` for ``None``."""
    if not text:
        return ""
    if not text.startswith(STORED_PREFIX):
        return text
    try:
        return _say(json.loads(text[len(STORED_PREFIX) :]))
    except (ValueError, KeyError, TypeError):
        # A message this version does not know (written by a newer one): never fail a page.
        return ""


def _say(data: dict[str, Any]) -> str:
    params = {
        name: _say(value) if isinstance(value, dict) and "k" in value else value
        for name, value in dict(data.get("p") or {}).items()
    }
    return MESSAGES[data["k"]](params)
