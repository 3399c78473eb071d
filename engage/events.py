"""Recording what recipients do with followed emails: opens, clicks, attachment opens, replies.

Every event goes through here, whether it came from the tracking endpoints (through the event
queue, see :mod:`engage.tracking`) or from a reply (see :mod:`engage.replies`). Each event is
labelled human or machine (SPEC S14) and stored; human events also move the recipient's
running totals, which are what the timeline and the interactions view show.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from .machine import EventFacts, History, classify
from .models import (
    Activity,
    ActivityKind,
    EventKind,
    Link,
    Party,
    PartyRole,
    TrackingEvent,
)


def ip_hash(ip: str | None) -> str | None:
    """A keyed hash of an IP address: never the address itself (S15)."""
    if not ip:
        return None
    key = current_app.config["SECRET_KEY"]
    if isinstance(key, str):
        key = key.encode()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:32]


def _history(session: Session, party: Party, now: datetime) -> History:
    any_opens = session.scalar(
        sa.select(sa.func.count())
        .select_from(TrackingEvent)
        .where(TrackingEvent.party_id == party.id, TrackingEvent.kind == EventKind.OPEN)
    )
    recent = session.execute(
        sa.select(TrackingEvent.occurred_at, TrackingEvent.link_id).where(
            TrackingEvent.party_id == party.id,
            TrackingEvent.kind == EventKind.CLICK,
            TrackingEvent.occurred_at >= now - timedelta(minutes=1),
        )
    ).all()
    links = session.scalar(
        sa.select(sa.func.count()).select_from(Link).where(Link.email_id == party.email_id)
    )
    return History(
        human_opens=party.opens,
        any_opens=any_opens or 0,
        recent_clicks=tuple((when, link) for when, link in recent if link is not None),
        link_count=links or 0,
    )


def record_interaction(
    session: Session,
    party: Party,
    *,
    kind: EventKind,
    occurred_at: datetime,
    method: str = "GET",
    user_agent: str = "",
    ip: str | None = None,
    link: Link | None = None,
    attachment_id: int | None = None,
    dedupe_key: str | None = None,
) -> TrackingEvent:
    """Label and store an open, click or attachment open of ``party``; the caller commits."""
    config = current_app.config
    verdict = classify(
        EventFacts(
            kind=kind.value,
            method=method.upper(),
            user_agent=user_agent,
            occurred_at=occurred_at,
            delivered_at=party.delivered_at,
            ip=ip,
            link_id=link.id if link else None,
        ),
        _history(session, party, occurred_at),
        fast_open_seconds=float(config["ENGAGE_MACHINE_OPEN_SECONDS"]),
    )
    event = TrackingEvent(
        email_id=party.email_id,
        party_id=party.id,
        kind=kind,
        occurred_at=occurred_at,
        machine=verdict.machine,
        rule=verdict.rule,
        reason=verdict.reason,
        link_id=link.id if link else None,
        attachment_id=attachment_id,
        method=method.upper()[:10],
        user_agent=user_agent[:400],
        ip_hash=ip_hash(ip),
        dedupe_key=dedupe_key,
    )
    session.add(event)
    if not verdict.machine:
        if kind is EventKind.OPEN:
            party.opens += 1
            party.first_open_at = party.first_open_at or occurred_at
            party.last_open_at = max(party.last_open_at or occurred_at, occurred_at)
        elif kind is EventKind.CLICK:
            party.clicks += 1
        elif kind is EventKind.ATTACHMENT_OPEN:
            party.attachment_opens += 1
    session.flush()
    return event


def record_reply(
    session: Session,
    party: Party,
    *,
    occurred_at: datetime,
    message_id: str,
    subject: str,
    excerpt: str,
    auto_reply_reason: str | None = None,
) -> TrackingEvent | None:
    """Store a reply from ``party`` to its email; ``None`` when this reply was seen before.

    An auto-reply (out of office, …) is kept as a machine event with its reason and counts as
    no reply. A real reply marks the recipient replied and lands on the timelines of the
    email's regarding record and of the replying record. The caller commits.
    """
    key = f"reply:{message_id}"
    if session.scalar(sa.select(TrackingEvent.id).where(TrackingEvent.dedupe_key == key)):
        return None
    event = TrackingEvent(
        email_id=party.email_id,
        party_id=party.id,
        kind=EventKind.REPLY,
        occurred_at=occurred_at,
        machine=auto_reply_reason is not None,
        rule="auto_reply" if auto_reply_reason else "human",
        reason=auto_reply_reason or "",
        dedupe_key=key,
        summary=f"{subject}\n{excerpt}".strip(),
    )
    session.add(event)
    session.flush()
    if auto_reply_reason is None:
        party.replied_at = party.replied_at or occurred_at
        email = party.email
        records = {p.record for p in [party] if p.record}
        if email.regarding:
            records.add(email.regarding)
        for ref in records:
            session.add(
                Activity(
                    record_type=ref.type,
                    record_id=ref.id,
                    kind=ActivityKind.REPLY,
                    occurred_at=occurred_at,
                    owner_id=email.owner_id,
                    owner_team=email.owner_team,
                    event_id=event.id,
                    title=subject,
                    notes=excerpt,
                )
            )
    return event


def recipient_by_address(session: Session, email_id: int, address: str) -> Party | None:
    """The recipient of email ``email_id`` with this address (To, Cc or Bcc), if any."""
    return session.scalar(
        sa.select(Party).where(
            Party.email_id == email_id,
            Party.role != PartyRole.FROM,
            sa.func.lower(Party.address) == address.lower(),
        )
    )
