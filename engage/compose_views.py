"""The compose panel's views: open, save, send, reopen, delete and resend (SPEC S3–S6).

Every view answers htmx with a partial and a plain browser with a page or a redirect, so the
whole path works without JavaScript.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
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
from sqlalchemy.orm import selectinload

from . import emails, reminders, template_views
from .access import can_see, sales_user, visible_email_or_404
from .compose import Address, html_to_text
from .delivery import enqueue_delivery, prepare_resend
from .emails import DraftInput
from .extension import current_engage
from .htmx import is_htmx
from .i18n import format_when, ngettext
from .i18n import gettext as _
from .models import Activity, Email, EmailStatus, EmailTemplate, EventKind, TrackingEvent, utcnow
from .records import Record, RecordRef
from .scheduling import cancel_scheduled_job, reschedule, send_now
from .send_later import parse_local, send_later_state, sender_zone
from .templating import TemplateBroken, TemplateRefused
from .views import blueprint

TIMELINE_CHANGED = "engage-timeline-changed"


def _ref_or_none(text: str | None) -> RecordRef | None:
    if not text:
        return None
    try:
        return RecordRef.parse(text)
    except ValueError:
        abort(400, description=_("That record reference is not valid."))


def _record_or_404(ref: RecordRef | None) -> Record | None:
    if ref is None:
        return None
    record = current_engage.records.get(ref)
    if record is None:
        abort(404)
    return record


def _draft_from_form() -> tuple[DraftInput, dict[str, str]]:
    """The form's values, and the errors found in reading them (before any checking)."""
    form = request.form
    errors: dict[str, str] = {}
    regarding = _ref_or_none(form.get("regarding"))
    search = form.get("regarding_search", "").strip()
    if search:
        # Without JavaScript the regarding record is changed by typing its name.
        found = list(current_engage.records.search(search, limit=2))
        if len(found) == 1:
            regarding = found[0].ref
        else:
            errors["regarding"] = (
                _("No record matches “%(text)s”.", text=search)
                if not found
                else _("Several records match “%(text)s”: type more of the name.", text=search)
            )
    picked: dict[str, RecordRef] = {}
    for entry in form.getlist("picked"):
        address, _sep, ref = entry.rpartition("|")
        try:
            picked[address.lower()] = RecordRef.parse(ref)
        except ValueError:
            continue
    draft = DraftInput(
        to=form.get("to", ""),
        cc=form.get("cc", ""),
        bcc=form.get("bcc", ""),
        subject=form.get("subject", ""),
        body=form.get("body", ""),
        body_format="text" if form.get("body_format") == "text" else "html",
        regarding=regarding,
        picked=picked,
        follow=form.get("follow", "1") != "0",
    )
    action = form.get("action")
    if action in {"follow", "retry_follow"}:
        draft.follow = True
    elif action == "unfollow":
        draft.follow = False
    if form.get("send_at"):
        try:
            draft.send_at = datetime.fromisoformat(form["send_at"]).astimezone(UTC)
        except ValueError:
            draft.send_at = None
    if action == "unschedule":
        draft.send_at = None
    elif action == "schedule":
        zone = sender_zone(sales_user(), form.get("browser_zone"))
        try:
            when = parse_local(form.get("send_at_local", ""), zone)
        except ValueError:
            errors["send_at"] = _("Enter a date and a time, like 2026-11-27 08:00.")
        else:
            if when <= utcnow():
                errors["send_at"] = _("That time has passed; choose a time in the future.")
            else:
                draft.send_at = when
    # Set reminder (S25): OK and Remove change the panel; the reminder is stored with Save.
    draft.reminder = reminders.reminder_from_form(
        form,
        action,
        errors,
        followed=_followed(draft),
        send_at=draft.send_at,
        zone=sender_zone(sales_user(), form.get("browser_zone")),
    )
    template_id = form.get("template_id", "")
    applied = (
        current_engage.session.get(EmailTemplate, int(template_id))
        if template_id.isdigit()
        else None
    )
    if applied is not None:  # kept even if retired meanwhile: the message still used it
        draft.template_id = applied.id
    if regarding is not None and current_engage.records.get(regarding) is None:
        errors["regarding"] = _("The regarding record no longer exists.")
    return draft, errors


def _followed(draft: DraftInput) -> bool:
    # The panel's follow state: the sender's wish, settled by the recipients' preferences.
    recipients = emails.draft_recipients(draft)
    return emails.follow_status_of(recipients, wants_follow=draft.follow).followed


def _render_compose(
    draft: DraftInput,
    *,
    email: Email | None,
    errors: dict[str, str] | None = None,
    status: int = 200,
    notice: str | None = None,
    applied: template_views.Applied | None = None,
) -> Any:
    regarding = current_engage.records.get(draft.regarding) if draft.regarding else None
    body_html = draft.html()
    context = {
        "later": send_later_state(draft, sales_user(), request.values.get("browser_zone")),
        "compose_action": url_for("engage.edit_email", email_id=email.id)
        if email
        else url_for("engage.compose"),
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
        "slot": _slot_id(draft.regarding),
        "action": url_for("engage.edit_email", email_id=email.id)
        if email
        else url_for("engage.compose"),
        "attachments": list(email.attachments) if email else [],
        "attachment_limit_mb": f"{float(current_app.config['ENGAGE_MAX_ATTACHMENT_MB']):g}",
        "attachment_limit_bytes": int(
            float(current_app.config["ENGAGE_MAX_ATTACHMENT_MB"]) * 1024 * 1024
        ),
    }
    context.update(_template_window(draft, errors or {}, applied))
    context["reminder"] = reminders.compose_panel(
        draft,
        followed=_followed(draft),
        zone=sender_zone(sales_user(), request.values.get("browser_zone")),
    )
    template = "engage/_compose.html" if is_htmx() else "engage/compose_page.html"
    response = make_response(render_template(template, **context), status)
    if status >= 400:
        # A refused form is an explained answer: engage.js swaps it in, where htmx would drop
        # a 4xx response and the marked fields would never show.
        response.headers["X-Engage-Explained"] = "1"
    return response


def _template_window(
    draft: DraftInput, errors: dict[str, str], applied: template_views.Applied | None
) -> dict[str, Any]:
    # The Insert template window (S30): open while searching or after a refusal, closed once
    # a template is applied. Its language starts as the first recipient's, else the user's.
    form = request.form
    recipients = template_views.recipients_of(draft.to, draft.cc, draft.bcc, draft.picked)
    first = recipients[0] if recipients else None
    language = form.get("template_language") if "template_language" in form else None
    context = template_views.window_context(
        language, form.get("template_q", "").strip(), template_views.default_language(first)
    )
    action = form.get("action")
    context["templates_open"] = applied is None and (
        action == "template_search" or "template" in errors or form.get("templates_open") == "1"
    )
    context["applied"] = applied
    return context


def _apply_template(draft: DraftInput, email: Email | None) -> Any:
    template = template_views.active_template(request.form.get("template_choice"))
    if template is None:
        errors = {"template": _("Choose a template in the list, then press Apply template.")}
        return _render_compose(draft, email=email, errors=errors, status=422)
    recipients = template_views.recipients_of(draft.to, draft.cc, draft.bcc, draft.picked)
    regarding = current_engage.records.get(draft.regarding) if draft.regarding else None
    try:
        applied = template_views.apply_to_draft(template, recipients, regarding)
    except (TemplateBroken, TemplateRefused) as exc:
        errors = {"template": _("This template cannot be used: %(why)s", why=str(exc))}
        return _render_compose(draft, email=email, errors=errors, status=422)
    draft.subject = applied.subject
    draft.body = applied.body
    draft.body_format = "html"
    draft.template_id = template.id
    return _render_compose(draft, email=email, applied=applied)


def _slot_id(ref: RecordRef | None) -> str:
    return f"engage-compose-{ref.type}-{ref.id}" if ref else "engage-compose"


def _after_send(email: Email) -> Any:
    count = len(email.recipients)
    message = ngettext("Sending to %(num)d recipient…", "Sending to %(num)d recipients…", count)
    if email.status is EmailStatus.SCHEDULED and email.scheduled_at:
        zone = sender_zone(sales_user(), request.form.get("browser_zone"))
        local = email.scheduled_at.astimezone(ZoneInfo(zone))
        message = _(
            "Scheduled: it goes out %(when)s (%(zone)s).",
            when=format_when(local),
            zone=zone,
        )
    if is_htmx():
        response = make_response(
            render_template("engage/_compose_done.html", email=email, message=message)
        )
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
        return response
    flash(message, "engage-success")
    return redirect(_back_url(email.regarding))


def _back_url(ref: RecordRef | None) -> str:
    if ref is None:
        return url_for("engage.home")
    return url_for("engage.timeline", record_type=ref.type, record_id=ref.id)


@blueprint.get("/compose")
def compose() -> Any:
    """A new, empty compose panel regarding the record it was opened from (S1, S3)."""
    sales_user()
    ref = _ref_or_none(request.args.get("regarding"))
    record = _record_or_404(ref)
    draft = DraftInput(regarding=ref)
    if record is not None and record.email:
        draft.to = str(Address(record.email, record.name))
        draft.picked = {record.email.lower(): record.ref}
    return _render_compose(draft, email=None)


@blueprint.get("/compose/closed")
def compose_closed() -> Any:
    """The empty slot a closed compose panel leaves behind (htmx); the timeline otherwise."""
    sales_user()
    ref = _ref_or_none(request.args.get("regarding"))
    if not is_htmx():
        return redirect(_back_url(ref))
    return f'<div id="{_slot_id(ref)}"></div>'


@blueprint.post("/compose")
def create_email() -> Any:
    """Save or send a new email."""
    return _save_or_send(None)


@blueprint.route("/emails/<int:email_id>/edit", methods=["GET", "POST"])
def edit_email(email_id: int) -> Any:
    """Reopen a draft in the compose panel, or save or send it."""
    email = visible_email_or_404(email_id)
    if email.status is not EmailStatus.DRAFT:
        # Only drafts can change (S23); anything else opens read-only.
        return redirect(url_for("engage.email_detail", email_id=email.id))
    if request.method == "GET":
        return _render_compose(DraftInput.from_email(email), email=email)
    return _save_or_send(email)


def _save_or_send(email: Email | None) -> Any:
    from . import attachments  # it builds on this module's views

    user = sales_user()
    if email is not None and email.owner_id != user.id:
        abort(404)  # a manager may read the team's drafts, not write them
    draft, errors = _draft_from_form()
    action = request.form.get("action")
    if action == "apply_template":
        return _apply_template(draft, email)
    panel_actions = {"follow", "unfollow", "retry_follow", "schedule", "unschedule"}
    panel_actions.add("template_search")
    if action in panel_actions | {"set_reminder", "remove_reminder"}:
        # Follow and Send later controls change the panel, not the stored draft: it is saved
        # with Save or Send.
        return _render_compose(draft, email=email, errors=errors, status=422 if errors else 200)
    sending = action == "send"
    if sending and draft.send_at is not None and draft.send_at <= utcnow():
        errors["send_at"] = _(
            "The time chosen in Send later has passed. Choose a new time or remove the delay."
        )
    errors.update(emails.check(draft, sending=sending))
    errors.update(reminders.check_draft(draft, followed=_followed(draft), sending=sending))
    # A file chosen but not yet attached goes with Save or Send, as the rep would expect.
    upload = attachments.chosen_file()
    if errors:
        # Nothing is lost: the form comes back with everything as typed, and the stored
        # draft (if any) is left as it was.
        if upload is not None:
            errors[attachments.FILE_FIELD] = _(
                "The file was not attached: fix what is marked, then choose it again."
            )
        return _render_compose(draft, email=email, errors=errors, status=422)
    stored = None
    if upload is not None:
        try:
            stored = attachments.store_upload(upload)
        except attachments.AttachmentRefused as refusal:
            errors[attachments.FILE_FIELD] = str(refusal)
            return _render_compose(draft, email=email, errors=errors, status=422)
    session = current_engage.session
    try:
        email = emails.save_draft(session, user, draft, email)
    except Exception:
        if stored is not None:
            current_engage.store.delete(stored.key)
        raise
    if stored is not None:
        attachments.attach(session, email, stored)
    reminders.keep_with_draft(session, email, draft.reminder)
    if sending:
        emails.submit(session, user, email, send_at=draft.send_at)
        reminders.activate(email)
        return _after_send(email)
    notice = _("Draft saved.")
    if not is_htmx():
        flash(notice, "engage-success")
        return redirect(url_for("engage.edit_email", email_id=email.id))
    response = _render_compose(DraftInput.from_email(email), email=email, notice=notice)
    response.headers["HX-Trigger"] = TIMELINE_CHANGED
    return response


@blueprint.post("/emails/<int:email_id>/delete")
def delete_email(email_id: int) -> Any:
    """Delete a draft, or a scheduled email before its time (S23)."""
    user = sales_user()
    email = visible_email_or_404(email_id)
    if email.owner_id != user.id or email.status not in (EmailStatus.DRAFT, EmailStatus.SCHEDULED):
        abort(404)
    regarding = email.regarding
    keys = [attachment.storage_key for attachment in email.attachments]
    session = current_engage.session
    if email.status is EmailStatus.SCHEDULED:
        cancel_scheduled_job(email)  # its job would find nothing to send anyway
    session.delete(email)
    session.commit()
    for key in keys:
        current_engage.store.delete(key)
    if is_htmx():
        response = make_response(
            render_template("engage/_compose_done.html", email=None, message=_("Draft deleted."))
        )
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
        return response
    flash(_("Draft deleted."), "engage-success")
    return redirect(_back_url(regarding))


@blueprint.post("/emails/<int:email_id>/resend")
def resend_email(email_id: int) -> Any:
    """Try the failed copies of an email again."""
    user = sales_user()
    email = visible_email_or_404(email_id)
    if email.owner_id != user.id:
        abort(404)
    if not prepare_resend(email):
        abort(409)
    current_engage.session.commit()
    enqueue_delivery(email)
    flash(_("Sending the failed copies again…"), "engage-success")
    if is_htmx():
        response = make_response(render_template("engage/_email_detail.html", email=email))
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
        return response
    return redirect(url_for("engage.email_detail", email_id=email.id))


@blueprint.get("/activities/<int:activity_id>")
def activity_item(activity_id: int) -> Any:
    """One timeline entry, polled while its email is on its way."""
    user = sales_user()
    activity = current_engage.session.get(Activity, activity_id)
    if activity is None or not can_see(user, activity.owner_id, activity.owner_team):
        abort(404)
    return render_template("engage/_activity.html", activity=activity)


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


@blueprint.get("/emails/<int:email_id>/interactions")
def email_interactions(email_id: int) -> Any:
    """View message interactions (SPEC S34): KPIs per recipient and the history of events."""
    email = visible_email_or_404(email_id)
    session = current_engage.session
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
    context = {
        "email": email,
        "events": events,
        "clicks_by_link": clicks_by_link,
        "attachment_names": attachment_names,
        "opens_by_file": opens_by_file,
    }
    template = "engage/_interactions.html" if is_htmx() else "engage/interactions_page.html"
    return render_template(template, **context)


def _own_scheduled_or_404(email_id: int) -> Email:
    user = sales_user()
    email = visible_email_or_404(email_id)
    if email.owner_id != user.id:
        abort(404)
    if email.status is not EmailStatus.SCHEDULED:
        abort(409, description=_("This email is no longer scheduled: it was sent or deleted."))
    return email


@blueprint.post("/emails/<int:email_id>/reschedule")
def reschedule_email(email_id: int) -> Any:
    """Change schedule of a scheduled email (S22, S23)."""
    email = _own_scheduled_or_404(email_id)
    zone = sender_zone(sales_user(), request.form.get("browser_zone"))
    try:
        when = parse_local(request.form.get("send_at_local", ""), zone)
    except ValueError:
        flash(_("Enter a date and a time, like 2026-11-27 08:00."), "engage-error")
        return redirect(url_for("engage.email_detail", email_id=email.id)), 303
    if when <= utcnow():
        flash(_("That time has passed; choose a time in the future."), "engage-error")
        return redirect(url_for("engage.email_detail", email_id=email.id)), 303
    reschedule(email, when)
    local = when.astimezone(ZoneInfo(zone))
    flash(
        _(
            "Rescheduled: it goes out %(when)s (%(zone)s).",
            when=format_when(local),
            zone=zone,
        ),
        "engage-success",
    )
    response = redirect(url_for("engage.email_detail", email_id=email.id))
    response.headers["HX-Trigger"] = TIMELINE_CHANGED
    return response


@blueprint.post("/emails/<int:email_id>/send-now")
def send_email_now(email_id: int) -> Any:
    """Remove delay: send a scheduled email at once."""
    email = _own_scheduled_or_404(email_id)
    if send_now(email):
        enqueue_delivery(email)
        flash(_("Sending now…"), "engage-success")
    return redirect(url_for("engage.email_detail", email_id=email.id))
