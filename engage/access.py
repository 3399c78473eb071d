"""Who may see what (SPEC S36, S37): the rules, as plain functions and query filters.

- Without a sales role (salesperson or sales manager) the email features are refused with a
  page that says why.
- A salesperson sees their own emails, cards and reminders; a sales manager also sees those of
  their team. Another user's object answers 404, so its existence is not revealed.
- Organisation settings (e.g. the engagement switch, S11) need the admin role.

The web layer's guards (:mod:`engage.web.guards`) apply these rules to the signed-in user and
explain a refusal.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .records import EngageUser


def owned_by_visible(user: EngageUser, owner_id: Any, owner_team: Any) -> sa.ColumnElement[bool]:
    """A filter over an ``owner_id``/``owner_team`` pair of columns: what ``user`` may see."""
    mine = owner_id == user.id
    if user.is_manager and user.team:
        return sa.or_(mine, owner_team == user.team)
    return mine


def can_see(user: EngageUser, owner_id: str, owner_team: str | None) -> bool:
    """Whether ``user`` may see an object owned by ``owner_id`` of ``owner_team``."""
    if owner_id == user.id:
        return True
    return user.is_manager and bool(user.team) and owner_team == user.team
