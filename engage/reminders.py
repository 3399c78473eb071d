"""Follow-up reminders (SPEC S25–S28): "remind me if Ada hasn't replied by Tuesday 09:00".

A reminder belongs to one email. Set in the compose panel it is kept with the draft and
becomes active when the email is sent (or scheduled); on a sent or scheduled email's page it
can be set, changed or removed directly.

Like scheduled delivery (:mod:`engage.send_later`), RQ's scheduler is the clock and the
database the truth: the job carries the time it was scheduled for and does nothing unless the
reminder is still pending for exactly that time, so a changed or removed reminder never fires
at its old time. Firing or resolving is one conditional UPDATE, so two jobs for the same
reminder (a lost job requeued by the sweep, say) act once.

Conditions are judged on **human** events only: the recipients' running totals
(:attr:`Party.opens`, :attr:`Party.replied_at`) never count machine opens or auto-replies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import queueing
from .absences import absences_of
from .cards import create_card
from .content import parse_addresses
from .context import current_engage
from .emails import DraftInput, ReminderInput
from .i18n import format_local, read, stored
from .i18n import gettext as _
from .local_time import HORIZON
from .models import (
    REMINDER_FIRED,
    REMINDER_PENDING,
    REMINDER_RESOLVED,
    Card,
    Email,
    EmailStatus,
    EventKind,
    Party,
    Reminder,
    TrackingEvent,
    affected_rows,
    utcnow,
)
from .records import EngageUser

NO_REPLY = "no_reply"
NOT_OPENED = "not_opened"
#: *If no link is clicked by* (SPEC S41).
NO_CLICK = "no_click"
#: *If the attachment is not opened by*: one followed file, or any (SPEC S41).
FILE_NOT_OPENED = "file_not_opened"
ANYWAY = "anyway"
#: The conditions, in the order the dialog offers them.
CONDITIONS = (NO_REPLY, NOT_OPENED, NO_CLICK, FILE_NOT_OPENED, ANYWAY)
#: Conditions that need a followed email: only then are opens, clicks, files and replies watched.
FOLLOWED_ONLY = frozenset({NO_REPLY, NOT_OPENED, NO_CLICK, FILE_NOT_OPENED})

PENDING = REMINDER_PENDING
FIRED = REMINDER_FIRED
RESOLVED = REMINDER_RESOLVED

#: How late a pending reminder may be before the sweep assumes its job is lost.
SWEEP_GRACE = timedelta(seconds=60)


# -- rules: plain functions over plain values ------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """What a recipient did, as far as the condition is concerned (human events only)."""

    name: str
    opens: int = 0
    first_open_at: datetime | None = None
    replied_at: datetime | None = None
    address: str = ""
    #: Their first human click on a link of the email (S41).
    first_click_at: datetime | None = None
    #: Their first human open of each followed file, by attachment id (S41).
    file_opened_at: Mapping[int, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The condition judged at the reminder's time: whether it holds, and what happened."""

    holds: bool
    what: str
    met_at: datetime | None = None


def first_name(name: str, address: str = "") -> str:
    """How a recipient is called in a summary: the first word of the name, else the address."""
    return name.split()[0] if name.strip() else address


def _replied_at(facts: RecipientFacts) -> float:
    return facts.replied_at.timestamp() if facts.replied_at else float("inf")


def _first_open_at(facts: RecipientFacts) -> float:
    return facts.first_open_at.timestamp() if facts.first_open_at else float("inf")


def _first_click_at(facts: RecipientFacts) -> float:
    return facts.first_click_at.timestamp() if facts.first_click_at else float("inf")


def _first_file_open(facts: RecipientFacts, attachment_id: int | None) -> datetime | None:
    if attachment_id is not None:
        return facts.file_opened_at.get(attachment_id)
    return min(facts.file_opened_at.values(), default=None)


def evaluate(
    condition: str,
    recipients: Sequence[RecipientFacts],
    subject: str,
    *,
    attachment_id: int | None = None,
    attachment_name: str = "",
) -> Verdict:
    """Judge ``condition`` on the recipients' human events.

    *No reply* holds while no recipient has replied, *not opened* while none has opened the
    email, *no click* while none has clicked a link, *file not opened* while none has opened
    the followed file ``attachment_id`` (any followed file when ``None``), *anyway* always.
    Only the recipients given count: pass one to watch one (S41). When it does not hold,
    ``what`` says who did what first and ``met_at`` when. ``what`` is a stored message
    (:func:`engage.i18n.stored`), read in the reader's language when shown.
    """
    subject = subject[:120] if subject else stored("subject.none")
    if condition == NO_CLICK:
        clicked = [r for r in recipients if r.first_click_at is not None]
        if clicked:
            clicker = min(clicked, key=_first_click_at)
            return Verdict(
                False, stored("reminder.clicked", name=clicker.name), clicker.first_click_at
            )
        return Verdict(True, stored("reminder.no_click", subject=subject))
    if condition == FILE_NOT_OPENED:
        file_opens = [
            (r, at) for r in recipients if (at := _first_file_open(r, attachment_id)) is not None
        ]
        if file_opens:
            reader, at = min(file_opens, key=lambda pair: pair[1].timestamp())
            what = (
                stored("reminder.file_opened", name=reader.name, file=attachment_name)
                if attachment_name
                else stored("reminder.some_file_opened", name=reader.name)
            )
            return Verdict(False, what, at)
        if attachment_name:
            return Verdict(True, stored("reminder.file_not_opened", file=attachment_name))
        return Verdict(True, stored("reminder.no_file_opened", subject=subject))
    if condition == NO_REPLY:
        replied = [r for r in recipients if r.replied_at is not None]
        if replied:
            first = min(replied, key=_replied_at)
            return Verdict(False, stored("reminder.replied", name=first.name), first.replied_at)
        return Verdict(True, stored("reminder.no_reply", subject=subject))
    if condition == NOT_OPENED:
        opened = [r for r in recipients if r.opens > 0]
        if opened:
            first = min(opened, key=_first_open_at)
            return Verdict(False, stored("reminder.opened", name=first.name), first.first_open_at)
        return Verdict(True, stored("reminder.not_opened", subject=subject))
    return Verdict(True, stored("reminder.anyway", subject=subject))


def check(
    reminder: ReminderInput,
    *,
    followed: bool,
    send_at: datetime | None,
    now: datetime,
    must_be_future: bool = True,
    files: Sequence[int] | None = None,
    recipients: Sequence[str] | None = None,
) -> dict[str, str]:
    """What is wrong with ``reminder``, by form field; empty when it can be kept.

    :param files: the email's followed attachments, when known: a file reminder needs one.
    :param recipients: the email's recipients' addresses, when known: a watched one must be
        among them.
    """
    errors: dict[str, str] = {}
    if not reminder.title.strip():
        errors["reminder_title"] = _("Give the reminder a title: it is what you will read.")
    elif len(reminder.title) > 300:
        errors["reminder_title"] = _("Keep the title under 300 characters.")
    if reminder.condition not in CONDITIONS:
        errors["reminder_condition"] = _("Choose when to be reminded.")
    elif reminder.condition in FOLLOWED_ONLY and not followed:
        errors["reminder_condition"] = _(
            "Replies and opens are only watched on a followed email: turn Follow on, "
            "or choose “Remind me anyway at”."
        )
    elif reminder.condition == FILE_NOT_OPENED and files is not None and not files:
        errors["reminder_condition"] = _(
            "This email has no followed attachment: attach a file and follow it first."
        )
    elif (
        reminder.condition == FILE_NOT_OPENED
        and files is not None
        and reminder.attachment_id is not None
        and reminder.attachment_id not in files
    ):
        errors["reminder_condition"] = _("Choose one of the email's followed attachments.")
    if (
        recipients is not None
        and reminder.recipient is not None
        and reminder.recipient.lower() not in {r.lower() for r in recipients}
    ):
        errors["reminder_condition"] = _("Choose one of the email's recipients, or anyone.")
    if must_be_future and reminder.remind_at <= now:
        errors["reminder_at"] = _("That time has passed; choose a time in the future.")
    elif reminder.remind_at > now + HORIZON:
        errors["reminder_at"] = _("That is too far ahead: choose a time within the next ten years.")
    elif send_at is not None and reminder.remind_at <= send_at:
        errors["reminder_at"] = _(
            "Choose a time after the email goes out (it is scheduled for later)."
        )
    return errors


def when_text(moment: datetime, zone: str, now: datetime) -> str:
    """A time in ``zone`` as the rep reads it (see :func:`engage.i18n.format_local`)."""
    return format_local(moment, zone, now=now)


def _if_phrase(condition: str, who: str | None, file: str = "") -> str:
    if condition == NO_CLICK:
        return (
            _("if %(who)s hasn't clicked a link", who=who)
            if who
            else _("if nobody has clicked a link")
        )
    if condition == FILE_NOT_OPENED and file:
        return (
            _("if %(who)s hasn't opened %(file)s", who=who, file=file)
            if who
            else _("if nobody has opened %(file)s", file=file)
        )
    if condition == FILE_NOT_OPENED:
        return (
            _("if %(who)s hasn't opened an attachment", who=who)
            if who
            else _("if nobody has opened an attachment")
        )
    if condition == NO_REPLY:
        return _("if %(who)s hasn't replied", who=who) if who else _("if nobody has replied")
    if condition == NOT_OPENED:
        return _("if %(who)s hasn't opened it", who=who) if who else _("if nobody has opened it")
    return ""


def summary(
    *,
    condition: str,
    remind_at: datetime,
    state: str,
    who: str | None,
    zone: str,
    now: datetime,
    fired_at: datetime | None = None,
    resolved_reason: str | None = None,
    met_at: datetime | None = None,
    file: str = "",
) -> str:
    """The one-line summary shown beside the blue **Set reminder** indicator.

    ``who`` is the single recipient's (or the watched one's) first name, or ``None`` for
    several recipients; ``file`` the watched attachment's name.
    """
    at = when_text(remind_at, zone, now)
    if state == FIRED:
        return _(
            "Reminder fired %(when)s: see the card in your assistant.",
            when=when_text(fired_at or remind_at, zone, now),
        )
    if state == RESOLVED:
        reason = read(resolved_reason)
        if met_at is not None:
            reason = _("%(what)s (%(when)s)", what=reason, when=when_text(met_at, zone, now))
        return _("Resolved itself, no reminder needed: %(reason)s.", reason=reason)
    phrase = _if_phrase(condition, who, file)
    if remind_at <= now:
        return _("Due %(when)s; checking now.", when=at)
    return (
        _("Remind me %(when)s %(phrase)s", when=at, phrase=phrase)
        if phrase
        else _("Remind me %(when)s", when=at)
    )


def condition_options(followed: bool) -> list[tuple[str, str]]:
    """The conditions the dialog offers: reply and open only for a followed email."""
    options = []
    if followed:
        options += [
            (NO_REPLY, _("If I don't receive a reply by")),
            (NOT_OPENED, _("If the email is not opened by")),
            (NO_CLICK, _("If no link is clicked by")),
            (FILE_NOT_OPENED, _("If the attachment is not opened by")),
        ]
    options.append((ANYWAY, _("Remind me anyway at")))
    return options


# -- the compose panel ----------------------------------------------------------------------


def check_draft(
    draft: DraftInput,
    *,
    followed: bool,
    sending: bool,
    files: Sequence[int] | None = None,
) -> dict[str, str]:
    """Check the draft's reminder again on Save and Send (Follow, the send time, the files or
    the recipients may have changed since OK); only Send insists on a future time.

    :param files: the draft's followed attachments, when it has been saved.
    """
    if draft.reminder is None:
        return {}
    recipients = [
        a.address
        for field_name in ("to", "cc", "bcc")
        for a in parse_addresses(getattr(draft, field_name)).valid
    ]
    return check(
        draft.reminder,
        followed=followed,
        send_at=draft.send_at,
        now=utcnow(),
        must_be_future=sending,
        files=files,
        recipients=recipients,
    )


def reminder_of(session: Session, email_id: int) -> Reminder | None:
    """The email's reminder, if it has one."""
    return session.scalar(sa.select(Reminder).where(Reminder.email_id == email_id))


def activate(email: Email) -> None:
    """Schedule the job of the email's pending reminder, once the email is sent or scheduled."""
    row = reminder_of(current_engage.session, email.id)
    if row is not None and row.state == PENDING and email.status is not EmailStatus.DRAFT:
        schedule_reminder(row)


# -- the job ---------------------------------------------------------------------------------


def _job_id(row: Reminder) -> str:
    # One job id per reminder and due time: a changed reminder gets a new job, and the old
    # one can be found (and cancelled) by its id.
    return f"engage-reminder-{row.id}-{int(row.remind_at.timestamp())}"


def schedule_reminder(row: Reminder) -> None:
    """Put the reminder's job on RQ's scheduler for its ``remind_at`` (already committed)."""
    queueing.enqueue_at(
        row.remind_at,
        queueing.FIRE_REMINDER,
        row.id,
        row.remind_at.isoformat(),
        job_id=_job_id(row),
    )


def _cancel_job(row: Reminder) -> None:
    # Best effort: the old job would find the reminder changed and do nothing anyway.
    queueing.cancel(_job_id(row))


def _facts(email: Email, only: str | None = None) -> list[RecipientFacts]:
    """What the email's recipients did (human events), or one recipient's when ``only``."""
    session = current_engage.session
    clicks: dict[int, datetime] = {}
    files: dict[int, dict[int, datetime]] = {}
    for party_id, kind, attachment_id, first in session.execute(
        sa.select(
            TrackingEvent.party_id,
            TrackingEvent.kind,
            TrackingEvent.attachment_id,
            sa.func.min(TrackingEvent.occurred_at),
        )
        .where(
            TrackingEvent.email_id == email.id,
            TrackingEvent.machine.is_(False),
            TrackingEvent.kind.in_([EventKind.CLICK, EventKind.ATTACHMENT_OPEN]),
        )
        .group_by(TrackingEvent.party_id, TrackingEvent.kind, TrackingEvent.attachment_id)
    ):
        if kind is EventKind.CLICK:
            clicks[party_id] = min(first, clicks.get(party_id, first))
        elif attachment_id is not None:
            files.setdefault(party_id, {})[attachment_id] = first
    return [
        RecipientFacts(
            name=_display_name(p),
            opens=p.opens,
            first_open_at=p.first_open_at,
            replied_at=p.replied_at,
            address=p.address,
            first_click_at=clicks.get(p.id),
            file_opened_at=files.get(p.id, {}),
        )
        for p in email.recipients
        if only is None or p.address.lower() == only.lower()
    ]


def _verdict(row: Reminder, email: Email) -> Verdict:
    """The reminder's condition judged now, on the recipients (or the one) it watches."""
    name = ""
    if row.attachment_id is not None:
        name = next((a.filename for a in email.attachments if a.id == row.attachment_id), "")
    return evaluate(
        row.condition,
        _facts(email, row.recipient),
        email.subject,
        attachment_id=row.attachment_id,
        attachment_name=name,
    )


def resolve_met(session: Session, email_ids: Sequence[int] | set[int]) -> int:
    """Resolve at once the pending reminders whose condition these emails just met (S28).

    Called by the event worker after human opens and by the reply intake after a human reply,
    so that the summary says *resolved itself* as soon as Ada replies, not only when the
    reminder's time comes. The reminder's job, if it still runs, finds it done and does
    nothing. Returns how many were resolved; the caller commits.
    """
    if not email_ids:
        return 0
    rows = session.scalars(
        sa.select(Reminder).where(
            Reminder.email_id.in_(sorted(email_ids)),
            Reminder.state == PENDING,
            Reminder.condition.in_(sorted(FOLLOWED_ONLY)),
        )
    ).all()
    resolved = 0
    for row in rows:
        verdict = _verdict(row, row.email)
        if verdict.holds:
            continue
        moved = affected_rows(
            session.execute(
                sa.update(Reminder)
                .where(Reminder.id == row.id, Reminder.state == PENDING)
                .values(
                    state=RESOLVED,
                    fired_at=utcnow(),
                    resolved_reason=verdict.what,
                    met_at=verdict.met_at,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if moved:
            resolved += 1
            _cancel_job(row)
    return resolved


def reopen_unmet(session: Session, email_ids: Sequence[int] | set[int]) -> list[Reminder]:
    """Put back to pending the reminders that an event resolved which later evidence showed to
    be a machine's (an open relabelled, SPEC S14): their condition holds again.

    Only reminders resolved ahead of their time (no card fired) whose condition holds now are
    reopened. Returns them; the caller commits, then schedules each with
    :func:`schedule_reminder` (the sweep puts back an overdue one anyway).
    """
    if not email_ids:
        return []
    rows = session.scalars(
        sa.select(Reminder).where(
            Reminder.email_id.in_(sorted(email_ids)),
            Reminder.state == RESOLVED,
            Reminder.condition.in_(sorted(FOLLOWED_ONLY)),
        )
    ).all()
    reopened = []
    for row in rows:
        if not _verdict(row, row.email).holds:
            continue
        row.state, row.fired_at, row.resolved_reason, row.met_at = PENDING, None, None, None
        reopened.append(row)
    return reopened


def _lateness(late: timedelta) -> str:
    minutes = round(late.total_seconds() / 60)
    if minutes >= 1:
        return stored("minutes", num=minutes)
    return stored("seconds", num=int(late.total_seconds()))


def _stored_pair(first: str, second: str) -> str:
    return stored("two", first=first, second=second)


def _display_name(party: Party) -> str:
    # The name written in the header, else the CRM record's, else the address.
    if party.name:
        return party.name
    record = current_engage.records.get(party.record) if party.record else None
    return record.name if record is not None and record.name else party.address


def fire_reminder(reminder_id: int, due: str, requeued: bool = False) -> str:
    """The job that runs at a reminder's time: fire it (a card) or let it resolve itself.

    Returns ``fired``, ``resolved``, ``stale`` (changed, removed or done meanwhile, or the
    email is still a draft) or ``early`` (the clock ran ahead; the job is put back).
    ``requeued`` marks a job the sweep queued again after the original was lost.
    """
    session = current_engage.session
    due_at = datetime.fromisoformat(due)
    row = session.get(Reminder, reminder_id)
    if row is None or row.state != PENDING or row.remind_at != due_at:
        return "stale"
    email = session.get(Email, row.email_id)
    if email is None or email.status is EmailStatus.DRAFT:
        return "stale"
    early = (due_at - utcnow()).total_seconds()
    if early > 1:
        schedule_reminder(row)
        return "early"
    if early > 0:
        time.sleep(early)  # never judge before the time the rep chose
    verdict = _verdict(row, email)
    now = utcnow()
    moved = affected_rows(
        session.execute(
            sa.update(Reminder)
            .where(
                Reminder.id == reminder_id,
                Reminder.state == PENDING,
                Reminder.remind_at == due_at,
            )
            .values(
                state=FIRED if verdict.holds else RESOLVED,
                fired_at=now,
                resolved_reason=None if verdict.holds else verdict.what,
                met_at=None if verdict.holds else verdict.met_at,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if not moved:
        session.rollback()
        return "stale"
    if not verdict.holds:
        session.commit()
        return "resolved"
    body = verdict.what
    away = absences_of(session, _watched(row, email), now)
    if away:
        # Due while they are away (S42): the card says so and offers to wait for them.
        body = _stored_pair(
            body,
            stored(
                "reminder.away",
                who=", ".join(sorted(away)),
                until=max(away.values()).isoformat(),
            ),
        )
    late = now - due_at
    if requeued and late > timedelta(seconds=5):
        body = _stored_pair(body, stored("reminder.late", late=_lateness(late)))
    create_card(
        session,
        owner_id=row.owner_id,
        owner_team=email.owner_team,
        kind="reminder",
        priority="high",
        title=row.title,
        body=body,
        email_id=email.id,
        regarding=email.regarding,
        reminder_id=row.id,
    )
    session.commit()
    return "fired"


def _watched(row: Reminder, email: Email) -> list[str]:
    """The addresses whose events the reminder watches: its one recipient, else everyone."""
    return [row.recipient] if row.recipient else [p.address for p in email.recipients]


def back_from_absence(session: Session, card: Card, now: datetime | None = None) -> datetime | None:
    """When the recipients a reminder card is about are back, if it fired while they were away
    (an out-of-office reply, S42) and they are not back yet; else ``None``."""
    if card.reminder_id is None or card.email is None:
        return None
    row = session.get(Reminder, card.reminder_id)
    if row is None:
        return None
    away = absences_of(session, _watched(row, card.email), card.created_at)
    back = max(away.values(), default=None)
    return back if back is not None and back > (now or utcnow()) else None


def remind_when_back(session: Session, card: Card) -> Reminder | None:
    """*Remind me when they are back*: the card's reminder is due again at their return, with
    its condition (a reply on their first morning still settles it); the card goes. Commits.

    Returns ``None`` when there is nothing to wait for (they are back, or the reminder is gone).
    """
    back = back_from_absence(session, card)
    row = session.get(Reminder, card.reminder_id) if card.reminder_id is not None else None
    if back is None or row is None:
        return None
    _cancel_job(row)
    row.reset(
        row.title,
        row.condition,
        back,
        recipient=row.recipient,
        attachment_id=row.attachment_id,
    )
    card.dismissed_at = utcnow()
    session.commit()
    schedule_reminder(row)
    return row


def sweep_reminders(now: datetime | None = None) -> int:
    """Queue again the active reminders whose time passed more than a grace period ago."""
    cutoff = (now or utcnow()) - SWEEP_GRACE
    overdue = list(
        current_engage.session.scalars(
            sa.select(Reminder)
            .join(Email, Email.id == Reminder.email_id)
            .where(
                Reminder.state == PENDING,
                Reminder.remind_at < cutoff,
                Email.status != EmailStatus.DRAFT,
            )
        )
    )
    for row in overdue:
        queueing.enqueue(queueing.FIRE_REMINDER, row.id, row.remind_at.isoformat(), True)
    return len(overdue)


# -- what the templates show ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReminderPanel:
    """What the Set reminder section shows."""

    reminder: ReminderInput | None
    state: str
    summary: str
    zone: str
    options: list[tuple[str, str]]
    title_prefill: str
    condition_prefill: str
    at_prefill: str
    #: The form's action on an email's page; ``None`` inside the compose form.
    action_url: str | None = None
    #: Whose events may be watched (address, label), and the followed files (id, name) (S41).
    recipients: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[int, str]] = field(default_factory=list)
    recipient_prefill: str = ""
    attachment_prefill: str = ""


def _who(names: Sequence[str]) -> str | None:
    return names[0] if len(names) == 1 else None


def compose_panel(
    draft: DraftInput,
    *,
    followed: bool,
    zone: str,
    files: Sequence[tuple[int, str]] = (),
) -> ReminderPanel:
    """The Set reminder section of the compose panel; ``files`` are its followed attachments."""
    parsed = [
        (a.address, first_name(a.name, a.address))
        for field_name in ("to", "cc", "bcc")
        for a in parse_addresses(getattr(draft, field_name)).valid
    ]
    return _panel(
        draft.reminder,
        state=PENDING,
        recipients=parsed,
        zone=zone,
        followed=followed,
        subject=draft.subject,
        files=list(files),
    )


def _panel(
    reminder: ReminderInput | None,
    *,
    state: str,
    recipients: list[tuple[str, str]],
    zone: str,
    followed: bool,
    subject: str,
    row: Reminder | None = None,
    action_url: str | None = None,
    files: list[tuple[int, str]] | None = None,
) -> ReminderPanel:
    now = utcnow()
    text = ""
    files = files or []
    if reminder is not None:
        watched = [
            label
            for address, label in recipients
            if reminder.recipient is not None and address.lower() == reminder.recipient.lower()
        ]
        text = summary(
            condition=reminder.condition,
            remind_at=reminder.remind_at,
            state=state,
            who=watched[0] if watched else _who([label for _a, label in recipients]),
            zone=zone,
            now=now,
            fired_at=row.fired_at if row else None,
            resolved_reason=row.resolved_reason if row else None,
            met_at=row.met_at if row else None,
            file=next((name for i, name in files if i == reminder.attachment_id), ""),
        )
    default_at = ""
    if reminder is not None:
        default_at = reminder.remind_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")
    return ReminderPanel(
        reminder=reminder,
        state=state,
        summary=text,
        zone=zone,
        options=condition_options(followed),
        title_prefill=reminder.title
        if reminder
        else _("Follow up: %(subject)s", subject=subject.strip() or _("(no subject)")),
        condition_prefill=reminder.condition if reminder else (NO_REPLY if followed else ANYWAY),
        at_prefill=default_at,
        action_url=action_url,
        recipients=recipients,
        files=files,
        recipient_prefill=(reminder.recipient or "") if reminder else "",
        attachment_prefill=(
            str(reminder.attachment_id) if reminder and reminder.attachment_id else ""
        ),
    )


def email_panel(
    email: Email, user: EngageUser | None, *, zone: str, action_url: str
) -> ReminderPanel | None:
    """The Set reminder section of a sent or scheduled email's page, for its owner only."""
    if user is None or user.id != email.owner_id or email.status is EmailStatus.DRAFT:
        return None
    row = reminder_of(current_engage.session, email.id)
    reminder = (
        ReminderInput(row.title, row.condition, row.remind_at, row.recipient, row.attachment_id)
        if row
        else None
    )
    return _panel(
        reminder,
        state=row.state if row else PENDING,
        recipients=[(p.address, first_name(p.name, p.address)) for p in email.recipients],
        zone=zone,
        followed=email.followed,
        subject=email.subject,
        row=row,
        action_url=action_url,
        files=followed_files(email),
    )


def followed_files(email: Email) -> list[tuple[int, str]]:
    """The email's followed attachments, (id, file name), which a file reminder can watch."""
    return [(a.id, a.filename) for a in email.attachments if a.followed]


# -- a sent or scheduled email's reminder ------------------------------------------------------


def remove_reminder(session: Session, email: Email) -> None:
    """Remove the email's reminder, if it has one, and commit."""
    row = reminder_of(session, email.id)
    if row is not None:
        _cancel_job(row)
        session.delete(row)
        session.commit()


def set_reminder(session: Session, email: Email, reminder: ReminderInput) -> Reminder:
    """Set or change the reminder of a sent or scheduled email, commit, and schedule it."""
    row = reminder_of(session, email.id)
    if row is None:
        row = Reminder(email_id=email.id, owner_id=email.owner_id)
        session.add(row)
    else:
        _cancel_job(row)
    row.reset(
        reminder.title,
        reminder.condition,
        reminder.remind_at,
        recipient=reminder.recipient,
        attachment_id=reminder.attachment_id,
    )
    session.commit()
    schedule_reminder(row)
    return row
