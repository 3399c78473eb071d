"""Saving drafts and sending them: the steps behind the compose panel's Save and Send.

The views hand over what the form carried as a :class:`DraftInput`; :func:`check` says what is
wrong with it (field by field, in the user's words), :func:`save_draft` stores it and
:func:`submit` turns a draft into a queued email.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from .content import Address, clean_html, html_to_text, parse_addresses, subject_error, text_to_html
from .context import current_engage
from .delivery import cancel_scheduled_job, enqueue_delivery, prepare_resend, schedule_delivery
from .follow import FollowStatus, follow_status
from .i18n import gettext as _
from .i18n import locale_tag, ngettext
from .models import (
    Email,
    EmailStatus,
    Link,
    Party,
    PartyRole,
    Reminder,
    new_message_id,
    utcnow,
)
from .organisation import engagement_enabled
from .recipients import recipient_preference, resolve
from .records import EngageUser, RecordRef
from .timeline import sync_email_activities
from .tracking import new_token, web_links

ADDRESS_FIELDS = (("to", PartyRole.TO), ("cc", PartyRole.CC), ("bcc", PartyRole.BCC))


def follow_disabled_reason() -> str | None:
    """Why nobody can follow emails right now, or ``None`` when following is available."""
    if not engagement_enabled():
        return _("Email engagement is turned off for your organisation by an administrator.")
    if not current_app.config["ENGAGE_PUBLIC_URL"]:
        return _(
            "Following needs the app's public address (ENGAGE_PUBLIC_URL); "
            "ask your administrator to set it."
        )
    return None


def follow_status_of(
    recipients: list[tuple[str, RecordRef | None]], *, wants_follow: bool, bulk: bool = False
) -> FollowStatus:
    """The follow status of a message to these recipients (address, record or ``None``)."""
    return follow_status(
        engagement_enabled=follow_disabled_reason() is None,
        wants_follow=wants_follow,
        recipients=[recipient_preference(address, ref) for address, ref in recipients],
        bulk=bulk,
    )


def draft_recipients(draft: DraftInput) -> list[tuple[str, RecordRef | None]]:
    """The valid recipients of a draft, resolved to records as saving would."""
    resolved = []
    for name, _role in ADDRESS_FIELDS:
        for address in parse_addresses(getattr(draft, name)).valid:
            resolved.append((address.address, resolve(address, draft.picked).record))
    return resolved


@dataclass(frozen=True, slots=True)
class ReminderInput:
    """A follow-up reminder as the compose panel carries it, before it is stored (S25)."""

    title: str
    condition: str
    remind_at: datetime
    #: Whose events count: one recipient's address, or ``None`` for anyone (SPEC S41).
    recipient: str | None = None
    #: For *If the attachment is not opened by*: the followed file, or ``None`` for any.
    attachment_id: int | None = None


def reminder_input_of(email: Email) -> ReminderInput | None:
    """The reminder kept with a stored email, as the compose form carries it."""
    row = current_engage.session.scalar(sa.select(Reminder).where(Reminder.email_id == email.id))
    if row is None:
        return None
    return ReminderInput(row.title, row.condition, row.remind_at, row.recipient, row.attachment_id)


@dataclass
class DraftInput:
    """What the compose form carried, before any checking.

    :param body_format: ``html`` from the rich editor, ``text`` from the plain textarea.
    :param picked: records chosen in the typeahead, by the address they were picked with.
    """

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    body_format: str = "html"
    regarding: RecordRef | None = None
    picked: dict[str, RecordRef] = field(default_factory=dict)
    follow: bool = True
    send_at: datetime | None = None
    #: A follow-up reminder set with OK (SPEC S25), kept with the draft on Save.
    reminder: ReminderInput | None = None
    #: The template applied with Insert template (SPEC S30), for its performance (S31).
    template_id: int | None = None
    #: The form's one-time key (see :attr:`engage.models.Email.submission_key`).
    submission_key: str | None = None

    @classmethod
    def from_email(cls, email: Email) -> DraftInput:
        """The form's values for a stored draft, to reopen it."""

        def joined(role: PartyRole) -> str:
            return ", ".join(_written(p) for p in email.parties_in(role))

        return cls(
            to=joined(PartyRole.TO),
            cc=joined(PartyRole.CC),
            bcc=joined(PartyRole.BCC),
            subject=email.subject,
            body=email.html_body,
            body_format="html",
            regarding=email.regarding,
            picked={p.address.lower(): p.record for p in email.recipients if p.record},
            follow=email.followed,
            send_at=email.scheduled_at,
            reminder=reminder_input_of(email),
            template_id=email.template_id,
            submission_key=email.submission_key,
        )

    def html(self) -> str:
        """The body as sanitised HTML, whichever editor wrote it."""
        source = self.body if self.body_format == "html" else text_to_html(self.body)
        return clean_html(source)


def _written(party: Party) -> str:
    return str(Address(party.address, party.name))


def check(draft: DraftInput, *, sending: bool) -> dict[str, str]:
    """What is wrong with ``draft``, by form field; empty when it can be saved (or sent).

    Saving needs readable addresses, a one-line subject and a body within the size limit.
    Sending also needs at least one recipient.
    """
    errors: dict[str, str] = {}
    count = 0
    for name, _role in ADDRESS_FIELDS:
        parsed = parse_addresses(getattr(draft, name))
        count += len(parsed.valid)
        if parsed.invalid:
            errors[name] = _(
                "Not a valid email address: %(entries)s", entries=", ".join(parsed.invalid)
            )
    limit = int(current_app.config["ENGAGE_MAX_RECIPIENTS"])
    if count > limit:
        errors.setdefault(
            "to",
            ngettext(
                "An email can have at most %(num)d recipient; this one has %(count)d. "
                "Remove some, or write to a selection of records with bulk email.",
                "An email can have at most %(num)d recipients; this one has %(count)d. "
                "Remove some, or write to a selection of records with bulk email.",
                limit,
                count=count,
            ),
        )
    if sending and count == 0 and not any(e in errors for e in ("to", "cc", "bcc")):
        errors["to"] = _("Add at least one recipient to send. You can still save the draft.")
    problem = subject_error(draft.subject)
    if problem == "line break":
        errors["subject"] = _("The subject must be one line: remove the line break.")
    elif problem == "control character":
        errors["subject"] = _(
            "The subject holds an invisible control character that email cannot carry: "
            "retype the subject."
        )
    elif problem:
        errors["subject"] = _("The subject is too long.")
    limit_kb = int(current_app.config["ENGAGE_MAX_BODY_KB"])
    if len(draft.body.encode("utf-8")) > limit_kb * 1024:
        errors["body"] = _(
            "The body is larger than %(limit)s KB. Shorten it, or attach long content as a file.",
            limit=limit_kb,
        )
    return errors


def save_draft(session: Session, user: EngageUser, draft: DraftInput, email: Email | None) -> Email:
    """Store ``draft`` as a new or updated draft owned by ``user`` and commit.

    The caller has checked it with :func:`check`; only drafts can be changed.
    """
    if email is None:
        email = Email(
            owner_id=user.id,
            owner_team=user.team,
            status=EmailStatus.DRAFT,
            submission_key=draft.submission_key,
        )
        session.add(email)
    if email.status is not EmailStatus.DRAFT:
        raise ValueError("only drafts can be changed")
    email.subject = draft.subject.strip()
    email.html_body = draft.html()
    email.text_body = html_to_text(email.html_body)
    email.regarding = draft.regarding
    email.followed = draft.follow  # the sender's wish; settled when the email is sent
    email.scheduled_at = draft.send_at  # a delay chosen in Send later, kept with the draft
    email.template_id = draft.template_id
    email.language = locale_tag()  # what engage adds to the message speaks the sender's language
    email.updated_at = utcnow()
    parties = [Party(role=PartyRole.FROM, address=user.email, name=user.name, position=0)]
    for _name, role in ADDRESS_FIELDS:
        for address in parse_addresses(getattr(draft, _name)).valid:
            resolved = resolve(address, draft.picked)
            parties.append(
                Party(
                    role=role,
                    address=resolved.address,
                    name=resolved.name,
                    record=resolved.record,
                    position=len(parties),
                )
            )
    email.parties = parties
    session.flush()
    _keep_reminder(session, email, draft.reminder)
    sync_email_activities(session, email)
    session.commit()
    return email


def _keep_reminder(session: Session, email: Email, reminder: ReminderInput | None) -> None:
    # The draft's reminder is stored with it, in the same commit: a draft is never saved
    # without the reminder it carries. It becomes active (scheduled) only when it is sent.
    row = session.scalar(sa.select(Reminder).where(Reminder.email_id == email.id))
    if reminder is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        row = Reminder(email_id=email.id, owner_id=email.owner_id)
        session.add(row)
    row.reset(
        reminder.title,
        reminder.condition,
        reminder.remind_at,
        recipient=reminder.recipient,
        attachment_id=reminder.attachment_id,
    )


def submit(
    session: Session, user: EngageUser, email: Email, *, send_at: datetime | None = None
) -> bool:
    """Send a saved draft: freeze it, give it its Message-ID and queue its delivery.

    With ``send_at`` in the future the email is *scheduled* instead (S22, S23): frozen now,
    delivered at that time by :func:`engage.send_later.send_scheduled`.

    The email is committed before anything is queued. Returns ``False`` when the job queue
    could not be reached: the email is stored and goes out once the queue is back (the sweep
    picks it up).
    """
    if email.status is not EmailStatus.DRAFT:
        raise ValueError("only a draft can be sent")
    now = utcnow()
    if send_at is not None and send_at <= now:
        raise ValueError("the send time has passed")
    sender = email.parties_in(PartyRole.FROM)[0]
    sender.address, sender.name = user.email, user.name
    domain = current_app.config["ENGAGE_MESSAGE_ID_DOMAIN"] or user.email.rpartition("@")[2]
    email.message_id = email.message_id or new_message_id(domain or "engage.invalid")
    # Settle following with fresh preferences: a recipient may have opted out meanwhile (S9).
    status = follow_status_of(
        [(p.address, p.record) for p in email.recipients], wants_follow=email.followed
    )
    email.followed = status.followed
    if not email.followed:
        # Followed files need a followed email (S17): now that it is settled that this one is
        # not, its files go to every recipient as normal attachments (MIME parts).
        for attachment in email.attachments:
            attachment.followed = False
    if email.followed:
        for party in email.recipients:
            party.token = party.token or new_token()
        email.links = [
            Link(position=n, url=url) for n, url in enumerate(web_links(email.html_body))
        ]
    email.updated_at = now
    if send_at is not None:
        email.status = EmailStatus.SCHEDULED
        email.scheduled_at = send_at
        sync_email_activities(session, email)
        session.commit()
        return schedule_delivery(email)
    email.status = EmailStatus.SENDING
    email.scheduled_at = None
    email.submitted_at = now
    sync_email_activities(session, email)
    session.commit()
    return enqueue_delivery(email)


def submitted_with(session: Session, user: EngageUser, key: str | None) -> Email | None:
    """The email ``user`` already made from the compose form with this one-time key, if any."""
    if not key:
        return None
    return session.scalar(
        sa.select(Email).where(Email.submission_key == key, Email.owner_id == user.id)
    )


def delete(session: Session, email: Email) -> None:
    """Delete a draft, or a scheduled email before its time (S23), with its files; commits."""
    if email.status not in (EmailStatus.DRAFT, EmailStatus.SCHEDULED):
        raise ValueError("only a draft or a scheduled email can be deleted")
    keys = [attachment.storage_key for attachment in email.attachments]
    if email.status is EmailStatus.SCHEDULED:
        cancel_scheduled_job(email)  # its job would find nothing to send anyway
    session.delete(email)
    session.commit()
    for key in keys:
        current_engage.store.delete(key)


def resend_failed(session: Session, email: Email) -> bool:
    """Send the failed copies of an email again; ``False`` when no copy failed."""
    if not prepare_resend(email):
        return False
    session.commit()
    enqueue_delivery(email)
    return True
