"""Organisation settings an admin changes at run time, kept in ``engage_setting``.

The config value (``ENGAGE_ENGAGEMENT_ENABLED``) is only the starting point: once an admin has
saved the switch, the stored value wins, so every web process and worker agrees.
"""

from __future__ import annotations

from flask import current_app

from .context import current_engage
from .models import Setting

ENGAGEMENT_ENABLED = "engagement_enabled"


def switch(key: str, config_key: str) -> bool:
    """An organisation switch: the value an admin saved, else the app's config ``config_key``."""
    row = current_engage.session.get(Setting, key)
    if row is None:
        return bool(current_app.config[config_key])
    return row.value == "1"


def set_switch(key: str, enabled: bool, *, by: str) -> None:
    """Save an organisation switch for every process, and commit."""
    session = current_engage.session
    row = session.get(Setting, key)
    if row is None:
        row = Setting(key=key, value="")
        session.add(row)
    row.value = "1" if enabled else "0"
    row.updated_by = by
    session.commit()


def engagement_enabled() -> bool:
    """Whether email engagement (follow, tracking, cards) is on for the organisation (S11)."""
    return switch(ENGAGEMENT_ENABLED, "ENGAGE_ENGAGEMENT_ENABLED")


def set_engagement_enabled(enabled: bool, *, by: str) -> None:
    """Turn email engagement on or off for the whole organisation and commit."""
    set_switch(ENGAGEMENT_ENABLED, enabled, by=by)
