"""engage's own translation domain.

All user-facing strings go through these functions, so that a host's Flask-Babel locale
selection applies to engage as well, while engage's catalogues stay in its own ``engage``
domain and never clash with the host's ``messages``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask_babel import Domain

domain = Domain(
    translation_directories=str(Path(__file__).parent / "translations"), domain="engage"
)

#: CLDR patterns for the times engage writes out; weekday and month names follow the language.
#: ``weekday``: "Tue 2026-11-24 09:00"; ``short``: "Tue 09:00"; ``long``: "Tue 24 Nov 2026 09:00".
DATETIME_PATTERNS = {
    "weekday": "EEE yyyy-MM-dd HH:mm",
    "short": "EEE HH:mm",
    "long": "EEE dd MMM yyyy HH:mm",
}


def format_when(moment: datetime, style: str = "weekday") -> str:
    """``moment`` in its own time zone, in the user's language ("Di. 09:00" in German).

    Outside a request (a worker), the app's default locale is used.
    """
    from babel.dates import format_datetime
    from flask_babel import get_locale

    return format_datetime(
        moment, DATETIME_PATTERNS[style], tzinfo=moment.tzinfo, locale=get_locale() or "en"
    )


def locale_tag() -> str:
    """The user's language as a BCP 47 tag (``de-AT``), for ``lang`` attributes and choices."""
    from flask_babel import get_locale

    return str(get_locale() or "en").replace("_", "-")


def format_size(size: int) -> str:
    """A file size as people read it: ``512 bytes``, ``14 KB``, ``2.5 MB`` (1 KB = 1024 bytes)."""
    if size < 1024:
        return _("%(num)s bytes", num=size)
    value, unit = size / 1024, "KB"
    for larger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    shown = f"{value:.1f}".removesuffix(".0") if value < 10 else f"{value:.0f}"
    return f"{shown} {unit}"


gettext = domain.gettext
ngettext = domain.ngettext
lazy_gettext = domain.lazy_gettext
_ = gettext
