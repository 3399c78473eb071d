"""Follow status of a message (SPEC S8–S11), as a plain function over plain values.

- **On**: followed, with every link; the default for a new message when the organisation has
  email engagement enabled and every recipient allows following.
- **Off**: the sender chose *Don't follow*.
- **Blocked**: a recipient does not allow following; the message cannot be followed until that
  recipient is removed or their preference changes.

Two more states explain why there are no follow controls at all: **Disabled** (the admin
switched email engagement off, S11) and **Bulk** (mass email is never followed, S10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .records import FollowPreference


class FollowState(StrEnum):
    """Where a message stands on following."""

    ON = "on"
    OFF = "off"
    BLOCKED = "blocked"
    DISABLED = "disabled"
    BULK = "bulk"


@dataclass(frozen=True, slots=True)
class RecipientPreference:
    """A recipient's follow preference, and the record it comes from (if any)."""

    address: str
    preference: FollowPreference = FollowPreference.ALLOW
    name: str = ""
    record_url: str | None = None
    record_label: str = ""


@dataclass(frozen=True, slots=True)
class FollowStatus:
    """The state, and the recipients who block following (empty unless Blocked)."""

    state: FollowState
    blocked_by: tuple[RecipientPreference, ...] = field(default_factory=tuple)

    @property
    def followed(self) -> bool:
        """Whether the message will be tracked when sent."""
        return self.state is FollowState.ON


def follow_status(
    *,
    engagement_enabled: bool,
    wants_follow: bool,
    recipients: list[RecipientPreference],
    bulk: bool = False,
) -> FollowStatus:
    """Decide the follow state of a message.

    :param engagement_enabled: the organisation's switch (S11).
    :param wants_follow: the sender's choice; ``True`` unless they pressed *Don't follow*.
    :param recipients: every To, Cc and Bcc recipient with their preference. A plain address
        that is no CRM record has no preference of its own and counts as allowing.
    :param bulk: a mass email (S10).
    """
    if not engagement_enabled:
        return FollowStatus(FollowState.DISABLED)
    if bulk:
        return FollowStatus(FollowState.BULK)
    if not wants_follow:
        return FollowStatus(FollowState.OFF)
    blockers = tuple(r for r in recipients if r.preference is FollowPreference.DO_NOT_ALLOW)
    if blockers:
        return FollowStatus(FollowState.BLOCKED, blockers)
    return FollowStatus(FollowState.ON)
