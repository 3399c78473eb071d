"""Template performance (SPEC S31): which templates lead to opens, replies and sales.

The figures are running counters on :class:`~engage.models.EmailTemplate`, moved by the
workers as things happen, so the Insert template window reads 200 rows and never counts
events:

- when a message that used a template is sent (:func:`count_sent`, from the delivery worker);
- when a person first opens one (:func:`count_opens`, from the event worker);
- when a person first replies to one (:func:`count_reply`, from the reply intake);
- when the opportunity it was about is won (:func:`mark_won`): the host says so with
  :func:`note_opportunity_won`, and the periodic sweep asks the host about open ones
  (:func:`check_won`) in case it never does.

Each message has one :class:`~engage.models.TemplateUse` row whose flags make every counter
move at most once per message: a counter moves only together with the conditional update that
sets its flag, so an event delivered twice, or two workers racing, cannot count twice. Machine
opens and auto-replies never reach these functions (SPEC S14).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from . import queueing
from .context import current_engage
from .models import Email, EmailTemplate, Party, TemplateUse, utcnow
from .records import RecordRef

# The tables themselves: counters move in Core statements, with no ORM bookkeeping.
_USES = cast(sa.Table, TemplateUse.__table__)
_TEMPLATES = cast(sa.Table, EmailTemplate.__table__)

#: How often the sweep asks the host again about one open opportunity.
WON_RECHECK = timedelta(hours=1)
#: How many messages the sweep checks per run, at most.
WON_CHECK_BATCH = 200


def count_sent(session: Session, email: Email) -> bool:
    """Count a sent message for its template; ``False`` when it has no template or was counted.

    Opens and replies that came in while some copies were still being retried are counted
    here too, since :func:`count_opens` and :func:`count_reply` only see counted messages.
    The caller commits.
    """
    if email.template_id is None or session.get(TemplateUse, email.id) is not None:
        return False
    recipients = email.recipients
    opportunity = _open_opportunity(email.regarding)
    use = TemplateUse(
        email_id=email.id,
        template_id=email.template_id,
        sent_at=email.sent_at or utcnow(),
        followed=email.followed,
        opened=email.followed and any(p.opens for p in recipients),
        replied=any(p.replied_at for p in recipients),
        opportunity_type=opportunity.type if opportunity else None,
        opportunity_id=opportunity.id if opportunity else None,
    )
    session.add(use)
    session.flush()
    _bump(
        session,
        email.template_id,
        sent=1,
        followed_sent=int(use.followed),
        opened=int(use.opened),
        replied=int(use.replied),
        opportunities=int(opportunity is not None),
    )
    return True


def _open_opportunity(ref: RecordRef | None) -> RecordRef | None:
    # An opportunity is a record the host reports ``won`` for; one already won when the message
    # went out cannot be won *later*, so it is not part of the sample.
    if ref is None:
        return None
    record = current_engage.records.get(ref)
    return ref if record is not None and record.won is False else None


def count_opens(session: Session, email_ids: Iterable[int]) -> int:
    """Count the first human open of each of these messages; returns how many were new."""
    ids = sorted(set(email_ids))
    if not ids:
        return 0
    return _flag(
        session,
        "opened",
        sa.and_(_USES.c.email_id.in_(ids), _USES.c.followed.is_(True)),
    )


def uncount_opens(session: Session, email_ids: Iterable[int]) -> int:
    """Take back the open of these messages where later evidence showed that no person opened
    them after all (an open relabelled machine, SPEC S14); returns how many were taken back.

    The caller has already relabelled the events and moved the recipients' totals; a message
    one of whose recipients still has a person's open stays counted.
    """
    ids = sorted(set(email_ids))
    if not ids:
        return 0
    still_opened = sa.select(Party.email_id).where(Party.email_id.in_(ids), Party.opens > 0)
    column = _USES.c.opened
    rows = session.execute(
        sa.update(_USES)
        .where(_USES.c.email_id.in_(ids), _USES.c.email_id.not_in(still_opened), column.is_(True))
        .values(opened=False)
        .returning(_USES.c.template_id)
    ).all()
    for template_id, count in Counter(row[0] for row in rows).items():
        _bump(session, template_id, opened=-count)
    return len(rows)


def count_reply(session: Session, email_id: int) -> int:
    """Count the first human reply to this message; returns 1 when it was new, else 0."""
    return _flag(session, "replied", _USES.c.email_id == email_id)


def mark_won(session: Session, ref: RecordRef) -> int:
    """Count every message about opportunity ``ref`` as won; returns how many were new."""
    return _flag(
        session,
        "won",
        sa.and_(_USES.c.opportunity_type == ref.type, _USES.c.opportunity_id == ref.id),
    )


def _flag(session: Session, flag: str, where: sa.ColumnElement[bool]) -> int:
    column = _USES.c[flag]
    rows = session.execute(
        sa.update(_USES)
        .where(where, column.is_(False))
        .values({flag: True})
        .returning(_USES.c.template_id)
    ).all()
    for template_id, count in Counter(row[0] for row in rows).items():
        _bump(session, template_id, **{flag: count})
    return len(rows)


def _bump(session: Session, template_id: int, **amounts: int) -> None:
    changes = {name: _TEMPLATES.c[name] + n for name, n in amounts.items() if n}
    if changes:
        session.execute(sa.update(_TEMPLATES).where(_TEMPLATES.c.id == template_id).values(changes))


def note_opportunity_won(ref: RecordRef) -> bool:
    """Tell engage that the host just marked opportunity ``ref`` won (SPEC S31).

    Call it from the request that marks the sale won; the counting happens in a worker, which
    checks with the record adapter that the opportunity is indeed won. Without this call the
    periodic sweep notices within the hour. Returns ``False`` when engage's job queue cannot be
    reached (it never raises for that): the sweep notices the win then.
    """
    return queueing.enqueue(queueing.OPPORTUNITY_WON, ref.type, ref.id) is not None


def opportunity_won(record_type: str, record_id: str) -> int:
    """The job behind :func:`note_opportunity_won`; returns how many messages it counted."""
    ref = RecordRef(record_type, record_id)
    record = current_engage.records.get(ref)
    if record is None or record.won is not True:
        return 0
    session = current_engage.session
    counted = mark_won(session, ref)
    session.commit()
    return counted


def check_won(now: datetime | None = None) -> int:
    """Ask the host about the open opportunities of recent messages; returns how many were won.

    Part of the periodic sweep. Each message is checked at most once an hour, for
    ``ENGAGE_TEMPLATE_WON_DAYS`` after it was sent, a batch at a time.
    """
    now = now or utcnow()
    session = current_engage.session
    since = now - timedelta(days=float(current_app.config["ENGAGE_TEMPLATE_WON_DAYS"]))
    due = session.execute(
        sa.select(_USES.c.email_id, _USES.c.opportunity_type, _USES.c.opportunity_id)
        .where(
            _USES.c.opportunity_id.is_not(None),
            _USES.c.won.is_(False),
            _USES.c.sent_at >= since,
            sa.or_(_USES.c.won_checked_at.is_(None), _USES.c.won_checked_at < now - WON_RECHECK),
        )
        .order_by(_USES.c.won_checked_at.is_not(None), _USES.c.won_checked_at)
        .limit(WON_CHECK_BATCH)
    ).all()
    if not due:
        return 0
    won = 0
    for ref in {RecordRef(kind, id_) for _email, kind, id_ in due}:
        record = current_engage.records.get(ref)
        if record is not None and record.won is True:
            won += mark_won(session, ref)
    session.execute(
        sa.update(_USES)
        .where(_USES.c.email_id.in_([row[0] for row in due]))
        .values(won_checked_at=now)
    )
    session.commit()
    return won


@dataclass(frozen=True, slots=True)
class Rate:
    """One measure of a template: ``hits`` of ``sample`` messages."""

    hits: int
    sample: int

    @property
    def share(self) -> float | None:
        """The rate between 0 and 1, or ``None`` with no sample."""
        return self.hits / self.sample if self.sample else None

    @property
    def percent(self) -> str:
        """The rate as a whole percentage for people (``"42%"``), or ``"–"``."""
        share = self.share
        return "–" if share is None else f"{round(share * 100)}%"


@dataclass(frozen=True, slots=True)
class Performance:
    """A template's figures, as the window and the managers' list show them."""

    uses: int
    opens: Rate
    replies: Rate
    sales: Rate

    @classmethod
    def of(cls, template: EmailTemplate) -> Performance:
        return cls(
            uses=template.sent,
            opens=Rate(template.opened, template.followed_sent),
            replies=Rate(template.replied, template.sent),
            sales=Rate(template.won, template.opportunities),
        )


#: The measures a template can be best at, in the order the window shows them.
MEASURES = ("opens", "replies", "sales")


def best_templates(
    templates: Sequence[EmailTemplate], *, min_sample: int | None = None
) -> dict[str, int]:
    """The id of the best template for each measure: ``{"opens": 12, ...}``.

    A template qualifies for a measure with at least ``min_sample`` messages in that measure's
    sample (``ENGAGE_TEMPLATE_MIN_SAMPLE`` by default) and at least one hit: a rate over a
    handful of messages says nothing. Ties go to the larger sample, then the older template.
    Measures nobody qualifies for are left out.
    """
    if min_sample is None:
        min_sample = int(current_app.config["ENGAGE_TEMPLATE_MIN_SAMPLE"])
    best: dict[str, int] = {}
    performances = [(template, Performance.of(template)) for template in templates]
    for measure in MEASURES:
        candidates = []
        for template, performance in performances:
            rate: Rate = getattr(performance, measure)
            if rate.sample >= max(min_sample, 1) and rate.hits > 0:
                candidates.append((rate.hits / rate.sample, rate.sample, -template.id))
        if candidates:
            best[measure] = -max(candidates)[2]
    return best
