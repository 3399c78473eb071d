"""Organisation settings an admin changes at run time, kept in ``engage_setting``.

The config value (``ENGAGE_ENGAGEMENT_ENABLED``) is only the starting point: once an admin has
saved the switch, the stored value wins, so every web process and worker agrees.
"""

from __future__ import annotations

from flask import current_app

from .context import current_engage
from .models import Setting

ENGAGEMENT_ENABLED = "engagement_enabled"


def engagement_enabled() -> bool:
    """Whether email engagement (follow, tracking, cards) is on for the organisation (S11)."""
    row = current_engage.session.get(Setting, ENGAGEMENT_ENABLED)
    if row is None:
        return bool(current_app.config["ENGAGE_ENGAGEMENT_ENABLED"])
    return row.value == "1"


def set_engagement_enabled(enabled: bool, *, by: str) -> None:
    """Turn email engagement on or off for the whole organisation and commit."""
    session = current_engage.session
    row = session.get(Setting, ENGAGEMENT_ENABLED)
    if row is None:
        row = Setting(key=ENGAGEMENT_ENABLED, value="")
        session.add(row)
    row.value = "1" if enabled else "0"
    row.updated_by = by
    session.commit()
