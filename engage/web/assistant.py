"""The assistant panel (SPEC S12, S33, S35, S37): the user's action cards, and what a rep does
with one (dismiss, snooze, log a phone call).

The cards themselves, and which a user sees, are :mod:`engage.cards`.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup

from .. import cards, reminders
from ..context import current_engage
from ..i18n import gettext as _
from ..ids import parse_id
from ..local_time import sender_zone
from ..models import Card, utcnow
from ..records import EngageUser, RecordRef
from .blueprint import blueprint
from .compose_form import TIMELINE_CHANGED
from .guards import sales_user
from .htmx import is_htmx


def engage_assistant() -> Markup:
    """Markup that loads the signed-in user's assistant panel into a host page.

    With JavaScript, htmx fetches the panel when the page loads and then keeps it current;
    without it, a link leads to the assistant as a page of its own.
    """
    url = url_for("engage.assistant")
    return Markup(render_template("engage/_assistant_slot.html", url=url))


@blueprint.record_once
def _register_assistant_global(state: Any) -> None:
    state.app.add_template_global(engage_assistant, "engage_assistant")


def _own_card_or_404(card_id: int) -> tuple[EngageUser, Card]:
    """The signed-in user's own card. A manager sees the team's cards (S37) but acts only on
    their own, as with drafts, reminders and attachments: anyone else's card is 404."""
    user = sales_user()
    card = current_engage.session.get(Card, card_id)
    if card is None or card.owner_id != user.id:
        abort(404)
    return user, card


def _card_context(panel: cards.Panel) -> dict[str, Any]:
    """What the card templates need besides the cards: records and owners, looked up once."""
    records: dict[RecordRef, Any] = {}
    away: dict[int, Any] = {}
    session = current_engage.session
    for card in panel.cards:
        ref = card.regarding
        if ref is not None and ref not in records:
            records[ref] = current_engage.records.get(ref)
        if card.kind == "reminder":
            back = reminders.back_from_absence(session, card)
            if back is not None:
                away[card.id] = back
    return {"records": records, "away": away}


def _render(
    template: str, user: EngageUser, *, panel: cards.Panel | None = None, **context: Any
) -> str:
    """``template`` with the user's panel and what its cards need (records, the poll interval)."""
    panel = panel or cards.panel_for(current_engage.session, user)
    return render_template(
        template,
        panel=panel,
        user=user,
        poll=current_app.config["ENGAGE_ASSISTANT_POLL_SECONDS"],
        **_card_context(panel),
        **context,
    )


def _render_panel(user: EngageUser, *, form: str | None = None, **form_context: Any) -> str:
    return _render("engage/_assistant.html", user, form=form, **form_context)


def _panel_response(user: EngageUser, **kwargs: Any) -> Any:
    """After an action: the whole panel for htmx, a redirect to the assistant page otherwise."""
    if is_htmx():
        return _render_panel(user, **kwargs)
    return redirect(url_for("engage.assistant"))


@blueprint.get("/assistant")
def assistant() -> Any:
    """The assistant panel (S33): the partial for htmx, a page of its own otherwise.

    The panel polls ``?part=cards&v=<version>``; when nothing it shows has changed since that
    version the answer is ``204 No Content``, which htmx leaves alone. Polling rather than
    server-sent events: engage runs in the host's ordinary (sync or threaded) workers, where
    each open SSE stream would hold a worker for as long as a page is open, and plain short
    requests pass every proxy and load balancer unchanged.
    """
    user = sales_user()
    if is_htmx() and request.args.get("part") == "cards":
        panel = cards.panel_for(current_engage.session, user)
        if request.args.get("v") == panel.version:
            response = current_app.response_class(status=204)
        else:
            response = current_app.response_class(
                _render("engage/_assistant_cards.html", user, panel=panel)
            )
        response.headers["ETag"] = f'"{panel.version}"'
        response.headers["Cache-Control"] = "no-store"
        return response
    undo = _undo_context(user, request.args.get("undo"))
    if is_htmx():
        return _render_panel(user, **undo)
    return _render("engage/assistant_page.html", user, **undo)


def _undo_context(user: EngageUser, card_id: str | None) -> dict[str, Any]:
    """The "Dismissed … Undo" note after a card was dismissed or snoozed (none otherwise)."""
    card = current_engage.session.get(Card, parse_id(card_id or "")) if card_id else None
    if card is None or card.owner_id != user.id:
        return {"form": None}
    if card.dismissed_at is None and (card.snoozed_until is None or card.snoozed_until <= utcnow()):
        return {"form": None}
    zone = sender_zone(user, request.values.get("browser_zone"))
    until = card.snoozed_until.astimezone(ZoneInfo(zone)) if card.snoozed_until else None
    return {"form": "_card_undo", "card": card, "until": until, "restored": False}


def _after_card_action(user: EngageUser, card: Card) -> Any:
    """The panel with a note saying what happened to ``card`` and offering Undo."""
    if is_htmx():
        return _render_panel(user, **_undo_context(user, str(card.id)))
    return redirect(url_for("engage.assistant", undo=card.id))


@blueprint.post("/assistant/read")
def assistant_mark_read() -> Any:
    """Mark all of the user's cards read: the unread count goes back to zero."""
    user = sales_user()
    cards.mark_all_read(current_engage.session, user)
    current_engage.session.commit()
    return _panel_response(user)


@blueprint.post("/assistant/cards/<engage_id:card_id>/when-back")
def card_remind_when_back(card_id: int) -> Any:
    """*Remind me when they are back* on a reminder card that fired during an absence (S42)."""
    user, card = _own_card_or_404(card_id)
    session = current_engage.session
    if reminders.remind_when_back(session, card) is None:
        abort(409, description=_("They are back already: there is nothing to wait for."))
    return _panel_response(user)


@blueprint.post("/assistant/cards/<engage_id:card_id>/dismiss")
def card_dismiss(card_id: int) -> Any:
    """Dismiss a card: it leaves the panel for good."""
    user, card = _own_card_or_404(card_id)
    cards.dismiss(current_engage.session, card)
    return _after_card_action(user, card)


@blueprint.post("/assistant/cards/<engage_id:card_id>/restore")
def card_restore(card_id: int) -> Any:
    """Undo of Dismiss or Snooze: the card comes back to the panel."""
    user, card = _own_card_or_404(card_id)
    cards.restore(current_engage.session, card)
    if is_htmx():
        return _render_panel(user, form="_card_undo", card=card, until=None, restored=True)
    return redirect(url_for("engage.assistant"))


def _form_page(user: EngageUser, form: str, **context: Any) -> Any:
    """A card's form: alone for htmx (into the panel's form area), in the page otherwise."""
    if is_htmx():
        return render_template(f"engage/{form}.html", user=user, **context)
    return _render("engage/assistant_page.html", user, form=form, **context)


def _failed_form(user: EngageUser, form: str, **context: Any) -> Any:
    # The form comes back with its error inside the panel, answered 200 so that htmx swaps it.
    if is_htmx():
        return _render_panel(user, form=form, **context)
    return _form_page(user, form, **context), 422


@blueprint.route("/assistant/cards/<engage_id:card_id>/snooze", methods=["GET", "POST"])
def card_snooze(card_id: int) -> Any:
    """Snooze a card until a chosen time (a quick choice or a time in the user's zone)."""
    user, card = _own_card_or_404(card_id)
    zone = sender_zone(user, request.values.get("browser_zone"))
    local_now = utcnow().astimezone(ZoneInfo(zone))
    context: dict[str, Any] = {
        "card": card,
        "zone": zone,
        "choices": cards.snooze_choices(local_now),
        "until_value": request.form.get("until", ""),
        "min_value": local_now.strftime("%Y-%m-%dT%H:%M"),
        "error": "",
    }
    if request.method == "GET":
        return _form_page(user, "_snooze_form", **context)
    value = request.form.get("choice") or request.form.get("until", "")
    try:
        until = cards.snooze_until(value, zone)
    except ValueError as exc:
        context["error"] = str(exc)
        return _failed_form(user, "_snooze_form", **context)
    cards.snooze(current_engage.session, card, until)
    return _after_card_action(user, card)


@blueprint.route("/assistant/cards/<engage_id:card_id>/phone-call", methods=["GET", "POST"])
def card_phone_call(card_id: int) -> Any:
    """Create a phone call activity from a card, pre-filled from its record (S33)."""
    user, card = _own_card_or_404(card_id)
    record = current_engage.records.get(card.regarding) if card.regarding else None
    if request.method == "GET":
        who = card.party.name if card.party and card.party.name else None
        who = who or (record.name if record else "")
        subject = card.email.subject if card.email else card.title
        context = {
            "card": card,
            "record": record,
            "subject": _("Call %(who)s about ‘%(subject)s’", who=who, subject=subject)
            if who
            else _("Call about ‘%(subject)s’", subject=subject),
            "phone": record.phone if record and record.phone else "",
            "notes": "",
            "error": "",
        }
        return _form_page(user, "_phone_call_form", **context)
    subject = request.form.get("subject", "")
    phone = request.form.get("phone", "")
    notes = request.form.get("notes", "")
    try:
        cards.add_phone_call(
            current_engage.session, user, card, subject=subject, phone=phone, notes=notes
        )
    except ValueError as exc:
        context = {
            "card": card,
            "record": record,
            "subject": subject,
            "phone": phone,
            "notes": notes,
            "error": str(exc),
        }
        return _failed_form(user, "_phone_call_form", **context)
    card.read_at = card.read_at or utcnow()
    current_engage.session.commit()
    response = _panel_response(user)
    if is_htmx():
        response = current_app.make_response(response)
        # The record's timeline on the same page reloads its list and shows the call.
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
    return response
