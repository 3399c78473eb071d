"""The return date an out-of-office auto-reply states (SPEC S42), as a pure function.

:func:`return_date` reads an auto-reply's subject and text, in English or German, and answers
the first day the writer is back, or ``None`` when it cannot tell: what cannot be read with
confidence is simply not used. It understands

- dates as people write them in both languages: ``7 December 2026``, ``December 7th``,
  ``Mon, Dec 7``, ``7. Dezember``, ``07.12.2026``, ``7.12.``, ``2026-12-07``, ``12/07/2026``
  (a slashed date that reads as two plausible days, 12 July or 7 December, is not used);
  a date without a year is its next occurrence from the day the reply was written;
- the phrases around them, which say what the date means:

  - *back on it*: "back on", "return(ing) on", "in the office again on", "wieder (im Büro /
    erreichbar) am", "ab dem", "zurück am": the date is the return date;
  - *away up to it, that day included*: "through", "inclusive", German "bis (zum /
    einschließlich)", a range "from … to …" / "vom … bis …": back the day after;
  - *away until it* in English ("until", "till"): back on that day, as English writers
    mostly mean ("out of the office until Monday 7 December");
  - a weekday or "tomorrow" alone ("back on Monday", "ab Montag wieder", "morgen wieder"):
    its next occurrence after the reply was written.

Explicit *back on* dates win over *until* dates; a return date must lie after the reply was
written and within a year of it. Quoted text (lines starting with ``>``, the original message
below "-----Original Message-----" or "Von:/From:" headers) is not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

#: How far ahead a return date may lie to be believed.
MAX_DAYS_AHEAD = 366

_MONTHS = {
    "january": 1, "jan": 1, "januar": 1, "jänner": 1, "jaenner": 1,
    "february": 2, "feb": 2, "februar": 2, "feber": 2,
    "march": 3, "mar": 3, "märz": 3, "maerz": 3, "mär": 3, "mrz": 3,
    "april": 4, "apr": 4,
    "may": 5, "mai": 5,
    "june": 6, "jun": 6, "juni": 6,
    "july": 7, "jul": 7, "juli": 7,
    "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "oktober": 10, "okt": 10,
    "november": 11, "nov": 11,
    "december": 12, "dec": 12, "dezember": 12, "dez": 12,
}  # fmt: skip

_WEEKDAYS = {
    "monday": 0, "montag": 0, "tuesday": 1, "dienstag": 1, "wednesday": 2, "mittwoch": 2,
    "thursday": 3, "donnerstag": 3, "friday": 4, "freitag": 4, "saturday": 5, "samstag": 5,
    "sonnabend": 5, "sunday": 6, "sonntag": 6,
}  # fmt: skip

_MONTH = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th|\.)?"

#: Every way of writing a date, each with named groups ``d``, ``m`` (a number or a month
#: name), ``y`` (optional); ``slash`` marks the ambiguous slashed form.
_DATES = [
    re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b"),
    re.compile(r"\b(?P<d>\d{1,2})\.\s?(?P<m>\d{1,2})\.(?:\s?(?P<y>\d{4}|\d{2})\b)?"),
    re.compile(r"\b(?P<a>\d{1,2})/(?P<b>\d{1,2})(?:/(?P<y>\d{4}|\d{2}))?\b"),
    re.compile(
        rf"\b(?P<d>\d{{1,2}}){_ORD}\s*(?:of\s+)?(?P<m>{_MONTH})\b\.?,?(?:\s+(?P<y>\d{{4}})\b)?"
    ),
    re.compile(
        rf"\b(?P<m>{_MONTH})\b\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b,?(?:\s+(?P<y>\d{{4}})\b)?"
    ),
]

# What stands before a date and says what it is. The nearest cue before the date wins.
_CUES = re.compile(
    r"(?P<through>\bthrough\b|\bthru\b|bis\s+einschlie(?:ß|ss)lich|\bbis\b)"
    r"|(?P<until>\buntil\b|\btill\b|\btil\b)"
    r"|(?P<back>\bback\b|\breturn(?:ing|s)?\b|\bwieder\b|\bzur(?:ü|ue)ck\b|\bab\b)"
    r"|(?P<range_to>\bto\b|\s[-–]\s?)"
    r"|(?P<stop>[.!?;:]\s|\n)"
)
_RANGE_START = re.compile(r"\b(?:from|vom|von|between|zwischen)\b")
_INCLUSIVE_AFTER = re.compile(r"^\s*\(?\s*(?:inclusive|incl\.?|einschlie(?:ß|ss)lich|inkl\.?)")
_BACK_AFTER = re.compile(r"^[\s,]*(?:wieder|zurück|zurueck|back)\b")
_QUOTE_START = re.compile(
    r"^(?:-{2,}\s*(?:original message|ursprüngliche nachricht|weitergeleitete nachricht)"
    r"|(?:from|von|sent|gesendet):\s.*$)",
    re.IGNORECASE,
)
_WEEKDAY_BACK = re.compile(
    r"(?:\bback\b|\breturn(?:ing)?\b|\bwieder\b|\bzur(?:ü|ue)ck\b|\bab\b)[^.\n]{0,30}?"
    r"\b(?:on\s+|am\s+)?(?P<w>" + "|".join(_WEEKDAYS) + r"|tomorrow|morgen)\b"
    r"|\b(?P<w2>" + "|".join(_WEEKDAYS) + r"|tomorrow|morgen)\b[^.\n]{0,30}?"
    r"\b(?:wieder|zurück|back)\b"
)


@dataclass(frozen=True, slots=True)
class _Found:
    day: date
    kind: str  # "back", "until" or "through"


def _own_text(text: str) -> str:
    """The auto-reply's own words: quoted lines and the quoted original left out."""
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if _QUOTE_START.match(stripped) and kept:
            break
        kept.append(stripped)
    return "\n".join(kept)


def _year_for(day: int, month: int, written: date) -> date | None:
    # A date without a year is the occurrence nearest to the day the reply was written: "back
    # on January 4th" written at Christmas is next year's, "until November 20" written on the
    # 30th is this year's (and so already past).
    found = []
    for year in (written.year - 1, written.year, written.year + 1):
        try:
            found.append(date(year, month, day))
        except ValueError:
            continue
    return min(found, key=lambda d: abs((d - written).days)) if found else None


def _make(day: int, month: int, year: str | None, written: date) -> date | None:
    if year is None:
        return _year_for(day, month, written)
    full = int(year) + (2000 if len(year) == 2 else 0)
    try:
        return date(full, month, day)
    except ValueError:
        return None


def _plausible(day: date | None, written: date) -> bool:
    return day is not None and written <= day <= written + timedelta(days=MAX_DAYS_AHEAD)


def _read_date(match: re.Match[str], written: date) -> date | None:
    groups = match.groupdict()
    if "a" in groups:
        first, second, year = int(groups["a"]), int(groups["b"]), groups["y"]
        readings = {
            _make(first, second, year, written),  # 07/12: day first (British, German)
            _make(second, first, year, written),  # 12/07: month first (American)
        }
        plausible = [r for r in readings if _plausible(r, written)]
        # Two different plausible days cannot be told apart: better none than a wrong one.
        return plausible[0] if len(plausible) == 1 else None
    raw_month = groups["m"]
    month = int(raw_month) if raw_month.isdigit() else _MONTHS[raw_month.rstrip(".")]
    if not 1 <= month <= 12:
        return None
    return _make(int(groups["d"]), month, groups["y"], written)


def _cue_before(text: str, start: int) -> tuple[str | None, bool]:
    """The nearest cue before ``start`` in its clause, and whether a range started there."""
    window = text[max(0, start - 90) : start]
    cue = None
    clause_start = 0
    for match in _CUES.finditer(window):
        kind = match.lastgroup
        if kind == "range_to" and len(window) - match.end() > 14:
            continue  # "return to the office on …": a "to" far from the date ends no range
        if kind == "stop":
            cue, clause_start = None, match.end()
        else:
            cue = kind
    ranged = bool(_RANGE_START.search(window[clause_start:]))
    return cue, ranged


def _candidates(text: str, written: date) -> list[_Found]:
    found: list[tuple[int, _Found]] = []
    taken: list[tuple[int, int]] = []
    for pattern in _DATES:
        for match in pattern.finditer(text):
            if any(s < match.end() and match.start() < e for s, e in taken):
                continue  # part of a date another pattern read already
            taken.append((match.start(), match.end()))
            day = _read_date(match, written)
            if day is None:
                continue
            cue, ranged = _cue_before(text, match.start())
            after = text[match.end() : match.end() + 40]
            if _INCLUSIVE_AFTER.match(after) or cue == "through":
                kind = "through"
            elif cue == "back" or _BACK_AFTER.match(after):
                kind = "back"
            elif cue == "until":
                kind = "through" if ranged else "until"
            elif cue == "range_to" and ranged:
                kind = "through"
            else:
                continue  # a date that says nothing about a return (a range's start, a header)
            found.append((match.start(), _Found(day, kind)))
    return [f for _pos, f in sorted(found, key=lambda item: item[0])]


def _weekday_return(text: str, written: date) -> date | None:
    match = _WEEKDAY_BACK.search(text)
    if match is None:
        return None
    word = match.group("w") or match.group("w2")
    if word in ("tomorrow", "morgen"):
        return written + timedelta(days=1)
    ahead = (_WEEKDAYS[word] - written.weekday()) % 7 or 7
    return written + timedelta(days=ahead)


def return_date(subject: str, text: str, *, written: date) -> date | None:
    """The first day the writer of an out-of-office reply is back, or ``None``.

    :param subject: the auto-reply's subject (it may carry the date: "Abwesend bis 4.12.").
    :param text: the auto-reply's text (HTML already made text).
    :param written: the day the auto-reply was written (its ``Date``, else the day it came),
        which gives a date without a year its year and bounds what is believed.
    """
    body = f"{subject}.\n{_own_text(text)}".lower()
    body = re.sub(r"[ \t\xa0]+", " ", body)
    found = _candidates(body, written)
    backs = [f for f in found if f.kind == "back"]
    chosen = backs[0] if backs else (found[0] if found else None)
    if chosen is None:
        day = _weekday_return(body, written)
        return day if _plausible(day, written) else None
    day = chosen.day + timedelta(days=1) if chosen.kind == "through" else chosen.day
    return day if _plausible(day, written) and day > written else None
