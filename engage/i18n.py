"""engage's own translation domain.

All user-facing strings go through these functions, so that a host's Flask-Babel locale
selection applies to engage as well, while engage's catalogues stay in its own ``engage``
domain and never clash with the host's ``messages``.
"""

from __future__ import annotations

from pathlib import Path

from flask_babel import Domain

domain = Domain(
    translation_directories=str(Path(__file__).parent / "translations"), domain="engage"
)

gettext = domain.gettext
ngettext = domain.ngettext
lazy_gettext = domain.lazy_gettext
_ = gettext
