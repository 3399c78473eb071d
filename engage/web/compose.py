"""The compose panel (SPEC S1–S6, S19–S22, S25, S30): open it, save, send, send later, reopen
a draft, delete it; the record typeahead and the Insert template window.

Every view answers htmx with a partial and a plain browser with a page or a redirect, so the
whole path works without JavaScript. The form itself is :mod:`engage.web.compose_form`, the
attachments :mod:`engage.web.compose_attachments`.
"""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from .. import emails, reminders
from .. import template_library as library
from ..attachments import AttachmentRefused, attach
from ..content import Address, header_safe, html_to_text
from ..context import current_engage
from ..emails import DraftInput
from ..follow import FollowState
from ..i18n import format_local, ngettext
from ..i18n import gettext as _
from ..local_time import sender_zone
from ..models import Email, EmailStatus, utcnow
from ..records import EngageUser, Record, RecordRef
from ..send_later import send_later_state
from ..templating import TemplateBroken, TemplateRefused
from .blueprint import blueprint
from .compose_attachments import chosen_file, store_chosen
from .compose_form import (
    FILE_FIELD,
    PANEL_ACTIONS,
    TIMELINE_CHANGED,
    back_url,
    followed,
    posted_form,
    read_draft,
    ref_or_400,
    render_compose,
    slot_id,
)
from .guards import sales_user, visible_email_or_404
from .htmx import is_htmx

blueprint.add_app_template_global(slot_id, "engage_compose_slot")


def _record_or_404(ref: RecordRef | None) -> Record | None:
    if ref is None:
        return None
    record = current_engage.records.get(ref)
    if record is None:
        abort(404)
    return record


def _apply_template(draft: DraftInput, email: Email | None) -> Any:
    template = library.active_template(request.form.get("template_choice"))
    if template is None:
        errors = {"template": _("Choose a template in the list, then press Apply template.")}
        return render_compose(draft, email=email, errors=errors, status=422)
    recipients = library.recipients_of(draft.to, draft.cc, draft.bcc, draft.picked)
    regarding = current_engage.records.get(draft.regarding) if draft.regarding else None
    try:
        applied = library.apply_to_draft(template, recipients, regarding)
    except (TemplateBroken, TemplateRefused) as exc:
        errors = {"template": _("This template cannot be used: %(why)s", why=str(exc))}
        return render_compose(draft, email=email, errors=errors, status=422)
    undo = (draft.subject, draft.body, draft.body_format)
    draft.subject = applied.subject
    draft.body = applied.body
    draft.body_format = "html"
    draft.template_id = template.id
    has_text = bool(undo[0].strip() or html_to_text(undo[1]).strip())
    return render_compose(draft, email=email, applied=applied, undo=undo if has_text else None)


def _state_label(state: FollowState) -> str:
    """A follow state as the panel names it, for the message when one changed unseen."""
    return {
        FollowState.ON: _("On"),
        FollowState.OFF: _("Off"),
        FollowState.BLOCKED: _("Blocked"),
        FollowState.DISABLED: _("Not available"),
        FollowState.BULK: _("Not available"),
    }[state]


def _panel_notice(action: str | None, draft: DraftInput) -> str | None:
    """What a panel control says it did, when its effect alone would be easy to miss."""
    if action == "undo_template":
        return _("Template removed: your subject and text are back.")
    if action != "retry_follow":
        return None
    status = emails.follow_status_of(emails.draft_recipients(draft), wants_follow=True)
    if status.state is FollowState.BLOCKED:
        return ngettext(
            "Nothing changed: %(num)d recipient still does not allow following.",
            "Nothing changed: %(num)d recipients still do not allow following.",
            len(status.blocked_by),
        )
    if status.followed:
        return _("Every recipient allows following now: this email will be followed.")
    return None


def _follow_changed(draft: DraftInput) -> str | None:
    """Why Send must stop: the follow state differs from the one the panel last showed."""
    seen = request.form.get("follow_seen", "")
    if not seen:
        return None
    status = emails.follow_status_of(emails.draft_recipients(draft), wants_follow=draft.follow)
    if status.state.value == seen:
        return None
    return _(
        "Follow is now “%(state)s”, not what the panel showed when you pressed Send. Nothing "
        "was sent: check Follow below, then press Send again.",
        state=_state_label(status.state),
    )


def _after_send(email: Email, *, queued: bool) -> Any:
    count = len(email.recipients)
    message = ngettext("Sending to %(num)d recipient…", "Sending to %(num)d recipients…", count)
    if not queued:
        message = _(
            "Sent: the job queue cannot be reached right now, so it goes out as soon as the "
            "queue is back. Nothing more to do."
        )
    elif email.status is EmailStatus.SCHEDULED and email.scheduled_at:
        zone = sender_zone(sales_user(), request.form.get("browser_zone"))
        message = _("Scheduled: it goes out %(when)s.", when=format_local(email.scheduled_at, zone))
    if is_htmx():
        response = make_response(
            render_template("engage/_compose_done.html", email=email, message=message)
        )
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
        return response
    flash(message, "engage-success")
    return redirect(back_url(email.regarding))


@blueprint.get("/compose")
def compose() -> Any:
    """A new, empty compose panel regarding the record it was opened from (S1, S3)."""
    sales_user()
    ref = ref_or_400(request.args.get("regarding"))
    record = _record_or_404(ref)
    draft = DraftInput(regarding=ref)
    if record is not None and record.email:
        draft.to = str(Address(record.email, header_safe(record.name)))
        draft.picked = {record.email.lower(): record.ref}
    return render_compose(draft, email=None)


@blueprint.get("/compose/closed")
def compose_closed() -> Any:
    """The empty slot a closed compose panel leaves behind (htmx); the timeline otherwise."""
    sales_user()
    ref = ref_or_400(request.args.get("regarding"))
    if not is_htmx():
        return redirect(back_url(ref))
    return Markup('<div id="{}"></div>').format(slot_id(ref))


@blueprint.post("/compose")
def create_email() -> Any:
    """Save or send a new email."""
    return _save_or_send(None)


@blueprint.route("/emails/<engage_id:email_id>/edit", methods=["GET", "POST"])
def edit_email(email_id: int) -> Any:
    """Reopen a draft in the compose panel, or save or send it."""
    email = visible_email_or_404(email_id)
    if email.status is not EmailStatus.DRAFT:
        # Only drafts can change (S23); anything else opens read-only.
        return redirect(url_for("engage.email_detail", email_id=email.id))
    if request.method == "GET":
        return render_compose(DraftInput.from_email(email), email=email)
    return _save_or_send(email)


def _save_or_send(email: Email | None) -> Any:
    user = sales_user()
    if email is not None and email.owner_id != user.id:
        abort(404)  # a manager may read the team's drafts, not write them
    draft, errors = read_draft()
    if email is None:
        # The same form posted again (a double click, a retry after an error page): it
        # continues the email it made the first time, and never makes a second one.
        email = emails.submitted_with(current_engage.session, user, draft.submission_key)
        if email is not None and email.status is not EmailStatus.DRAFT:
            return _after_send(email, queued=True)
    try:
        return _act(user, email, draft, errors)
    except HTTPException:
        raise
    except Exception:
        # Whatever went wrong, the rep's text is not thrown away: the panel comes back with
        # everything as typed, and the failure is logged for the operator.
        current_engage.session.rollback()
        current_app.logger.exception("engage: saving or sending an email failed")
        problem = _(
            "Something went wrong on our side, so nothing was saved or sent. Everything you "
            "typed is still here: try again in a moment."
        )
        return render_compose(draft, email=email, errors={"form": problem}, status=500)


def _act(user: EngageUser, email: Email | None, draft: DraftInput, errors: dict[str, str]) -> Any:
    action = request.form.get("action")
    if action == "apply_template":
        return _apply_template(draft, email)
    if action in PANEL_ACTIONS:
        # Follow and Send later controls change the panel, not the stored draft: it is saved
        # with Save or Send.
        return render_compose(
            draft,
            email=email,
            errors=errors,
            status=422 if errors else 200,
            notice=None if errors else _panel_notice(action, draft),
        )
    sending = action == "send"
    if sending and draft.send_at is not None and draft.send_at <= utcnow():
        errors["send_at"] = _(
            "The time chosen in Send later has passed. Choose a new time or remove the delay."
        )
    if sending and (changed := _follow_changed(draft)):
        errors["follow"] = changed
    for name, problem in emails.check(draft, sending=sending).items():
        errors.setdefault(name, problem)  # a name looked up and not found says so itself
    errors.update(
        reminders.check_draft(
            draft,
            followed=followed(draft),
            sending=sending,
            files=[i for i, _name in reminders.followed_files(email)] if email else None,
        )
    )
    # A file chosen but not yet attached goes with Save or Send, as the rep would expect.
    upload = chosen_file()
    if errors:
        # Nothing is lost: the form comes back with everything as typed, and the stored
        # draft (if any) is left as it was.
        if upload is not None:
            errors[FILE_FIELD] = _(
                "The file was not attached: fix what is marked, then choose it again."
            )
        return render_compose(draft, email=email, errors=errors, status=422)
    stored = None
    if upload is not None:
        try:
            stored = store_chosen(upload)
        except AttachmentRefused as refusal:
            errors[FILE_FIELD] = str(refusal)
            return render_compose(draft, email=email, errors=errors, status=422)
    session = current_engage.session
    try:
        email = emails.save_draft(session, user, draft, email)
    except Exception:
        if stored is not None:
            # Rolled back first: a database store deletes on a connection of its own, which
            # SQLite would keep waiting for this transaction's write lock.
            session.rollback()
            current_engage.store.delete(stored.key)
        raise
    if stored is not None:
        attach(session, email, stored)
    if sending:
        queued = emails.submit(session, user, email, send_at=draft.send_at)
        reminders.activate(email)
        return _after_send(email, queued=queued)
    notice = _("Draft saved.")
    if not is_htmx():
        flash(notice, "engage-success")
        return redirect(url_for("engage.edit_email", email_id=email.id))
    response = render_compose(DraftInput.from_email(email), email=email, notice=notice)
    response.headers["HX-Trigger"] = TIMELINE_CHANGED
    return response


@blueprint.post("/emails/<engage_id:email_id>/delete")
def delete_email(email_id: int) -> Any:
    """Delete a draft, or a scheduled email before its time (S23)."""
    user = sales_user()
    email = visible_email_or_404(email_id)
    if email.owner_id != user.id or email.status not in (EmailStatus.DRAFT, EmailStatus.SCHEDULED):
        abort(404)
    regarding = email.regarding
    scheduled = email.status is EmailStatus.SCHEDULED
    if scheduled and request.form.get("confirmed") != "1":
        # A scheduled email was meant to go: deleting it is asked once more, on a page of its
        # own so that it works without JavaScript too.
        return render_template("engage/delete_confirm.html", email=email)
    subject = email.subject or _("(no subject)")
    emails.delete(current_engage.session, email)
    message = (
        _("Scheduled email deleted: “%(subject)s” will not be sent.", subject=subject)
        if scheduled
        else _("Draft deleted.")
    )
    if is_htmx():
        response = make_response(
            render_template("engage/_compose_done.html", email=None, message=message)
        )
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
        return response
    flash(message, "engage-success")
    return redirect(back_url(regarding))


@blueprint.get("/records/search")
def search_records() -> Any:
    """Typeahead options: records matching the last entry typed in an address field."""
    sales_user()
    field = request.args.get("field", "to")
    if field not in {"to", "cc", "bcc", "regarding_search"}:
        abort(400)
    typed = request.args.get(field, "")
    # In an address field only the entry being typed (after the last comma) is searched.
    query = typed.replace(";", ",").rsplit(",", 1)[-1].strip()
    records = list(current_engage.records.search(query, limit=8)) if len(query) >= 2 else []
    return render_template("engage/_record_options.html", records=records, field=field, query=query)


@blueprint.post("/compose/follow")
def follow_part() -> Any:
    """The Follow block alone, redrawn as the recipients change (htmx, without a save)."""
    user = sales_user()
    draft, _errors = posted_form().draft(user)
    return render_template(
        "engage/_follow.html",
        draft=draft,
        follow=emails.follow_status_of(emails.draft_recipients(draft), wants_follow=draft.follow),
        follow_disabled_reason=emails.follow_disabled_reason(),
        errors={},
        slot=slot_id(draft.regarding),
    )


@blueprint.post("/compose/send-later")
def send_later_part() -> Any:
    """The Send later dialog alone, for the poll that waits for the recipient's time zone."""
    user = sales_user()
    draft, _errors = posted_form().draft(user)
    state = send_later_state(draft, user, request.form.get("browser_zone"))
    return render_template(
        "engage/_send_later.html",
        draft=draft,
        later=state,
        errors={},
        slot=slot_id(draft.regarding),
        action=request.form.get("compose_action", ""),
    )
