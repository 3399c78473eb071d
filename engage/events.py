"""Recording what recipients do with followed emails: opens, clicks, attachment opens, replies.

Every event goes through here, whether it came from the tracking endpoints (through the event
queue, see :mod:`engage.tracking`) or from a reply (see :mod:`engage.replies`). Each event is
labelled human or machine (SPEC S14) and stored; human events also move the recipient's
running totals, which are what the timeline and the interactions view show.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import LockError
from sqlalchemy.orm import Session, selectinload

from . import template_performance, tracking
from .cards import cards_for_opens
from .context import current_engage
from .interaction_chart import opens_and_clicks
from .machine import (
    BURST_OPEN,
    EVERY_LINK,
    EventFacts,
    History,
    Thresholds,
    Verdict,
    burst_opens,
    classify,
    reason_text,
)
from .models import (
    Activity,
    ActivityKind,
    Attachment,
    Card,
    Email,
    EventKind,
    Link,
    Party,
    PartyRole,
    Reminder,
    TrackingEvent,
    affected_rows,
    utcnow,
)
from .reminders import reopen_unmet, resolve_met, schedule_reminder


def ip_hash(ip: str | None) -> str | None:
    """A keyed hash of an IP address: never the address itself (S15)."""
    if not ip:
        return None
    key = current_app.config["SECRET_KEY"]
    return _keyed_hash(key.encode() if isinstance(key, str) else key, ip)


@functools.lru_cache(maxsize=4096)
def _keyed_hash(key: bytes, ip: str) -> str:
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Hit:
    """One open, click or attachment open of a recipient, as it came off the event queue."""

    party: Party
    kind: EventKind
    occurred_at: datetime
    method: str = "GET"
    user_agent: str = ""
    ip: str | None = None
    link: Link | None = None
    attachment_id: int | None = None
    dedupe_key: str | None = None


@dataclass(slots=True)
class _Seen:
    """One open or click of a recipient that a later event may relabel: already stored
    (``event_id``) or about to be, in this batch (``row``)."""

    when: datetime
    machine: bool
    link_id: int | None = None
    event_id: int | None = None
    row: dict[str, Any] | None = None


@dataclass(slots=True)
class _Relabels:
    """What relabelling stored events machine changed, for the follow-ups of one batch."""

    event_ids: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    opens_of: set[int] = field(default_factory=set)  # parties that lost a human open
    clicks_of: set[int] = field(default_factory=set)  # emails that lost a stored human click

    def add(self, seen: _Seen, rule: str, reason: str) -> None:
        seen.machine = True
        if seen.row is not None:
            seen.row.update(machine=True, rule=rule, reason=reason)
        elif seen.event_id is not None:
            self.event_ids.setdefault((rule, reason), []).append(seen.event_id)


def machine_limits() -> Thresholds:
    """The timings of the machine rules, from the app's ``ENGAGE_MACHINE_*`` settings."""
    config = current_app.config
    return Thresholds(
        fast_open=float(config["ENGAGE_MACHINE_OPEN_SECONDS"]),
        click_before_open=float(config["ENGAGE_MACHINE_CLICK_SECONDS"]),
        burst=float(config["ENGAGE_MACHINE_BURST_SECONDS"]),
    )


def record_interactions(session: Session, hits: list[Hit]) -> int:
    """Label and store a batch of hits; the caller commits. Returns how many were stored.

    What the rules need to know about each recipient's past (opens so far, recent opens and
    clicks, how many links the message has) is read in a few queries for the whole batch and
    then kept up to date in memory, hit by hit in time order, so that a burst of thousands of
    events costs a handful of statements rather than several per event.

    Labels follow later evidence (SPEC S14): a click that completes a burst over every link
    (or three clicks within the burst window) relabels the burst's earlier clicks machine, in
    this batch or stored before, and an open the same scanner made just before it
    (:func:`engage.machine.burst_opens`). The recipient's totals, the open cards, the
    template's open and the reminders an open resolved follow (:func:`_follow_relabels`), so
    the interactions view and the stored events always agree.
    """
    if not hits:
        return 0
    limits = machine_limits()
    party_ids = {h.party.id for h in hits}
    email_ids = {h.party.email_id for h in hits}
    earliest = min(h.occurred_at for h in hits) - timedelta(minutes=1)
    any_opens: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]  # rows are (party_id, count) pairs
            sa.select(TrackingEvent.party_id, sa.func.count())
            .where(TrackingEvent.party_id.in_(party_ids), TrackingEvent.kind == EventKind.OPEN)
            .group_by(TrackingEvent.party_id)
        ).all()
    )
    clicks: dict[int, list[_Seen]] = {}
    opens: dict[int, list[_Seen]] = {}
    # Recent clicks, and the people's opens a burst may relabel, matter only to recipients who
    # clicked in this batch: a flood of pixel fetches reads nothing more.
    clicking = {h.party.id for h in hits if h.kind is EventKind.CLICK}
    recent = sa.select(
        TrackingEvent.id,
        TrackingEvent.party_id,
        TrackingEvent.kind,
        TrackingEvent.occurred_at,
        TrackingEvent.link_id,
        TrackingEvent.machine,
    ).where(
        TrackingEvent.party_id.in_(clicking),
        TrackingEvent.occurred_at >= earliest,
        sa.or_(
            TrackingEvent.kind == EventKind.CLICK,
            sa.and_(TrackingEvent.kind == EventKind.OPEN, TrackingEvent.machine.is_(False)),
        ),
    )
    for event_id, party_id, kind, when, link_id, machine in (
        session.execute(recent) if clicking else ()
    ):
        seen = _Seen(when, machine, link_id, event_id)
        if kind is EventKind.OPEN:
            opens.setdefault(party_id, []).append(seen)
        elif link_id is not None:
            clicks.setdefault(party_id, []).append(seen)
    link_counts: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]  # rows are (email_id, count) pairs
            sa.select(Link.email_id, sa.func.count())
            .where(Link.email_id.in_(email_ids))
            .group_by(Link.email_id)
        ).all()
    )
    rows = []
    relabels = _Relabels()
    human_opens: list[tuple[Party, datetime, dict[str, Any]]] = []
    #: A human click or file open, with its row: its email's link and file reminders may be
    #: met (S41), unless a later event of the batch relabels it.
    human_acts: list[tuple[int, dict[str, Any]]] = []
    for hit in sorted(hits, key=lambda h: h.occurred_at):
        party = hit.party
        window = hit.occurred_at - timedelta(minutes=1)
        party_clicks = clicks.setdefault(party.id, [])
        history = History(
            human_opens=party.opens,
            any_opens=any_opens.get(party.id, 0),
            recent_clicks=tuple(
                (c.when, c.link_id) for c in party_clicks if c.when >= window and c.link_id
            ),
            link_count=link_counts.get(party.email_id, 0),
        )
        link_id = hit.link.id if hit.link else None
        verdict = classify(
            EventFacts(
                kind=hit.kind.value,
                method=hit.method.upper(),
                user_agent=hit.user_agent,
                occurred_at=hit.occurred_at,
                delivered_at=party.delivered_at,
                ip=hit.ip,
                link_id=link_id,
            ),
            history,
            limits,
        )
        row = {
            "email_id": party.email_id,
            "party_id": party.id,
            "kind": hit.kind,
            "occurred_at": hit.occurred_at,
            "machine": verdict.machine,
            "rule": verdict.rule,
            "reason": verdict.reason,
            "link_id": link_id,
            "attachment_id": hit.attachment_id,
            "method": hit.method.upper()[:10],
            "user_agent": hit.user_agent[:400],
            "ip_hash": ip_hash(hit.ip),
            "dedupe_key": hit.dedupe_key,
            "summary": "",
        }
        rows.append(row)
        if verdict.burst:
            _relabel_burst(party, hit.occurred_at, verdict, party_clicks, opens, relabels, limits)
        if hit.kind is EventKind.OPEN:
            any_opens[party.id] = any_opens.get(party.id, 0) + 1
            opens.setdefault(party.id, []).append(_Seen(hit.occurred_at, verdict.machine, row=row))
        elif hit.kind is EventKind.CLICK and link_id is not None:
            party_clicks.append(_Seen(hit.occurred_at, verdict.machine, link_id, row=row))
        if not verdict.machine:
            _count_human(party, hit.kind, hit.occurred_at)
            if hit.kind is EventKind.OPEN:
                human_opens.append((party, hit.occurred_at, row))
            else:
                human_acts.append((party.email_id, row))
    # A Core insert of the whole batch: the ORM would add bookkeeping per row for nothing.
    session.execute(cast(sa.Table, TrackingEvent.__table__).insert(), rows)
    _follow_relabels(session, relabels, [h.party for h in hits])
    # An open relabelled within this batch makes no card and resolves nothing.
    still_human = [(party, when) for party, when, row in human_opens if not row["machine"]]
    if still_human:
        # Human opens only (S14): they are what the sender's open cards are about (S12), and
        # what a template's open rate counts (S31).
        cards_for_opens(session, still_human)
        opened = {party.email_id for party, _when in still_human}
        template_performance.count_opens(session, opened)
        resolve_met(session, opened)  # a "not opened by" reminder is settled now (S28)
    acted_on = {email_id for email_id, row in human_acts if not row["machine"]}
    if acted_on:
        session.flush()
        resolve_met(session, acted_on)  # "no link clicked" and "file not opened" (S41)
    return len(rows)


def _relabel_burst(
    party: Party,
    at: datetime,
    verdict: Verdict,
    party_clicks: list[_Seen],
    opens: dict[int, list[_Seen]],
    relabels: _Relabels,
    limits: Thresholds,
) -> None:
    """The burst this click completes is a scanner's: so are its earlier clicks, and the open
    the scanner made on arrival just before them."""
    burst = [c for c in party_clicks if abs((at - c.when).total_seconds()) <= limits.burst]
    for seen in burst:
        if not seen.machine:
            if seen.event_id is not None:
                relabels.clicks_of.add(party.email_id)  # a reminder it met may hold again
            relabels.add(seen, verdict.rule, verdict.reason)
            _count_human(party, EventKind.CLICK, seen.when, -1)
    if not verdict.reason.startswith(EVERY_LINK):
        return
    start = min([at, *(c.when for c in burst)])
    party_opens = [o for o in opens.get(party.id, []) if not o.machine]
    scanned = set(burst_opens(start, party.delivered_at, [o.when for o in party_opens], limits))
    for seen in party_opens:
        if seen.when in scanned:
            relabels.add(seen, verdict.rule, BURST_OPEN)
            _count_human(party, EventKind.OPEN, seen.when, -1)
            relabels.opens_of.add(party.id)


def _follow_relabels(session: Session, relabels: _Relabels, parties: list[Party]) -> None:
    """Make everything that counted the relabelled events follow their new label.

    Stored events get their new label; a recipient who lost a person's open gets their first
    and last open from the opens still labelled human, their open cards are withdrawn once no
    such open is left, the template's open is taken back when no recipient of the message has
    opened it, and reminders such an open resolved are pending again.
    """
    for (rule, reason), ids in relabels.event_ids.items():
        session.execute(
            sa.update(TrackingEvent)
            .where(TrackingEvent.id.in_(ids))
            .values(machine=True, rule=rule, reason=reason)
            .execution_options(synchronize_session=False)
        )
    if not relabels.opens_of:
        _reopen(session, relabels.clicks_of)
        return
    touched = [p for p in {p.id: p for p in parties}.values() if p.id in relabels.opens_of]
    for party in touched:
        first, last = session.execute(
            sa.select(
                sa.func.min(TrackingEvent.occurred_at), sa.func.max(TrackingEvent.occurred_at)
            ).where(
                TrackingEvent.party_id == party.id,
                TrackingEvent.kind == EventKind.OPEN,
                TrackingEvent.machine.is_(False),
            )
        ).one()
        party.first_open_at, party.last_open_at = first, last
    session.flush()
    gone = [p.id for p in touched if p.opens <= 0]
    if gone:
        session.execute(
            sa.update(Card)
            .where(Card.party_id.in_(gone), Card.kind == "opened", Card.dismissed_at.is_(None))
            .values(dismissed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    emails = {p.email_id for p in touched}
    template_performance.uncount_opens(session, emails)
    _reopen(session, emails | relabels.clicks_of)


def _reopen(session: Session, emails: set[int]) -> None:
    """Reminders met by an event now known to be a machine's are pending again (S28, S41)."""
    reopened = reopen_unmet(session, emails)
    session.info.setdefault("engage_reopened_reminders", []).extend(r.id for r in reopened)


def _count_human(party: Party, kind: EventKind, when: datetime, step: int = 1) -> None:
    if kind is EventKind.OPEN:
        party.opens = max(0, party.opens + step)
        if step > 0:
            party.first_open_at = min(party.first_open_at or when, when)
            party.last_open_at = max(party.last_open_at or when, when)
    elif kind is EventKind.CLICK:
        party.clicks = max(0, party.clicks + step)
    elif kind is EventKind.ATTACHMENT_OPEN:
        party.attachment_opens = max(0, party.attachment_opens + step)


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
        template_performance.count_reply(session, party.email_id)
        resolve_met(session, {party.email_id})  # a "no reply by" reminder is settled now
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


def purge_tracking_details(now: datetime | None = None) -> int:
    """Delete tracking events older than ``ENGAGE_TRACKING_RETENTION_DAYS`` (SPEC S15).

    The recipients' running totals stay; only the details (times, user agents, hashed
    addresses) go. A reply's timeline entry stays too, without its link to the event.
    """
    days = int(current_app.config["ENGAGE_TRACKING_RETENTION_DAYS"])
    cutoff = (now or utcnow()) - timedelta(days=days)
    session = current_engage.session
    session.execute(
        sa.update(Activity)
        .where(
            Activity.event_id.in_(
                sa.select(TrackingEvent.id).where(TrackingEvent.occurred_at < cutoff)
            )
        )
        .values(event_id=None)
    )
    result = session.execute(sa.delete(TrackingEvent).where(TrackingEvent.occurred_at < cutoff))
    session.commit()
    return affected_rows(result)


def interactions(session: Session, email: Email) -> dict[str, Any]:
    """What *View message interactions* shows (SPEC S34): every event of the email, newest
    first, and per recipient the people's clicks by link and opens by attachment."""
    events = list(
        session.scalars(
            sa.select(TrackingEvent)
            .where(TrackingEvent.email_id == email.id)
            .order_by(TrackingEvent.occurred_at.desc(), TrackingEvent.id.desc())
            .options(selectinload(TrackingEvent.link), selectinload(TrackingEvent.party))
        )
    )
    attachment_names = {a.id: a.filename for a in email.attachments}
    clicks_by_link: dict[int, dict[str, int]] = {}
    opens_by_file: dict[int, dict[str, int]] = {}
    for event in events:
        if event.kind is EventKind.CLICK and not event.machine and event.link is not None:
            per_party = clicks_by_link.setdefault(event.party_id, {})
            per_party[event.link.url] = per_party.get(event.link.url, 0) + 1
        if event.kind is EventKind.ATTACHMENT_OPEN and not event.machine:
            name = attachment_names.get(event.attachment_id or 0)
            if name is not None:
                per_file = opens_by_file.setdefault(event.party_id, {})
                per_file[name] = per_file.get(name, 0) + 1
    chart = opens_and_clicks((e.occurred_at, e.kind.value) for e in events if not e.machine)
    return {
        "email": email,
        "events": events,
        "chart": chart,
        "clicks_by_link": clicks_by_link,
        "attachment_names": attachment_names,
        "opens_by_file": opens_by_file,
        "reason_text": reason_text,
    }


# -- the drain job's work: events from Redis into the database ----------------------------


def persist_events() -> int:
    """The drain job: store every queued event, in batches. Returns how many were stored.

    One drain runs at a time (a Redis lock). The pending flag is cleared before draining, so
    an event pushed while this job runs queues another job rather than waiting for the sweep.
    Events are removed from the list only after their batch is committed (and only if Redis
    did not lose its data meanwhile, see :data:`_TRIM_IF_SAME_REDIS`), and then
    acknowledged to the web processes that spooled them (:func:`engage.tracking.acknowledge`),
    stored or not (a token of a deleted email), so they stop keeping them. An event that comes
    again (a crash before the list was trimmed, a web process pushing its spool again after
    Redis lost its data) is stored once, thanks to its id, and acknowledged again.
    """
    redis = current_engage.redis
    lock = redis.lock(tracking.LOCK_KEY, timeout=600)
    if not lock.acquire(blocking=False):
        return 0
    stored = 0
    trim = redis.register_script(_TRIM_IF_SAME_REDIS)
    try:
        redis.delete(tracking.PENDING_KEY)
        while True:
            pipe = redis.pipeline(transaction=False)
            pipe.get(tracking.EPOCH_KEY)
            pipe.lrange(tracking.QUEUE_KEY, 0, tracking.BATCH - 1)
            epoch, raw = pipe.execute()
            if not raw:
                break
            events = [json.loads(item) for item in raw]
            stored += _store_batch(events)
            pipe = redis.pipeline(transaction=False)
            trim(
                keys=[tracking.QUEUE_KEY, tracking.EPOCH_KEY],
                args=[len(raw), epoch or ""],
                client=pipe,
            )
            tracking.acknowledge(pipe, events)
            pipe.execute()
    finally:
        with contextlib.suppress(LockError):
            lock.release()  # unless a flushed (or restarted) Redis took the lock with it
    return stored


#: Take a drained batch off the head of the list, unless Redis lost its data since the batch
#: was read (the epoch marker is gone or another): the list is then another list, whose head
#: holds events pushed since, maybe for the first time, which a blind LTRIM would throw away.
#: They are read and stored next round instead (any of this batch among them, once).
_TRIM_IF_SAME_REDIS = """
local epoch = redis.call('GET', KEYS[2]) or ''
if epoch ~= ARGV[2] then return 0 end
redis.call('LTRIM', KEYS[1], ARGV[1], -1)
return 1
"""


def _store_batch(events: list[dict[str, Any]]) -> int:
    session = current_engage.session
    tokens = {e["token"] for e in events}
    parties = {p.token: p for p in session.scalars(sa.select(Party).where(Party.token.in_(tokens)))}
    keys = [f"hit:{e['id']}" for e in events]
    seen = set(
        session.scalars(
            sa.select(TrackingEvent.dedupe_key).where(TrackingEvent.dedupe_key.in_(keys))
        )
    )
    links: dict[tuple[int, int | None], Link] = {
        (link.email_id, link.position): link
        for link in session.scalars(
            sa.select(Link).where(Link.email_id.in_({p.email_id for p in parties.values()}))
        )
    }
    # An attachment open names its file; it counts only for a file of that recipient's email.
    wanted = {
        e["attachment_id"]
        for e in events
        if e["kind"] == EventKind.ATTACHMENT_OPEN.value and isinstance(e.get("attachment_id"), int)
    }
    files: dict[int, int] = {}
    if wanted:
        query = sa.select(Attachment.id, Attachment.email_id).where(Attachment.id.in_(wanted))
        files = {file_id: email_id for file_id, email_id in session.execute(query)}
    hits = []
    for event, key in zip(events, keys, strict=True):
        party = parties.get(event["token"])
        if party is None or key in seen:
            continue  # a token of a deleted email, or an event already stored before a crash
        if party.opted_out_at is not None and event["at"] >= party.opted_out_at.timestamp():
            continue  # the recipient stopped the tracking of their copy (S43): record nothing
        if event["kind"] == EventKind.ATTACHMENT_OPEN.value and (
            files.get(event.get("attachment_id", 0)) != party.email_id
        ):
            continue  # not a file of this recipient's email (or gone): nothing to record
        seen.add(key)
        hits.append(
            Hit(
                party=party,
                kind=EventKind(event["kind"]),
                occurred_at=datetime.fromtimestamp(event["at"], UTC),
                method=event.get("method", "GET"),
                user_agent=event.get("ua", ""),
                ip=event.get("ip"),
                link=links.get((party.email_id, event.get("position"))),
                attachment_id=event.get("attachment_id"),
                dedupe_key=key,
            )
        )
    stored = record_interactions(session, hits)
    session.commit()
    # Reminders an open had resolved before it was relabelled machine wait for their time again.
    for reminder_id in session.info.pop("engage_reopened_reminders", []):
        reminder = session.get(Reminder, reminder_id)
        if reminder is not None:
            schedule_reminder(reminder)
    return stored
