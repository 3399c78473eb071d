"""Sequences (SPEC S46–S48): planned follow-ups that go out by themselves, per recipient.

A sales manager keeps a sequence: ordered steps, each an automatic email (a template rendered
for each recipient with their own values), a manual email (a draft prepared the same way, handed
to the rep on an assistant card) or a phone call task (a card), each after a wait of N working
days in the recipient's zone, at the recommended time there (S20–S24). With ``thread_replies``
later emails go as replies in the thread of the enrolment's first email (``In-Reply-To`` and
``References`` of it, subject ``Re: …``).

A rep enrols contacts and leads (:func:`enrol`); each :class:`~engage.models.Enrolment` runs on
its own. The database drives it: the periodic sweep (:func:`sweep_sequences`) finds the
enrolments whose step is due and queues them in batches; the job (:func:`advance`) claims each
step with one conditional UPDATE on the enrolment (its step and due time), and creates the email
with its delivery (or the draft or card) and the step's :class:`~engage.models.SequenceSend` in
the same commit, before the usual delivery path sends it. A step is therefore done once: a
second job finds the step moved on, and the send row is unique per enrolment and step. A worker
that dies after the commit leaves an email *sending* that the delivery sweep picks up; a flushed
Redis loses only queued batches, which the next sweep queues again from the database.

An enrolment stops by itself on a person's reply (auto-replies do not count,
:func:`stop_on_reply` is called by :func:`engage.replies.ingest`), a hard bounce (a copy the
relay refused for good) or an opt-out, and pauses through an absence. The last two are wired by
the code that learns of them, through :func:`end_enrolments_for_address` and
:func:`pause_enrolments_until`.

Limits: a rep sends at most ``ENGAGE_SEQUENCE_DAILY_LIMIT`` sequence emails a day (their own
day, in their zone; ``0`` for no limit), and with ``ENGAGE_SEQUENCE_SPREAD`` those are spread
over the working day: one every (working day ÷ limit). A step held back by either waits, and is
due again at the recipient's next working time after that.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from . import delivery, queueing
from .access import owned_by_visible
from .best_time import (
    DEFAULT_WORKING_HOURS,
    WorkingHours,
    is_working_day,
    recommend,
    working_hours_from_config,
)
from .cards import create_card
from .content import clean_html, html_to_text
from .context import current_engage
from .emails import follow_disabled_reason, follow_status_of
from .geocoding import timezone_of
from .i18n import gettext as _
from .local_time import valid_zone
from .models import (
    DeliveryState,
    Email,
    EmailSequence,
    EmailStatus,
    EmailTemplate,
    EndReason,
    Enrolment,
    EnrolmentState,
    Link,
    Party,
    PartyRole,
    SequenceQuota,
    SequenceSend,
    SequenceStep,
    StepKind,
    affected_rows,
    new_message_id,
    utcnow,
)
from .opt_out import apply_opt_out
from .records import EngageUser, Record, RecordRef
from .templating import TemplateBroken, TemplateRefused, render_template_text, values_for
from .timeline import sync_email_activities
from .tracking import new_token, web_links

logger = logging.getLogger(__name__)

#: The most steps a sequence has, and the longest wait of one, in working days.
MAX_STEPS = 20
MAX_WAIT_DAYS = 365
#: The most records one enrolment form takes.
MAX_ENROL = 500
#: How many due enrolments the sweep queues per job, and at most per run.
BATCH = 25
MAX_DUE_PER_SWEEP = 20_000
#: Seconds an enrolment counts as queued after the sweep queued it (see :func:`queue_due`).
QUEUED_MARK_SECONDS = 300

#: The sequence's counter for each way an enrolment ends.
_END_COUNTERS = {
    EndReason.REPLIED: "replied",
    EndReason.BOUNCED: "bounced",
    EndReason.OPTED_OUT: "opted_out",
    EndReason.FINISHED: "finished",
    EndReason.ENDED_BY_REP: "ended_by_rep",
}


# -- the rules of time (plain functions) --------------------------------------------------------


def step_due(
    after: datetime,
    wait_days: int,
    *,
    zone: str,
    country: str | None = None,
    hours: WorkingHours = DEFAULT_WORKING_HOURS,
) -> datetime:
    """When a step that waits ``wait_days`` working days after ``after`` is due, in UTC.

    The days are counted in the recipient's zone (``zone``), skipping days off and the public
    holidays of ``country``; the step then goes at the start of the working day (or at once,
    for a wait of 0 inside working hours; else at the next working time).
    """
    tz = ZoneInfo(zone)
    start = after.astimezone(UTC)
    if wait_days > 0:
        day = after.astimezone(tz).date()
        counted = 0
        while counted < wait_days:
            day += timedelta(days=1)
            if is_working_day(day, country=country, hours=hours):
                counted += 1
        start = max(start, datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC))
    found = recommend(
        now=start,
        sender_zone=zone,
        recipient_zone=zone,
        recipient_count=1,
        country=country,
        hours=hours,
    )
    assert found.at is not None  # a known zone and one recipient always give a time
    return found.at


def send_gap(limit: int, hours: WorkingHours) -> timedelta:
    """The least time between two sequence emails of a rep: the working day over the limit."""
    if limit <= 0:
        return timedelta(0)
    length = datetime.combine(datetime.min, hours.end) - datetime.combine(datetime.min, hours.start)
    return length / limit


def reply_subject(subject: str) -> str:
    """``Re: subject``, once."""
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}"


# -- keeping sequences (managers) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepInput:
    """One step as the sequence editor carries it."""

    kind: StepKind
    wait_days: int
    template_id: int | None
    notes: str = ""


def step_problems(steps: list[StepInput]) -> dict[int, str]:
    """What is wrong with each step (by index), in the manager's words; empty when none."""
    problems: dict[int, str] = {}
    for index, step in enumerate(steps):
        if not 0 <= step.wait_days <= MAX_WAIT_DAYS:
            problems[index] = _("Wait between 0 and %(max)s working days.", max=MAX_WAIT_DAYS)
        elif step.kind is not StepKind.CALL and step.template_id is None:
            problems[index] = _("Choose the template this email is written from.")
    return problems


def save_sequence(
    session: Session,
    sequence: EmailSequence | None,
    *,
    by: str,
    name: str,
    thread_replies: bool,
    steps: list[StepInput],
) -> EmailSequence:
    """Store a sequence (a new one when ``sequence`` is ``None``) with these steps; commits.

    Steps keep their rows (and figures) by position; steps beyond the new last one go.
    Enrolments carry on at their position with the steps as they are now.
    """
    if not steps or len(steps) > MAX_STEPS:
        raise ValueError(f"a sequence has 1 to {MAX_STEPS} steps")
    if sequence is None:
        sequence = EmailSequence(created_by=by)
        session.add(sequence)
    sequence.name = name.strip()
    sequence.thread_replies = thread_replies
    sequence.updated_by = by
    sequence.updated_at = utcnow()
    rows = list(sequence.steps)
    for index, step in enumerate(steps):
        if index < len(rows):
            row = rows[index]
        else:
            row = SequenceStep(position=index)
            sequence.steps.append(row)
        row.kind = step.kind
        row.wait_days = step.wait_days
        row.template_id = step.template_id if step.kind is not StepKind.CALL else None
        row.notes = step.notes.strip()
    for row in rows[len(steps) :]:
        sequence.steps.remove(row)
    session.commit()
    return sequence


def set_retired(session: Session, sequence: EmailSequence, retired: bool, *, by: str) -> None:
    """Retire a sequence (no new enrolments; running ones go on) or offer it again; commits."""
    sequence.retired_at = utcnow() if retired else None
    sequence.updated_by = by
    session.commit()


def offered(session: Session) -> list[EmailSequence]:
    """The sequences reps may enrol people in: not retired, with at least one step."""
    return [
        s
        for s in session.scalars(
            sa.select(EmailSequence)
            .where(EmailSequence.retired_at.is_(None))
            .order_by(EmailSequence.name)
            .options(selectinload(EmailSequence.steps))
        )
        if s.steps
    ]


# -- enrolling (reps) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrolResult:
    """What an enrolment form did: who was enrolled, who was skipped and why."""

    enrolled: list[Enrolment]
    skipped: list[tuple[str, str]]


def _clock_of(record: Record | None, fallback: str) -> tuple[str, str | None]:
    """The zone and country a recipient's working days are counted in."""
    if record is None or record.address is None or record.address.is_empty():
        return fallback, None
    row = timezone_of(record.ref)
    zone = valid_zone(row.timezone if row is not None else None)
    return zone or fallback, (record.address.country or None)


def _hours() -> WorkingHours:
    return working_hours_from_config(current_app.config)


def enrol(
    session: Session,
    user: EngageUser,
    sequence: EmailSequence,
    refs: Iterable[RecordRef],
    *,
    now: datetime | None = None,
) -> EnrolResult:
    """Enrol each record in ``sequence``, owned by ``user``; commits.

    Records that do not exist, have no email address or are already going through this
    sequence are skipped, each with the reason.
    """
    if sequence.retired_at is not None or not sequence.steps:
        raise ValueError("this sequence takes no enrolments")
    now = now or utcnow()
    rep_zone = valid_zone(user.timezone) or "UTC"
    hours = _hours()
    enrolled: list[Enrolment] = []
    skipped: list[tuple[str, str]] = []
    for ref in dict.fromkeys(refs):
        record = current_engage.records.get(ref)
        if record is None:
            skipped.append((str(ref), _("not found")))
            continue
        if not record.email:
            skipped.append((record.name, _("no email address")))
            continue
        address = record.email.lower()
        running = session.scalar(
            sa.select(Enrolment.id).where(
                Enrolment.sequence_id == sequence.id,
                Enrolment.address == address,
                Enrolment.state != EnrolmentState.ENDED,
            )
        )
        if running is not None:
            skipped.append((record.name, _("already in this sequence")))
            continue
        zone, country = _clock_of(record, rep_zone)
        enrolment = Enrolment(
            sequence_id=sequence.id,
            record_type=ref.type,
            record_id=ref.id,
            address=address,
            name=record.name,
            owner_id=user.id,
            owner_team=user.team,
            owner_name=user.name,
            owner_email=user.email,
            owner_zone=rep_zone,
            state=EnrolmentState.ACTIVE,
            next_position=0,
            due_at=step_due(
                now, sequence.steps[0].wait_days, zone=zone, country=country, hours=hours
            ),
            created_at=now,
        )
        session.add(enrolment)
        enrolled.append(enrolment)
    if enrolled:
        _bump(session, EmailSequence, sequence.id, "enrolled", len(enrolled))
    session.commit()
    return EnrolResult(enrolled, skipped)


def _bump(session: Session, model: Any, row_id: int, column: str, by: int = 1) -> None:
    table = cast(sa.Table, model.__table__)
    session.execute(
        sa.update(table).where(table.c.id == row_id).values({column: table.c[column] + by})
    )


# -- a rep's controls, and the hooks for replies, bounces, opt-outs and absences --------------


def _end(session: Session, enrolment_id: int, sequence_id: int, reason: EndReason) -> bool:
    """End one enrolment, once, and count it for its sequence; the caller commits."""
    ended = affected_rows(
        session.execute(
            sa.update(Enrolment)
            .where(Enrolment.id == enrolment_id, Enrolment.state != EnrolmentState.ENDED)
            .values(
                state=EnrolmentState.ENDED,
                end_reason=reason,
                ended_at=utcnow(),
                due_at=None,
                paused_until=None,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if ended:
        _bump(session, EmailSequence, sequence_id, _END_COUNTERS[reason])
    return bool(ended)


def end_enrolments_for_address(session: Session, address: str, reason: EndReason | str) -> int:
    """End every running enrolment of the recipient at ``address`` (a reply, a bounce, an
    opt-out, S47); the caller commits. Returns how many ended.

    :param reason: ``replied``, ``bounced``, ``opted_out`` (or the :class:`EndReason`).
    """
    why = EndReason(reason)
    rows = session.execute(
        sa.select(Enrolment.id, Enrolment.sequence_id).where(
            Enrolment.address == address.strip().lower(),
            Enrolment.state != EnrolmentState.ENDED,
        )
    ).all()
    return sum(_end(session, row.id, row.sequence_id, why) for row in rows)


def opt_out(session: Session, party: Party) -> bool:
    """Record the recipient's own opt-out (S43, :func:`engage.opt_out.apply_opt_out`) and end
    their running enrolments with it (S47); commits. ``False`` when it was recorded before."""
    if not apply_opt_out(session, party):
        return False
    end_enrolments_for_address(session, party.address, EndReason.OPTED_OUT)
    session.commit()
    return True


def pause_enrolments_until(session: Session, address: str, until: datetime) -> int:
    """Pause the running enrolments of the recipient at ``address`` until ``until`` (an
    out-of-office absence, S42, S47); the caller commits. Returns how many were paused.

    The sweep resumes them once ``until`` has passed, at the recipient's next working time.
    An enrolment the rep paused stays paused; one already paused by an absence takes the later
    return.
    """
    address = address.strip().lower()
    paused = affected_rows(
        session.execute(
            sa.update(Enrolment)
            .where(Enrolment.address == address, Enrolment.state == EnrolmentState.ACTIVE)
            .values(state=EnrolmentState.PAUSED, paused_until=until)
            .execution_options(synchronize_session=False)
        )
    )
    paused += affected_rows(
        session.execute(
            sa.update(Enrolment)
            .where(
                Enrolment.address == address,
                Enrolment.state == EnrolmentState.PAUSED,
                Enrolment.paused_until.is_not(None),
                Enrolment.paused_until < until,
            )
            .values(paused_until=until)
            .execution_options(synchronize_session=False)
        )
    )
    return paused


def stop_on_reply(session: Session, party: Party) -> int:
    """A person replied (never an auto-reply): count the reply for the step whose email it
    answers, and end the recipient's running enrolments; the caller commits."""
    send = session.scalar(
        sa.select(SequenceSend).where(
            SequenceSend.email_id == party.email_id, SequenceSend.replied.is_(False)
        )
    )
    if send is not None:
        send.replied = True
        if send.step_id is not None:
            _bump(session, SequenceStep, send.step_id, "replied")
    return end_enrolments_for_address(session, party.address, EndReason.REPLIED)


def pause(session: Session, enrolment: Enrolment) -> bool:
    """The rep pauses an enrolment until they resume it; commits. ``False`` if not running."""
    done = affected_rows(
        session.execute(
            sa.update(Enrolment)
            .where(Enrolment.id == enrolment.id, Enrolment.state == EnrolmentState.ACTIVE)
            .values(state=EnrolmentState.PAUSED, paused_until=None)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    session.refresh(enrolment)
    return bool(done)


def resume(session: Session, enrolment: Enrolment, *, now: datetime | None = None) -> bool:
    """The rep resumes a paused enrolment: its step is due at the recipient's next working
    time (or when it was due, if later); commits. ``False`` if it was not paused."""
    if enrolment.state is not EnrolmentState.PAUSED:
        return False
    due = _due_again(enrolment, now or utcnow())
    done = affected_rows(
        session.execute(
            sa.update(Enrolment)
            .where(Enrolment.id == enrolment.id, Enrolment.state == EnrolmentState.PAUSED)
            .values(state=EnrolmentState.ACTIVE, paused_until=None, due_at=due)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    session.refresh(enrolment)
    return bool(done)


def end(session: Session, enrolment: Enrolment) -> bool:
    """The rep ends an enrolment; commits. ``False`` when it had ended already."""
    done = _end(session, enrolment.id, enrolment.sequence_id, EndReason.ENDED_BY_REP)
    session.commit()
    session.refresh(enrolment)
    return done


def _due_again(enrolment: Enrolment, now: datetime) -> datetime:
    """When a resumed enrolment's step is due: not before its old time, at a working time."""
    start = max(now, enrolment.due_at or now, enrolment.paused_until or now)
    record = current_engage.records.get(enrolment.record)
    zone, country = _clock_of(record, enrolment.owner_zone)
    return step_due(start, 0, zone=zone, country=country, hours=_hours())


# -- the sweep and the job: driving due steps from the database ---------------------------------


def _queued_key(enrolment_id: int) -> str:
    return f"engage:sequence:queued:{enrolment_id}"


def sweep_sequences(now: datetime) -> int:
    """The sequences' part of the periodic sweep. Returns how many enrolments it queued.

    Resumes enrolments whose absence is over, ends those whose email bounced, counts people's
    opens for the steps, and queues every due step that no job waits for.
    """
    session = current_engage.session
    try:
        _resume_after_absences(session, now)
        _settle_bounces(session)
        _count_opens(session)
        session.commit()
    except Exception:
        # The rest of the periodic sweep (and the due steps below) must not wait for this
        # bookkeeping; it is tried again at the next run.
        session.rollback()
        logger.exception("engage: the sequences' bookkeeping failed; the next sweep tries again")
    return queue_due(now)


def queue_due(now: datetime) -> int:
    """Queue the enrolments whose step is due, in batches, skipping those already queued.

    An enrolment counts as queued for :data:`QUEUED_MARK_SECONDS` (a mark in Redis): a lost
    job (a flushed Redis, a dead worker) is queued again by a later sweep, and a job that runs
    twice does each step once anyway (see :func:`advance`).
    """
    session = current_engage.session
    due = list(
        session.scalars(
            sa.select(Enrolment.id)
            .where(Enrolment.state == EnrolmentState.ACTIVE, Enrolment.due_at <= now)
            .order_by(Enrolment.due_at)
            .limit(MAX_DUE_PER_SWEEP)
        )
    )
    session.commit()  # end the read: nothing is held while the jobs are queued
    if not due:
        return 0
    redis = current_engage.redis
    pipe = redis.pipeline(transaction=False)
    for enrolment_id in due:
        pipe.set(_queued_key(enrolment_id), "1", ex=QUEUED_MARK_SECONDS, nx=True)
    fresh = [i for i, new in zip(due, pipe.execute(), strict=True) if new]
    for start in range(0, len(fresh), BATCH):
        queueing.enqueue(queueing.ADVANCE_SEQUENCES, fresh[start : start + BATCH])
    return len(fresh)


def advance(enrolment_ids: list[int]) -> int:
    """The job: do the due step of each enrolment (see the module's docstring). Returns how
    many steps were done."""
    done = 0
    ids = [int(i) for i in enrolment_ids]
    # The batch's enrolments, sequences and steps are read once, and not again after each
    # step's commit: what they say is only a guide, since each step is claimed with a
    # conditional UPDATE that checks the enrolment's row as it is then.
    plain = current_engage.db.session()
    expiring = plain.expire_on_commit
    plain.expire_on_commit = False
    try:
        session = current_engage.session
        batch = {
            e.id: e
            for e in session.scalars(
                sa.select(Enrolment)
                .where(Enrolment.id.in_(ids))
                .options(selectinload(Enrolment.sequence).selectinload(EmailSequence.steps))
                .execution_options(populate_existing=True)
            )
        }
        session.commit()
        for enrolment_id in ids:
            enrolment = batch.get(enrolment_id)
            if enrolment is not None and _advance_one(enrolment):
                done += 1
    finally:
        plain.expire_on_commit = expiring
        with contextlib.suppress(RedisError):
            current_engage.redis.delete(*[_queued_key(i) for i in ids])
    return done


def _advance_one(enrolment: Enrolment) -> bool:
    session = current_engage.session
    now = utcnow()
    if (
        enrolment.state is not EnrolmentState.ACTIVE
        or enrolment.due_at is None
        or enrolment.due_at > now
    ):
        return False
    steps = enrolment.sequence.steps
    position = enrolment.next_position
    if position >= len(steps):  # the manager removed the steps it was to do next
        _end(session, enrolment.id, enrolment.sequence_id, EndReason.FINISHED)
        session.commit()
        return False
    step = steps[position]
    record = current_engage.records.get(enrolment.record)
    zone, country = _clock_of(record, enrolment.owner_zone)
    hours = _hours()
    last = position + 1 >= len(steps)
    next_due = (
        None
        if last
        else step_due(now, steps[position + 1].wait_days, zone=zone, country=country, hours=hours)
    )
    prepared = _prepare_email(enrolment, step, record) if step.kind is not StepKind.CALL else None
    values: dict[str, Any] = {
        "next_position": position + 1,
        "due_at": next_due,
    }
    if last:
        values.update(state=EnrolmentState.ENDED, end_reason=EndReason.FINISHED, ended_at=now)
    if prepared is not None and enrolment.thread_message_id is None:
        values.update(thread_message_id=prepared.message_id, thread_subject=prepared.subject)
    # The claim: this step, still due, still running. Whoever changes the row first does it.
    claimed = affected_rows(
        session.execute(
            sa.update(Enrolment)
            .where(
                Enrolment.id == enrolment.id,
                Enrolment.state == EnrolmentState.ACTIVE,
                Enrolment.next_position == position,
                Enrolment.due_at <= now,
            )
            .values(values)
            .execution_options(synchronize_session=False)
        )
    )
    if not claimed:
        session.rollback()
        return False
    if step.kind is StepKind.AUTO_EMAIL and prepared is not None:
        held_until = _take_quota(session, enrolment, now, hours)
        if held_until is not None:
            session.rollback()
            session.execute(
                sa.update(Enrolment)
                .where(
                    Enrolment.id == enrolment.id,
                    Enrolment.state == EnrolmentState.ACTIVE,
                    Enrolment.next_position == position,
                )
                .values(due_at=step_due(held_until, 0, zone=zone, country=country, hours=hours))
                .execution_options(synchronize_session=False)
            )
            session.commit()
            return False
    send = SequenceSend(enrolment_id=enrolment.id, step_id=step.id, position=position)
    email: Email | None = None
    if prepared is not None:
        email = _email_for(enrolment, step, prepared, now, draft=step.kind is StepKind.MANUAL_EMAIL)
        session.add(email)
        session.flush()
        sync_email_activities(session, email)
        send.email_id = email.id
        send.party_id = email.recipients[0].id
    if step.kind is not StepKind.AUTO_EMAIL or email is None:
        card = _card_for(session, enrolment, step, email)
        send.card_id = card.id
    session.add(send)
    _bump(session, SequenceStep, step.id, "sent")
    if last:
        _bump(session, EmailSequence, enrolment.sequence_id, "finished")
    try:
        session.commit()
    except IntegrityError:  # the step's send row exists: another job did this step
        session.rollback()
        return False
    if email is not None and email.status is EmailStatus.SENDING:
        # Delivered in this same job: the email is due now, another trip through the queue
        # only adds lag. Should this job die, the delivery sweep takes the email over.
        delivery.deliver(email.id)
        # The copy's answer, as delivery left it on the row this job holds (a copy refused
        # after retries is found by the sweep instead).
        if any(p.delivery_state is DeliveryState.FAILED for p in email.recipients):
            end_enrolments_for_address(session, enrolment.address, EndReason.BOUNCED)
            session.commit()
    return True


@dataclass(frozen=True, slots=True)
class _Prepared:
    subject: str
    html: str
    message_id: str
    in_reply_to: str | None
    template_id: int | None


def _prepare_email(
    enrolment: Enrolment, step: SequenceStep, record: Record | None
) -> _Prepared | None:
    """The step's email written for this recipient with their own values; ``None`` when its
    template is gone or cannot be filled in (the rep then gets a card to write it)."""
    template = (
        current_engage.session.get(EmailTemplate, step.template_id) if step.template_id else None
    )
    if template is None:
        return None
    extra = dict(record.template_values) if record is not None else {}
    values = values_for(record, record, extra)
    try:
        subject = render_template_text(template.subject, values, html=False).text.strip()
        body = render_template_text(template.html_body, values, html=True).text
    except (TemplateBroken, TemplateRefused):
        return None
    in_reply_to = None
    if enrolment.sequence.thread_replies and enrolment.thread_message_id:
        in_reply_to = enrolment.thread_message_id
        subject = reply_subject(enrolment.thread_subject or subject)
    domain = (
        current_app.config["ENGAGE_MESSAGE_ID_DOMAIN"]
        or enrolment.owner_email.rpartition("@")[2]
        or "engage.invalid"
    )
    return _Prepared(
        subject=" ".join(subject.split())[:900],
        html=clean_html(body),
        message_id=new_message_id(domain),
        in_reply_to=in_reply_to,
        template_id=template.id,
    )


def _email_for(
    enrolment: Enrolment, step: SequenceStep, prepared: _Prepared, now: datetime, *, draft: bool
) -> Email:
    """The step's email: sending (an automatic step) or a draft for the rep (a manual one).

    Followed when engagement is on and the recipient allows it (S9, asked of the host now;
    delivery asks again as each copy is built).
    """
    ref = enrolment.record
    # With following off for everyone (S11, no public URL) the host need not be asked.
    followed = (
        follow_disabled_reason() is None
        and follow_status_of([(enrolment.address, ref)], wants_follow=True).followed
    )
    email = Email(
        owner_id=enrolment.owner_id,
        owner_team=enrolment.owner_team,
        status=EmailStatus.DRAFT if draft else EmailStatus.SENDING,
        subject=prepared.subject,
        html_body=prepared.html,
        text_body=html_to_text(prepared.html),
        followed=followed,
        message_id=prepared.message_id,
        in_reply_to=prepared.in_reply_to,
        template_id=prepared.template_id,
        submitted_at=None if draft else now,
        updated_at=now,
    )
    email.regarding = ref
    recipient = Party(
        role=PartyRole.TO,
        address=enrolment.address,
        name=enrolment.name,
        record=ref,
        position=1,
    )
    email.parties = [
        Party(
            role=PartyRole.FROM,
            address=enrolment.owner_email,
            name=enrolment.owner_name,
            position=0,
        ),
        recipient,
    ]
    if followed and not draft:
        recipient.token = new_token()
        email.links = [
            Link(position=n, url=url) for n, url in enumerate(web_links(email.html_body))
        ]
    return email


#: The card kinds of sequence steps (see :mod:`engage.cards`).
CARD_EMAIL = "sequence_email"
CARD_CALL = "sequence_call"


def _card_for(
    session: Session, enrolment: Enrolment, step: SequenceStep, email: Email | None
) -> Any:
    """The rep's card for a manual step: the prepared draft to send, or the call to make."""
    kind = CARD_CALL if step.kind is StepKind.CALL else CARD_EMAIL
    return create_card(
        session,
        owner_id=enrolment.owner_id,
        owner_team=enrolment.owner_team,
        kind=kind,
        priority="normal",
        # The names are data; what the card asks for is said by its kind, in the reader's
        # language (S45).
        title=f"{enrolment.name} · {enrolment.sequence.name}",
        body=step.notes,
        email_id=email.id if email is not None else None,
        regarding=enrolment.record,
    )


def _take_quota(
    session: Session, enrolment: Enrolment, now: datetime, hours: WorkingHours
) -> datetime | None:
    """Count one email against the rep's daily limit; ``None`` when it may go, else the time
    it may go at the earliest (the rep's next day, or the next slot of the spread)."""
    config = current_app.config
    limit = int(config["ENGAGE_SEQUENCE_DAILY_LIMIT"] or 0)
    if limit <= 0:
        return None
    zone = ZoneInfo(valid_zone(enrolment.owner_zone) or "UTC")
    day = now.astimezone(zone).date()
    gap = send_gap(limit, hours) if config["ENGAGE_SEQUENCE_SPREAD"] else timedelta(0)
    table = cast(sa.Table, SequenceQuota.__table__)
    key = {"owner_id": enrolment.owner_id, "day": day.isoformat()}
    dialect = session.get_bind().dialect.name
    if dialect in {"sqlite", "postgresql"}:
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        session.execute(insert(table).values(sent=0, **key).on_conflict_do_nothing())
    elif session.get(SequenceQuota, (key["owner_id"], key["day"])) is None:
        session.add(SequenceQuota(sent=0, **key))
        session.flush()
    took = affected_rows(
        session.execute(
            sa.update(table)
            .where(
                table.c.owner_id == key["owner_id"],
                table.c.day == key["day"],
                table.c.sent < limit,
                sa.or_(table.c.last_sent_at.is_(None), table.c.last_sent_at <= now - gap),
            )
            .values(sent=table.c.sent + 1, last_sent_at=now)
        )
    )
    if took:
        return None
    row = session.execute(
        sa.select(table.c.sent, table.c.last_sent_at).where(
            table.c.owner_id == key["owner_id"], table.c.day == key["day"]
        )
    ).one()
    if row.sent >= limit:
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    last = (
        row.last_sent_at.replace(tzinfo=UTC)
        if row.last_sent_at.tzinfo is None
        else row.last_sent_at
    )
    return cast(datetime, last) + gap


def _resume_after_absences(session: Session, now: datetime) -> None:
    back = list(
        session.scalars(
            sa.select(Enrolment).where(
                Enrolment.state == EnrolmentState.PAUSED,
                Enrolment.paused_until.is_not(None),
                Enrolment.paused_until <= now,
            )
        )
    )
    for enrolment in back:
        due = _due_again(enrolment, now)
        session.execute(
            sa.update(Enrolment)
            .where(Enrolment.id == enrolment.id, Enrolment.state == EnrolmentState.PAUSED)
            .values(state=EnrolmentState.ACTIVE, paused_until=None, due_at=due)
            .execution_options(synchronize_session=False)
        )


def _settle_bounces(session: Session) -> None:
    # Copies retried and then refused for good end their enrolments here (a refusal at the
    # first try ends them in the job that sent it).
    addresses = session.scalars(
        sa.select(Enrolment.address)
        .join(SequenceSend, SequenceSend.enrolment_id == Enrolment.id)
        .join(Party, Party.id == SequenceSend.party_id)
        .where(
            Enrolment.state != EnrolmentState.ENDED,
            Party.delivery_state == DeliveryState.FAILED,
        )
        .distinct()
    ).all()
    for address in addresses:
        end_enrolments_for_address(session, address, EndReason.BOUNCED)


def _count_opens(session: Session) -> None:
    # People's opens only: the running totals on the recipients count no machine (S14).
    opened = session.execute(
        sa.select(SequenceSend.id, SequenceSend.step_id)
        .join(Party, Party.id == SequenceSend.party_id)
        .where(SequenceSend.opened.is_(False), Party.opens > 0)
    ).all()
    for row in opened:
        marked = affected_rows(
            session.execute(
                sa.update(SequenceSend)
                .where(SequenceSend.id == row.id, SequenceSend.opened.is_(False))
                .values(opened=True)
                .execution_options(synchronize_session=False)
            )
        )
        if marked and row.step_id is not None:
            _bump(session, SequenceStep, row.step_id, "opened")


# -- what reps and managers read ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrolmentView:
    """One enrolment as a record's timeline shows it."""

    enrolment: Enrolment
    sequence_name: str
    step_count: int
    next_step: SequenceStep | None
    #: When the next step is due, in the reader's zone (``None`` when paused or ended).
    due_local: datetime | None
    paused_until_local: datetime | None


def enrolments_for(
    session: Session, user: EngageUser, ref: RecordRef, zone: str, *, limit: int = 20
) -> list[EnrolmentView]:
    """The enrolments of a record that ``user`` may see, running ones first, newest first."""
    rows = session.scalars(
        sa.select(Enrolment)
        .where(
            Enrolment.record_type == ref.type,
            Enrolment.record_id == ref.id,
            owned_by_visible(user, Enrolment.owner_id, Enrolment.owner_team),
        )
        .order_by(
            (Enrolment.state == EnrolmentState.ENDED).asc(),
            Enrolment.created_at.desc(),
            Enrolment.id.desc(),
        )
        .limit(limit)
        .options(selectinload(Enrolment.sequence).selectinload(EmailSequence.steps))
    ).all()
    tz = ZoneInfo(zone)
    views = []
    for row in rows:
        steps = row.sequence.steps
        running = row.state is not EnrolmentState.ENDED
        nxt = steps[row.next_position] if running and row.next_position < len(steps) else None
        views.append(
            EnrolmentView(
                enrolment=row,
                sequence_name=row.sequence.name,
                step_count=len(steps),
                next_step=nxt,
                due_local=row.due_at.astimezone(tz)
                if row.due_at and row.state is EnrolmentState.ACTIVE
                else None,
                paused_until_local=row.paused_until.astimezone(tz) if row.paused_until else None,
            )
        )
    return views


@dataclass(frozen=True, slots=True)
class Performance:
    """A sequence's figures (S48), from its counters: no enrolment or event is counted."""

    enrolled: int
    running: int
    ended: dict[str, int]
    steps: list[SequenceStep]


def performance(sequence: EmailSequence) -> Performance:
    """What the sequence's page shows: per step sent, people's opens and replies, and where
    the enrolments ended."""
    ended = {
        reason.value: int(getattr(sequence, column)) for reason, column in _END_COUNTERS.items()
    }
    return Performance(
        enrolled=sequence.enrolled,
        running=max(0, sequence.enrolled - sum(ended.values())),
        ended=ended,
        steps=list(sequence.steps),
    )
