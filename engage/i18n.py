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


gettext = domain.gettext
ngettext = domain.ngettext
lazy_gettext = domain.lazy_gettext
_ = gettext
