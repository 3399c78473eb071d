"""An email's own pages (SPEC S23, S26, S34): the email with its recipients' delivery, its
interactions, rescheduling, sending the failed copies again, and its follow-up reminder.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, make_response, redirect, render_template, request, url_for

from .. import emails, events, reminders
from ..access import can_see
from ..context import current_engage
from ..i18n import format_local
from ..i18n import gettext as _
from ..local_time import read_future_time, sender_zone
from ..models import Activity, Email, EmailStatus, utcnow
from ..send_later import reschedule, send_now
from .blueprint import blueprint
from .compose_form import TIMELINE_CHANGED, posted_form
from .guards import sales_user, visible_email_or_404
from .htmx import is_htmx


@blueprint.get("/emails/<engage_id:email_id>")
def email_detail(email_id: int) -> Any:
    """One email, read-only, with its parties and each recipient's delivery."""
    email = visible_email_or_404(email_id)
    regarding = current_engage.records.get(email.regarding) if email.regarding else None
    context = {"email": email, "regarding": regarding}
    if is_htmx():
        return render_template("engage/_email_detail.html", **context)
    return render_template("engage/email_page.html", **context)


@blueprint.post("/emails/<engage_id:email_id>/resend")
def resend_email(email_id: int) -> Any:
    """Try the failed copies of an email again."""
    user = sales_user()
    email = visible_email_or_404(email_id)
    if email.owner_id != user.id:
        abort(404)
    if not emails.resend_failed(current_engage.session, email):
        abort(409)
    flash(_("Sending the failed copies again…"), "engage-success")
    if is_htmx():
        response = make_response(render_template("engage/_email_detail.html", email=email))
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
        return response
    return redirect(url_for("engage.email_detail", email_id=email.id))


@blueprint.get("/activities/<engage_id:activity_id>")
def activity_item(activity_id: int) -> Any:
    """One timeline entry, polled while its email is on its way."""
    user = sales_user()
    activity = current_engage.session.get(Activity, activity_id)
    if activity is None or not can_see(user, activity.owner_id, activity.owner_team):
        abort(404)
    return render_template("engage/_activity.html", activity=activity)


@blueprint.get("/emails/<engage_id:email_id>/interactions")
def email_interactions(email_id: int) -> Any:
    """View message interactions (SPEC S34): KPIs per recipient and the history of events."""
    email = visible_email_or_404(email_id)
    context = events.interactions(current_engage.session, email)
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


@blueprint.post("/emails/<engage_id:email_id>/reschedule")
def reschedule_email(email_id: int) -> Any:
    """Change schedule of a scheduled email (S22, S23)."""
    email = _own_scheduled_or_404(email_id)
    zone = sender_zone(sales_user(), request.form.get("browser_zone"))
    typed = request.form.get("send_at_local", "")
    try:
        when = read_future_time(typed, zone, now=utcnow())
    except ValueError as refusal:
        # The page comes back with the error next to the field and the time as typed.
        regarding = current_engage.records.get(email.regarding) if email.regarding else None
        page = render_template(
            "engage/email_page.html",
            email=email,
            regarding=regarding,
            reschedule_error=str(refusal),
            reschedule_value=typed,
        )
        return page, 422
    reschedule(email, when)
    flash(_("Rescheduled: it goes out %(when)s.", when=format_local(when, zone)), "engage-success")
    response = redirect(url_for("engage.email_detail", email_id=email.id))
    response.headers["HX-Trigger"] = TIMELINE_CHANGED
    return response


@blueprint.post("/emails/<engage_id:email_id>/send-now")
def send_email_now(email_id: int) -> Any:
    """Remove delay: send a scheduled email at once."""
    email = _own_scheduled_or_404(email_id)
    if send_now(email):
        flash(_("Sending now…"), "engage-success")
    return redirect(url_for("engage.email_detail", email_id=email.id))


def engage_reminder_panel(email: Email) -> reminders.ReminderPanel | None:
    """The Set reminder section of an email's page, for its owner (a template global)."""
    user = current_engage.user
    if user is None:
        return None
    return reminders.email_panel(
        email,
        user,
        zone=sender_zone(user, request.values.get("browser_zone")),
        action_url=url_for("engage.email_reminder", email_id=email.id),
    )


blueprint.add_app_template_global(engage_reminder_panel, "engage_reminder_panel")


@blueprint.post("/emails/<engage_id:email_id>/reminder")
def email_reminder(email_id: int) -> Any:
    """Set, change or remove the reminder of a sent or scheduled email (S23, S25, S26)."""
    user = sales_user()
    email = visible_email_or_404(email_id)
    if email.owner_id != user.id or email.status is EmailStatus.DRAFT:
        abort(404)  # a draft's reminder is set in its compose panel
    session = current_engage.session
    if request.form.get("action") == "remove_reminder":
        reminders.remove_reminder(session, email)
        flash(_("Reminder removed."), "engage-success")
        return redirect(url_for("engage.email_detail", email_id=email.id), 303)
    reminder, errors = posted_form().dialog_reminder(
        followed=email.followed,
        send_at=email.scheduled_at if email.status is EmailStatus.SCHEDULED else None,
        zone=sender_zone(user, request.form.get("browser_zone")),
        files=[file_id for file_id, _name in reminders.followed_files(email)],
        recipients=[p.address for p in email.recipients],
    )
    if errors or reminder is None:
        regarding = current_engage.records.get(email.regarding) if email.regarding else None
        return (
            render_template(
                "engage/email_page.html",
                email=email,
                regarding=regarding,
                reminder_errors=errors,
            ),
            422,
        )
    reminders.set_reminder(session, email, reminder)
    flash(_("Reminder set."), "engage-success")
    return redirect(url_for("engage.email_detail", email_id=email.id), 303)
