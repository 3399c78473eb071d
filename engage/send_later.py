"""The Send later dialog of the compose panel (SPEC S19–S22, S24).

It shows times in the sender's own zone (their profile's, else their browser's), pre-filled
with the recommended time when there is one, and explains the recommendation. The recipient's
zone comes from the geocoding job; while it is being looked up, the dialog says so and asks
again every few seconds until it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from flask import current_app, render_template, request

from .emails import DraftInput, draft_recipients
from .extension import current_engage
from .i18n import gettext as _
from .models import EventKind, Party, TrackingEvent, utcnow
from .records import EngageUser
from .schedule import Recommendation, local_hour_histogram, recommend, working_hours_from_config
from .views import blueprint


@dataclass(frozen=True, slots=True)
class SendLater:
    """What the dialog shows."""

    sender_zone: str
    recommendation: Recommendation | None
    looking_up: bool
    prefill: str  # the datetime-local value, in the sender's zone, or ""
    chosen_local: datetime | None  # the delay already set, in the sender's zone
    no_zone_reason: str = ""


def _zone(name: str | None) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def sender_zone(user: EngageUser, browser_zone: str | None) -> str:
    """The zone the sender's times are shown in: their profile's, else their browser's, else UTC."""
    return _zone(user.timezone) or _zone(browser_zone) or "UTC"


def parse_local(value: str, zone: str) -> datetime:
    """A ``datetime-local`` value (``2026-11-27T08:00``) in ``zone``, as UTC.

    :raises ValueError: for anything else.
    """
    naive = datetime.fromisoformat(value.strip())
    if naive.tzinfo is not None:
        raise ValueError("expected a local time")
    return naive.replace(tzinfo=ZoneInfo(zone)).astimezone(ZoneInfo("UTC"))


def _open_hours(address: str, zone: str) -> list[int]:
    # The recipient's past human opens, on any email: when they usually read mail (S24).
    times = current_engage.session.scalars(
        sa.select(TrackingEvent.occurred_at)
        .join(Party, Party.id == TrackingEvent.party_id)
        .where(
            sa.func.lower(Party.address) == address.lower(),
            TrackingEvent.kind == EventKind.OPEN,
            TrackingEvent.machine.is_(False),
        )
        .order_by(TrackingEvent.occurred_at.desc())
        .limit(200)
    )
    return local_hour_histogram(list(times), zone)


def send_later_state(draft: DraftInput, user: EngageUser, browser_zone: str | None) -> SendLater:
    """Work out the dialog: the sender's zone, the recommendation, the pre-filled time."""
    from .geocoding import timezone_of

    zone = sender_zone(user, browser_zone)
    local = ZoneInfo(zone)
    chosen = draft.send_at.astimezone(local) if draft.send_at else None
    recipients = draft_recipients(draft)
    config = current_app.config
    base: dict[str, Any] = {
        "now": utcnow(),
        "sender_zone": zone,
        "recipient_count": len(recipients),
        "hours": working_hours_from_config(config),
        "min_opens": int(config["ENGAGE_USUAL_HOUR_MIN_OPENS"]),
        "gettext": _,
    }
    looking_up, reason = False, ""
    if len(recipients) != 1:
        rec = recommend(recipient_zone=None, **base)
    else:
        address, ref = recipients[0]
        record = current_engage.records.get(ref) if ref else None
        if record is None or record.address is None or record.address.is_empty():
            rec = recommend(recipient_zone=None, has_address=False, **base)
        else:
            row = timezone_of(record.ref)
            if row is None:
                looking_up, rec = True, None
            elif not row.timezone:
                reason = row.reason
                rec = recommend(recipient_zone=None, **base)
            else:
                rec = recommend(
                    recipient_zone=row.timezone,
                    country=record.address.country,
                    open_hours=_open_hours(address, row.timezone),
                    **base,
                )
    if chosen is not None:
        prefill = chosen.strftime("%Y-%m-%dT%H:%M")
    elif rec is not None and rec.at is not None:
        prefill = rec.at.astimezone(local).strftime("%Y-%m-%dT%H:%M")
    else:
        prefill = ""
    return SendLater(zone, rec, looking_up, prefill, chosen, reason)


@blueprint.post("/compose/send-later")
def send_later_part() -> Any:
    """The Send later dialog alone, for the poll that waits for the recipient's time zone."""
    from .access import sales_user
    from .compose_views import _draft_from_form, _slot_id

    user = sales_user()
    draft, _errors = _draft_from_form()
    state = send_later_state(draft, user, request.form.get("browser_zone"))
    return render_template(
        "engage/_send_later.html",
        draft=draft,
        later=state,
        errors={},
        slot=_slot_id(draft.regarding),
        action=request.form.get("compose_action", ""),
    )
