"""The demo CRM's pages: sign-in, home, record pages with engage's timeline, and the mailbox."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from email import policy
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from engage import RecordRef, note_opportunity_won

from .forms import (
    OpportunityWonForm,
    PersonSettingsForm,
    ReplyForm,
    SignInForm,
    SignOutForm,
    choice,
    country_names,
)
from .mailbox import (
    attachment_parts,
    build_reply,
    framed_html,
    parse_message,
    reply_recipients,
    store_message,
    view_message,
)
from .models import (
    Account,
    Contact,
    Lead,
    MailMessage,
    MailRecipient,
    Opportunity,
    User,
    db,
)
from .records import DemoRecords, order_number

blueprint = Blueprint(
    "demo",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/demo-static",
)


def role_label(role: str) -> str:
    """How a demo user's role reads on the page."""
    labels = {
        "salesperson": _("Salesperson"),
        "sales_manager": _("Sales manager"),
        "admin": _("Admin"),
    }
    return labels.get(role, _("No role"))


def follow_label(value: str) -> str:
    """How a follow-email preference reads on the page."""
    return _("Allow") if value == "allow" else _("Do not allow")


def stage_label(stage: str) -> str:
    """How an opportunity's sales stage reads on the page."""
    labels = {
        "qualify": _("Qualify"),
        "develop": _("Develop"),
        "propose": _("Propose"),
        "close": _("Close"),
    }
    return labels.get(stage, stage)


@blueprint.app_context_processor
def _demo_globals() -> dict[str, Any]:
    return {
        "role_label": role_label,
        "stage_label": stage_label,
        "follow_label": follow_label,
        "sign_out_form": SignOutForm,
        "won_form": OpportunityWonForm,
        "order_number": order_number,
        "country_names": country_names,
    }


def _safe_next(target: str | None) -> str | None:
    # Only a path on this site: an absolute URL in ?next= would make sign-in an open redirect.
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


# -- signing in -----------------------------------------------------------------------------


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """Pick one of the demo users; no password, since everything here is made up."""
    form = SignInForm()
    users = db.session.scalars(sa.select(User).order_by(User.id)).all()
    if form.validate_on_submit():
        user = db.session.get(User, form.user_id.data)
        if user is not None:
            login_user(user)
            flash(_("Signed in as %(name)s.", name=user.name), "success")
            return redirect(_safe_next(request.args.get("next")) or url_for("demo.home"))
        form.user_id.errors.append(_("That user does not exist. Pick one from the list."))
    status = 400 if request.method == "POST" else 200
    return render_template("demo/sign_in.html", form=form, users=users), status


@blueprint.post("/sign-out")
def sign_out() -> Any:
    """Sign out and go back to the sign-in page."""
    form = SignOutForm()
    if not form.validate_on_submit():
        abort(400)
    logout_user()
    flash(_("Signed out."), "success")
    return redirect(url_for("demo.sign_in"))


# -- records --------------------------------------------------------------------------------


def _all(model: type[Any], *order: Any, owner_id: int | None = None) -> list[Any]:
    query = sa.select(model).order_by(*order)
    if owner_id is not None:
        query = query.where(model.owner_id == owner_id)
    return list(db.session.scalars(query))


@blueprint.get("/")
@login_required
def home() -> str:
    """The signed-in user's records, then every record, by type."""
    sections = []
    for owner_id in (current_user.id, None):
        sections.append(
            {
                "contacts": _all(Contact, Contact.last_name, Contact.id, owner_id=owner_id),
                "leads": _all(Lead, Lead.last_name, Lead.id, owner_id=owner_id),
                "accounts": _all(Account, Account.name, Account.id, owner_id=owner_id),
                "opportunities": _all(
                    Opportunity, Opportunity.name, Opportunity.id, owner_id=owner_id
                ),
            }
        )
    return render_template("demo/home.html", mine=sections[0], everything=sections[1])


@blueprint.get("/people")
@login_required
def people() -> str:
    """Every contact and lead in one list, to select some and email them all (bulk, S10)."""
    contacts = _all(Contact, Contact.last_name, Contact.id)
    leads = _all(Lead, Lead.last_name, Lead.id)
    return render_template("demo/people.html", contacts=contacts, leads=leads)


def _get_or_404(model: type[Any], record_id: int) -> Any:
    obj = db.session.get(model, record_id)
    if obj is None:
        abort(404)
    return obj


@blueprint.get("/contacts/<int:record_id>")
@login_required
def contact(record_id: int) -> str:
    """A contact's page: their details and engage's timeline."""
    obj = _get_or_404(Contact, record_id)
    return render_template(
        "demo/record.html", kind="contact", obj=obj, ref=RecordRef("contact", str(obj.id))
    )


@blueprint.get("/leads/<int:record_id>")
@login_required
def lead(record_id: int) -> str:
    """A lead's page: their details and engage's timeline."""
    obj = _get_or_404(Lead, record_id)
    return render_template(
        "demo/record.html", kind="lead", obj=obj, ref=RecordRef("lead", str(obj.id))
    )


@blueprint.get("/accounts/<int:record_id>")
@login_required
def account(record_id: int) -> str:
    """An account's page: its details, contacts, opportunities and engage's timeline."""
    obj = _get_or_404(Account, record_id)
    return render_template(
        "demo/record.html", kind="account", obj=obj, ref=RecordRef("account", str(obj.id))
    )


@blueprint.get("/opportunities/<int:record_id>")
@login_required
def opportunity(record_id: int) -> str:
    """An opportunity's page: its details and engage's timeline."""
    obj = _get_or_404(Opportunity, record_id)
    return render_template(
        "demo/record.html",
        kind="opportunity",
        obj=obj,
        ref=RecordRef("opportunity", str(obj.id)),
    )


@blueprint.post("/opportunities/<int:record_id>/won")
@login_required
def opportunity_won(record_id: int) -> Any:
    """Mark an opportunity won (its stage becomes Close), or open it again.

    A win is told to engage at once, as a host should, so the templates of the emails about
    this opportunity count the sale (SPEC S31); engage's sweep would notice within the hour.
    """
    obj = _get_or_404(Opportunity, record_id)
    form = OpportunityWonForm()
    if not form.validate_on_submit():
        abort(400)
    obj.won = form.won.data == "1"
    if obj.won:
        obj.stage = "close"
    db.session.commit()
    if not obj.won:
        flash(_("“%(name)s” is open again.", name=obj.name), "success")
    else:
        flash(_("“%(name)s” is marked as won.", name=obj.name), "success")
        if not note_opportunity_won(RecordRef("opportunity", str(obj.id))):
            flash(
                _(
                    "engage could not be told at once (its queue is not reachable); "
                    "it notices the win at its next hourly check."
                ),
                "info",
            )
    return redirect(url_for("demo.opportunity", record_id=obj.id))


_PEOPLE: dict[str, tuple[type[Contact] | type[Lead], str]] = {
    "contacts": (Contact, "demo.contact"),
    "leads": (Lead, "demo.lead"),
}


@blueprint.route("/<any(contacts, leads):kind>/<int:record_id>/edit", methods=["GET", "POST"])
@login_required
def edit_person(kind: str, record_id: int) -> Any:
    """Change a contact's or lead's postal address and follow-email preference."""
    model, record_endpoint = _PEOPLE[kind]
    obj = _get_or_404(model, record_id)
    form = PersonSettingsForm(obj=obj)
    if form.validate_on_submit():
        for name in ("street", "postal_code", "city", "region", "country", "follow_preference"):
            setattr(obj, name, getattr(form, name).data or "")
        db.session.commit()
        flash(_("Saved the address and follow-email preference."), "success")
        return redirect(url_for(record_endpoint, record_id=obj.id))
    status = 400 if request.method == "POST" else 200
    return (
        render_template(
            "demo/edit_person.html",
            form=form,
            obj=obj,
            kind=kind,
            record_url=url_for(record_endpoint, record_id=obj.id),
        ),
        status,
    )


# -- mailbox --------------------------------------------------------------------------------


@blueprint.get("/mailbox")
@login_required
def mailbox() -> str:
    """Every message the SMTP sink received, newest first, optionally for one recipient."""
    recipient = request.args.get("recipient", "").strip()
    query = sa.select(MailMessage).order_by(MailMessage.received_at.desc(), MailMessage.id.desc())
    if recipient:
        query = query.where(
            MailMessage.recipients.any(sa.func.lower(MailRecipient.address) == recipient.casefold())
        )
    messages = db.session.scalars(query).all()
    addresses = db.session.scalars(
        sa.select(MailRecipient.address).distinct().order_by(MailRecipient.address)
    ).all()
    return render_template(
        "demo/mailbox.html", messages=messages, addresses=addresses, recipient=recipient
    )


def _reply_form(message: MailMessage, reading_as: str) -> ReplyForm:
    addresses = [r.address for r in message.recipients]
    form = ReplyForm()
    form.reply_as.choices = [choice(a, a) for a in addresses]
    if request.method == "GET":
        wanted = reading_as.casefold()
        form.reply_as.data = next((a for a in addresses if a.casefold() == wanted), None) or (
            addresses[0] if addresses else None
        )
    return form


def _render_message(message: MailMessage, form: ReplyForm, reading_as: str) -> str:
    view = view_message(message.raw)
    return render_template(
        "demo/mail_message.html",
        message=message,
        view=view,
        srcdoc=framed_html(view.html) if view.html is not None else None,
        recipient=reading_as,
        reply_form=form,
    )


@blueprint.get("/mailbox/<int:message_id>")
@login_required
def mail_message(message_id: int) -> str:
    """One received message: headers, text part, HTML part in a sandboxed frame, and a
    form to answer it as one of its recipients."""
    message = _get_or_404(MailMessage, message_id)
    reading_as = request.args.get("recipient", "")
    return _render_message(message, _reply_form(message, reading_as), reading_as)


def _sender_name(address: str) -> str:
    # The reply reads as coming from the person the CRM knows at that address.
    user = db.session.scalars(sa.select(User).where(User.email == address)).first()
    if user is not None:
        return user.name
    found = DemoRecords().find_by_email(address)
    return found[0].name if found else ""


#: Seconds the Reply button waits for engage's inbound endpoint.
INBOUND_TIMEOUT = 15

# A direct connection: the endpoint is this very server, never something behind a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def hand_reply_to_engage(raw: bytes) -> dict[str, Any]:
    """Post a reply to engage's inbound endpoint over HTTP, as a mail provider's webhook would.

    The endpoint is this server's own, reached at the address the browser used, with the
    demo's ``ENGAGE_INBOUND_TOKEN``.

    :returns: engage's answer (``status``, ``email_id``, ``party_id``).
    :raises OSError: when the endpoint cannot be reached or refuses the message; the error's
        text says why.
    """
    url = url_for("engage.inbound_replies", _external=True)
    call = urllib.request.Request(
        url,
        data=raw,
        method="POST",
        headers={
            "Content-Type": "message/rfc822",
            "Authorization": f"Bearer {current_app.config['ENGAGE_INBOUND_TOKEN']}",
        },
    )
    try:
        with _DIRECT.open(call, timeout=INBOUND_TIMEOUT) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as exc:
        raise OSError(f"{url} answered {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise OSError(f"{url} cannot be reached ({exc.reason})") from exc
    except ValueError as exc:
        raise OSError(f"{url} did not answer with JSON") from exc


def _engage_says(outcome: dict[str, Any]) -> tuple[str, str]:
    """What the mailbox page says about engage's answer: (message, flash category)."""
    said = {
        "matched": (_("engage recorded the reply on the email's timeline."), "success"),
        "auto_reply": (
            _("engage recorded it as an automatic reply, which does not count as a reply."),
            "info",
        ),
        "duplicate": (_("engage had already recorded this reply."), "info"),
        "unmatched": (
            _("engage did not record it: it answers no email that engage sent."),
            "info",
        ),
        "unknown_sender": (
            _("engage did not record it: the sender is not a recipient of the email it answers."),
            "info",
        ),
    }
    return said.get(
        str(outcome.get("status")),
        (_("engage answered something unexpected: %(answer)s", answer=outcome), "error"),
    )


@blueprint.post("/mailbox/<int:message_id>/reply")
@login_required
def reply(message_id: int) -> Any:
    """Answer a message as one of its recipients.

    The reply lands in the mailbox, and goes to engage's inbound endpoint over HTTP as raw
    RFC 822 bytes, so engage records it through the same door as replies from a real mail
    provider.
    """
    message = _get_or_404(MailMessage, message_id)
    reading_as = request.args.get("recipient", "")
    form = _reply_form(message, reading_as)
    if not form.validate_on_submit():
        return _render_message(message, form, reading_as), 400
    reply_as = form.reply_as.data
    answer = build_reply(
        message.raw, reply_as=reply_as, text=form.text.data, name=_sender_name(reply_as)
    )
    recipients = reply_recipients(answer)
    raw = answer.as_bytes(policy=policy.SMTP)
    stored = store_message(db.session, raw, envelope_from=reply_as, envelope_to=recipients)
    db.session.flush()
    stored_id = stored.id
    # Commit before calling engage: on SQLite its write must not wait for ours.
    db.session.commit()
    flash(_("Reply sent to %(to)s.", to=", ".join(recipients)), "success")
    try:
        flash(*_engage_says(hand_reply_to_engage(raw)))
    except OSError as exc:
        flash(
            _(
                "engage could not be told about this reply, so its timeline does not show it: "
                "%(error)s",
                error=str(exc),
            ),
            "error",
        )
    return redirect(url_for("demo.mail_message", message_id=stored_id))


@blueprint.get("/mailbox/<int:message_id>/raw")
@login_required
def mail_raw(message_id: int) -> Response:
    """The message exactly as received, as an ``.eml`` download."""
    message = _get_or_404(MailMessage, message_id)
    return Response(
        message.raw,
        mimetype="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="message-{message.id}.eml"'},
    )


@blueprint.get("/mailbox/<int:message_id>/attachments/<int:index>")
@login_required
def mail_attachment(message_id: int, index: int) -> Response:
    """One MIME attachment of a received message, as a download (never shown inline)."""
    message = _get_or_404(MailMessage, message_id)
    parts = attachment_parts(parse_message(message.raw))
    if index >= len(parts):
        abort(404)
    part = parts[index]
    filename = (part.get_filename() or f"attachment-{index + 1}").replace('"', "")
    response = Response(part.get_payload(decode=True) or b"", mimetype="application/octet-stream")
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    return response
