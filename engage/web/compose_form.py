"""The compose form: what the compose panel posts, read into the domain's :class:`DraftInput`,
and the panel drawn back from a draft (SPEC S3–S6, S8, S19–S22, S25, S30).

:class:`ComposeForm` is a WTForms form over the panel's fields. The template draws its own
markup (the panel is more than a list of inputs); the form reads and normalises what comes
back, and :meth:`ComposeForm.draft` turns it into a :class:`DraftInput` with the errors found
while reading (a regarding record that does not exist, a send time that has passed, a refused
reminder). Everything the rep typed is kept, whatever the errors: a refused form comes back as
typed. The domain's own checks (:func:`engage.emails.check`) run on the draft afterwards.

The panel's controls (Follow, Send later, Set reminder, Insert template) post the whole form
with an ``action``; they change the panel, not the stored draft, which only Save and Send
write.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import abort, current_app, make_response, render_template, request, url_for
from wtforms import Field, Form, StringField, TextAreaField

from .. import emails, reminders
from .. import template_library as library
from ..content import html_to_text
from ..context import current_engage
from ..emails import DraftInput, ReminderInput
from ..i18n import gettext as _
from ..ids import parse_id
from ..local_time import parse_carried, parse_local, read_future_time, sender_zone
from ..models import Email, EmailTemplate, utcnow
from ..recipients import look_up_names
from ..records import EngageUser, RecordRef
from ..send_later import send_later_state
from .guards import sales_user
from .htmx import is_htmx

#: The event the timeline listens for: something on it changed (sent, saved, deleted, logged).
TIMELINE_CHANGED = "engage-timeline-changed"
#: The name of the compose form's file input, and the key of its errors.
FILE_FIELD = "attachment"
#: The key of errors about the listed files (a refused Follow).
LIST_FIELD = "attachments"

#: Actions that change the panel, not the stored draft.
PANEL_ACTIONS = frozenset(
    {
        "follow",
        "unfollow",
        "retry_follow",
        "schedule",
        "unschedule",
        "template_search",
        "set_reminder",
        "remove_reminder",
        "undo_template",
    }
)


class ValuesField(Field):
    """Every value posted under one name, in order (``picked`` comes once per picked record)."""

    data: list[str]

    def process_formdata(self, valuelist: list[Any]) -> None:
        self.data = [str(value) for value in valuelist]

    def _value(self) -> str:
        return ""


class ComposeForm(Form):
    """The compose panel's fields as the browser posts them (engage's blueprint checks CSRF)."""

    to = StringField(default="")
    cc = StringField(default="")
    bcc = StringField(default="")
    subject = StringField(default="")
    body = TextAreaField(default="")
    #: ``html`` from the rich editor, ``text`` from the plain textarea (no JavaScript).
    body_format = StringField(default="html")
    regarding = StringField(default="")
    #: Without JavaScript the regarding record is changed by typing its name.
    regarding_search = StringField(default="")
    #: ``address|type:id`` for each recipient picked from the typeahead.
    picked = ValuesField(default=list)
    follow = StringField(default="1")
    action = StringField(default="")
    #: The browser's time zone, for a sender whose profile has none.
    browser_zone = StringField(default="")
    #: The delay already set (ISO 8601 with its offset), carried in a hidden field.
    send_at = StringField(default="")
    #: The Send later dialog's time, in the sender's zone.
    send_at_local = StringField(default="")
    #: The reminder set with OK, carried in hidden fields until Save or Send stores it.
    reminder_title = StringField(default="")
    reminder_condition = StringField(default="")
    reminder_at = StringField(default="")
    reminder_recipient = StringField(default="")
    reminder_attachment = StringField(default="")
    #: The Set reminder dialog's inputs.
    reminder_title_input = StringField(default="")
    reminder_condition_input = StringField(default="")
    reminder_at_local = StringField(default="")
    #: Whose events count (an address, or empty for anyone) and which followed file (an id,
    #: or empty for any) (SPEC S41).
    reminder_recipient_input = StringField(default="")
    reminder_attachment_input = StringField(default="")
    #: The template applied with Insert template, for its performance.
    template_id = StringField(default="")
    #: The form's one-time key, so that a second Send of the same form makes no second email.
    submission = StringField(default="")
    #: The follow state the panel last showed, so that Send never changes it unannounced.
    follow_seen = StringField(default="")
    #: The subject and text from before Apply template, for its Undo.
    undo_subject = StringField(default="")
    undo_body = StringField(default="")
    undo_body_format = StringField(default="")

    def value(self, name: str) -> str:
        """A text field's value, ``""`` when it was not posted."""
        data = getattr(self, name).data
        return data if isinstance(data, str) else ""

    def draft(self, user: EngageUser) -> tuple[DraftInput, dict[str, str]]:
        """The draft the form holds, and the errors found in reading it (before any checking)."""
        errors: dict[str, str] = {}
        regarding = ref_or_400(self.value("regarding"))
        if search := self.value("regarding_search").strip():
            found = list(current_engage.records.search(search, limit=2))
            if len(found) == 1:
                regarding = found[0].ref
            else:
                errors["regarding"] = (
                    _("No record matches “%(text)s”.", text=search)
                    if not found
                    else _("Several records match “%(text)s”: type more of the name.", text=search)
                )
        picked = self._picked()
        fields: dict[str, str] = {}
        for name in ("to", "cc", "bcc"):
            # A typed name becomes the address of the one record it names (the no-JavaScript
            # path of the typeahead); several or none are explained, the text kept as typed.
            lookup = look_up_names(self.value(name))
            fields[name] = lookup.text
            picked.update(lookup.picked)
            if lookup.problem:
                errors[name] = lookup.problem
        draft = DraftInput(
            to=fields["to"],
            cc=fields["cc"],
            bcc=fields["bcc"],
            subject=self.value("subject"),
            body=self.value("body"),
            body_format="text" if self.value("body_format") == "text" else "html",
            regarding=regarding,
            picked=picked,
            follow=self.value("follow") != "0",
            submission_key=_one_time_key(self.value("submission")),
        )
        action = self.value("action")
        if action in {"follow", "retry_follow"}:
            draft.follow = True
        elif action == "unfollow":
            draft.follow = False
        elif action == "undo_template":
            # Undo of Apply template: the subject and text from before it come back.
            draft.subject = self.value("undo_subject")
            draft.body = self.value("undo_body")
            draft.body_format = "text" if self.value("undo_body_format") == "text" else "html"
        zone = sender_zone(user, self.value("browser_zone"))
        draft.send_at = self._send_at(action, zone, errors)
        draft.reminder = self._reminder(
            action, errors, followed=followed(draft), send_at=draft.send_at, zone=zone
        )
        template_id = parse_id(self.value("template_id"))
        applied = (
            current_engage.session.get(EmailTemplate, template_id)
            if template_id is not None
            else None
        )
        if applied is not None and action != "undo_template":
            # Kept even if retired meanwhile: the message still used it.
            draft.template_id = applied.id
        if regarding is not None and current_engage.records.get(regarding) is None:
            errors["regarding"] = _("The regarding record no longer exists.")
        return draft, errors

    def _picked(self) -> dict[str, RecordRef]:
        picked: dict[str, RecordRef] = {}
        for entry in self.picked.data or []:
            address, _sep, ref = entry.rpartition("|")
            try:
                picked[address.lower()] = RecordRef.parse(ref)
            except ValueError:
                continue
        return picked

    def _send_at(self, action: str, zone: str, errors: dict[str, str]) -> datetime | None:
        # Send later (S19): Set delay reads the dialog; Remove delay drops it; otherwise the
        # delay already set travels on.
        if action == "unschedule":
            return None
        now = utcnow()
        current = parse_carried(self.value("send_at"), now=now)
        if action != "schedule":
            return current
        try:
            return read_future_time(self.value("send_at_local"), zone, now=now)
        except ValueError as refusal:
            errors["send_at"] = str(refusal)
            return current

    def _carried_reminder(self) -> ReminderInput | None:
        raw = self.value("reminder_at")
        condition = self.value("reminder_condition")
        if not raw or condition not in reminders.CONDITIONS:
            return None
        when = parse_carried(raw, now=utcnow())
        if when is None:
            return None
        return ReminderInput(
            self.value("reminder_title"),
            condition,
            when,
            self.value("reminder_recipient").strip() or None,
            parse_id(self.value("reminder_attachment")),
        )

    def _reminder(
        self,
        action: str,
        errors: dict[str, str],
        *,
        followed: bool,
        send_at: datetime | None,
        zone: str,
    ) -> ReminderInput | None:
        """The reminder the form carries after ``action``; refusals go into ``errors``.

        *OK* (``set_reminder``) reads the dialog and keeps the previous reminder when the new
        one is refused (the typed values come back with the form); *Remove reminder* drops it.
        """
        current = self._carried_reminder()
        if action == "remove_reminder":
            return None
        if action != "set_reminder":
            return current
        candidate, found = self.dialog_reminder(followed=followed, send_at=send_at, zone=zone)
        errors.update(found)
        return current if candidate is None else candidate

    def dialog_reminder(
        self,
        *,
        followed: bool,
        send_at: datetime | None,
        zone: str,
        files: Sequence[int] | None = None,
        recipients: Sequence[str] | None = None,
    ) -> tuple[ReminderInput | None, dict[str, str]]:
        """The reminder typed in the Set reminder dialog, or ``None`` with the errors found."""
        errors: dict[str, str] = {}
        try:
            when = parse_local(self.value("reminder_at_local"), zone)
        except ValueError:
            errors["reminder_at"] = _("Enter a date and a time, like 2026-11-27 08:00.")
            when = None
        condition = self.value("reminder_condition_input")
        candidate = ReminderInput(
            self.value("reminder_title_input").strip(),
            condition,
            when or utcnow(),
            self.value("reminder_recipient_input").strip() or None,
            parse_id(self.value("reminder_attachment_input"))
            if condition == reminders.FILE_NOT_OPENED
            else None,
        )
        found = reminders.check(
            candidate,
            followed=followed,
            send_at=send_at,
            now=utcnow(),
            files=files,
            recipients=recipients,
        )
        if when is None:
            found.pop("reminder_at", None)
        errors.update(found)
        return (None if errors else candidate), errors


_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _one_time_key(text: str) -> str | None:
    return text if _KEY.fullmatch(text) else None


def posted_form() -> ComposeForm:
    """The compose form of the current request."""
    return ComposeForm(request.form)


def read_draft() -> tuple[DraftInput, dict[str, str]]:
    """The draft the current request's compose form holds, with the errors found reading it."""
    return posted_form().draft(sales_user())


def ref_or_400(text: str | None) -> RecordRef | None:
    """The record a form or URL names as ``type:id``; 400 when it is not such a reference."""
    if not text:
        return None
    try:
        return RecordRef.parse(text)
    except ValueError:
        abort(400, description=_("That record reference is not valid."))


def followed(draft: DraftInput) -> bool:
    """The panel's follow state: the sender's wish, settled by the recipients' preferences."""
    recipients = emails.draft_recipients(draft)
    return emails.follow_status_of(recipients, wants_follow=draft.follow).followed


def slot_id(ref: RecordRef | None) -> str:
    """The id of the element the compose panel of ``ref``'s timeline lives in.

    Record types and ids come from the host and from URLs: every character but letters,
    digits, ``_`` and ``-`` is written as its code point, so the id is safe in an HTML
    attribute and in a CSS selector (``hx-target="#…"``) whatever the reference holds.
    """
    if ref is None:
        return "engage-compose"
    return f"engage-compose-{_id_part(ref.type)}-{_id_part(ref.id)}"


_UNSAFE_IN_ID = re.compile(r"[^A-Za-z0-9_-]")


def _id_part(text: str) -> str:
    return _UNSAFE_IN_ID.sub(lambda m: f"_{ord(m.group()):x}_", text)


def back_url(ref: RecordRef | None) -> str:
    """Where a rep goes back to after the panel closes: the record's timeline, or home."""
    if ref is None:
        return url_for("engage.home")
    return url_for("engage.timeline", record_type=ref.type, record_id=ref.id)


def render_compose(
    draft: DraftInput,
    *,
    email: Email | None,
    errors: dict[str, str] | None = None,
    status: int = 200,
    notice: str | None = None,
    applied: library.Applied | None = None,
    undo: tuple[str, str, str] | None = None,
) -> Any:
    """The compose panel (a partial for htmx, a page otherwise) showing ``draft``.

    :param undo: the subject, text and text format from before Apply template, offered back.
    """
    user = sales_user()
    zone = sender_zone(user, request.values.get("browser_zone"))
    if draft.submission_key is None:
        draft.submission_key = secrets.token_urlsafe(18)
    regarding = current_engage.records.get(draft.regarding) if draft.regarding else None
    body_html = draft.html()
    action = url_for("engage.edit_email", email_id=email.id) if email else url_for("engage.compose")
    limit_mb = float(current_app.config["ENGAGE_MAX_ATTACHMENT_MB"])
    context = {
        "later": send_later_state(draft, user, request.values.get("browser_zone")),
        "compose_action": action,
        "follow": emails.follow_status_of(
            emails.draft_recipients(draft), wants_follow=draft.follow
        ),
        "follow_disabled_reason": emails.follow_disabled_reason(),
        "draft": draft,
        "body_html": body_html,
        "body_text": draft.body if draft.body_format == "text" else html_to_text(body_html),
        "email": email,
        "errors": errors or {},
        "regarding": regarding,
        "notice": notice,
        "slot": slot_id(draft.regarding),
        "action": action,
        "attachments": list(email.attachments) if email else [],
        "attachment_limit_mb": f"{limit_mb:g}",
        "attachment_limit_bytes": int(limit_mb * 1024 * 1024),
        "undo": undo,
    }
    context.update(_template_window(draft, errors or {}, applied))
    context["reminder"] = reminders.compose_panel(
        draft,
        followed=followed(draft),
        zone=zone,
        files=reminders.followed_files(email) if email else (),
    )
    template = "engage/_compose.html" if is_htmx() else "engage/compose_page.html"
    response = make_response(render_template(template, **context), status)
    if status >= 400:
        # A refused form is an explained answer: engage.js swaps it in, where htmx would drop
        # a 4xx response and the marked fields would never show.
        response.headers["X-Engage-Explained"] = "1"
    return response


def _template_window(
    draft: DraftInput, errors: dict[str, str], applied: library.Applied | None
) -> dict[str, Any]:
    # The Insert template window (S30): open while searching or after a refusal, closed once
    # a template is applied. Its language starts as the first recipient's, else the user's.
    form = request.form
    recipients = library.recipients_of(draft.to, draft.cc, draft.bcc, draft.picked)
    first = recipients[0] if recipients else None
    language = form.get("template_language") if "template_language" in form else None
    context = library.window_context(
        language, form.get("template_q", "").strip(), library.default_language(first)
    )
    context["templates_open"] = applied is None and (
        form.get("action") == "template_search"
        or "template" in errors
        or form.get("templates_open") == "1"
    )
    context["applied"] = applied
    return context
