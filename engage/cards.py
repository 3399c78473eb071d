"""Action cards and the assistant panel (SPEC S12, S33, S35, S37).

A card tells a rep that something happened which asks for their attention: a recipient opened
a followed email (``kind="opened"``, created here from the event worker) or a follow-up
reminder fired (``kind="reminder"``, created by :mod:`engage.reminders` through
:func:`create_card`). Cards are listed in the assistant panel, high priority first, then newest.

Public API::

    create_card(session, *, owner_id: str, owner_team: str | None, kind: str, priority: str,
                title: str, body: str = "", email_id: int | None = None,
                regarding: RecordRef | None = None, party_id: int | None = None,
                reminder_id: int | None = None) -> Card
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from .access import can_see, owned_by_visible, sales_user
from .extension import current_engage
from .htmx import is_htmx
from .i18n import gettext as _
from .i18n import ngettext
from .models import (
    Activity,
    ActivityKind,
    Base,
    Email,
    Party,
    PartyRole,
    UTCDateTime,
    affected_rows,
    utcnow,
)
from .records import EngageUser, RecordRef

#: What a card can be about.
KINDS = frozenset({"opened", "reminder"})
#: How urgent a card is; ``high`` cards come first in the panel.
PRIORITIES = frozenset({"high", "normal"})


class Card(Base):
    """One action card in a rep's assistant panel."""

    __tablename__ = "engage_card"
    __table_args__ = (
        # The panel: a user's (or team's) live cards, high priority first, newest first.
        sa.Index(
            "ix_engage_card_panel",
            "owner_id",
            "dismissed_at",
            "snoozed_until",
            "priority",
            sa.desc("created_at"),
        ),
        sa.Index("ix_engage_card_team", "owner_team", "dismissed_at"),
        sa.Index("ix_engage_card_email", "email_id", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[str] = mapped_column(sa.String(100))
    owner_team: Mapped[str | None] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(20))
    priority: Mapped[str] = mapped_column(sa.String(10), default="normal")
    title: Mapped[str] = mapped_column(sa.String(300), default="")
    body: Mapped[str] = mapped_column(sa.Text, default="")
    email_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_email.id", ondelete="CASCADE")
    )
    record_type: Mapped[str | None] = mapped_column(sa.String(50))
    record_id: Mapped[str | None] = mapped_column(sa.String(100))
    party_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("engage_party.id", ondelete="SET NULL")
    )
    #: The reminder that fired this card; a plain id, the reminders table is not ours.
    reminder_id: Mapped[int | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    email: Mapped[Email | None] = relationship()
    party: Mapped[Party | None] = relationship()

    @property
    def regarding(self) -> RecordRef | None:
        """The record the card is about (the email's regarding record), if any."""
        if self.record_type and self.record_id:
            return RecordRef(self.record_type, self.record_id)
        return None

    @property
    def owner_label(self) -> str:
        """Who the card is for, as a sales manager reads it: the email's sender, else an id."""
        if self.email is not None:
            for party in self.email.parties_in(PartyRole.FROM):
                return party.name or party.address
        return _("user %(id)s", id=self.owner_id)


def create_card(
    session: Session,
    *,
    owner_id: str,
    owner_team: str | None,
    kind: str,
    priority: str,
    title: str,
    body: str = "",
    email_id: int | None = None,
    regarding: RecordRef | None = None,
    party_id: int | None = None,
    reminder_id: int | None = None,
) -> Card:
    """Add a card to ``owner_id``'s assistant panel; flushes, the caller commits.

    :param owner_id: the host user the card is for.
    :param owner_team: their team, so their sales manager sees the card too.
    :param kind: ``"opened"`` or ``"reminder"``.
    :param priority: ``"high"`` or ``"normal"``.
    :param title: what happened, in one line the rep reads first.
    :param body: more detail, shown under the title.
    :param email_id: the email the card is about; the card links to it.
    :param regarding: the email's regarding record; the card links to it and a phone call
        created from the card lands on its timeline.
    :param party_id: the recipient who did something (opened), if any.
    :param reminder_id: the reminder that fired this card, if any.
    :raises ValueError: for an unknown kind or priority.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown card kind {kind!r}; expected one of {sorted(KINDS)}")
    if priority not in PRIORITIES:
        raise ValueError(
            f"unknown card priority {priority!r}; expected one of {sorted(PRIORITIES)}"
        )
    card = Card(
        owner_id=str(owner_id),
        owner_team=owner_team,
        kind=kind,
        priority=priority,
        title=title[:300],
        body=body,
        email_id=email_id,
        record_type=regarding.type if regarding else None,
        record_id=regarding.id if regarding else None,
        party_id=party_id,
        reminder_id=reminder_id,
        created_at=utcnow(),
    )
    session.add(card)
    session.flush()
    return card


# -- Open cards (S12) ----------------------------------------------------------------------


def cards_for_opens(session: Session, opens: list[tuple[Party, datetime]]) -> list[Card]:
    """Create the sender's open cards for a batch of **human** opens; the caller commits.

    Called by the event worker (:func:`engage.events.record_interactions`) with the human opens
    of one batch, in time order. An email gets an open card on its first human open, and
    another only once ``ENGAGE_OPEN_CARD_QUIET_MINUTES`` have passed since its last open card,
    so that a recipient reading a message five times in a row makes one card, not five. No card
    is made while the organisation has email engagement disabled (S11), nor for bulk or
    unfollowed emails.
    """
    from .settings import engagement_enabled

    if not opens or not engagement_enabled():
        return []
    quiet = timedelta(minutes=float(current_app.config["ENGAGE_OPEN_CARD_QUIET_MINUTES"]))
    email_ids = {party.email_id for party, _when in opens}
    last: dict[int, datetime] = dict(
        session.execute(  # type: ignore[arg-type]  # rows are (email_id, newest) pairs
            sa.select(Card.email_id, sa.func.max(Card.created_at))
            .where(Card.email_id.in_(email_ids), Card.kind == "opened")
            .group_by(Card.email_id)
        ).all()
    )
    made = []
    for party, when in opens:
        email = party.email
        if not email.followed or email.bulk:
            continue
        previous = last.get(email.id)
        if previous is not None and when - previous < quiet:
            continue
        last[email.id] = max(when, utcnow())
        who = party.name or _record_name(party.record) or party.address
        subject = email.subject or _("(no subject)")
        made.append(
            create_card(
                session,
                owner_id=email.owner_id,
                owner_team=email.owner_team,
                kind="opened",
                priority="normal",
                title=_("%(who)s opened ‘%(subject)s’", who=who, subject=subject),
                body=_("First open by %(address)s.", address=party.address)
                if party.opens <= 1
                else ngettext(
                    "%(address)s has opened it %(num)d time.",
                    "%(address)s has opened it %(num)d times.",
                    party.opens,
                    address=party.address,
                ),
                email_id=email.id,
                regarding=email.regarding,
                party_id=party.id,
            )
        )
    return made


def _record_name(ref: RecordRef | None) -> str:
    record = current_engage.records.get(ref) if ref is not None else None
    return record.name if record is not None else ""


# -- The panel's rules ---------------------------------------------------------------------


def _live(user: EngageUser, now: datetime) -> list[sa.ColumnElement[bool]]:
    """Cards ``user`` may see that are neither dismissed nor snoozed into the future."""
    return [
        owned_by_visible(user, Card.owner_id, Card.owner_team),
        Card.dismissed_at.is_(None),
        sa.or_(Card.snoozed_until.is_(None), Card.snoozed_until <= now),
    ]


@dataclass(frozen=True, slots=True)
class Panel:
    """What the assistant panel shows, and the version a poll compares against."""

    cards: list[Card]
    unread: int
    version: str


def panel_for(session: Session, user: EngageUser, *, limit: int = 50) -> Panel:
    """The cards of ``user``'s panel: high priority first, then newest.

    A sales manager also sees the team's cards (S37). ``unread`` counts only the user's own
    cards that are not marked read: a manager looking at a rep's card does not mark it read for
    that rep. ``version`` changes whenever anything the panel shows changes.
    """
    now = utcnow()
    cards = list(
        session.scalars(
            sa.select(Card)
            .where(*_live(user, now))
            .order_by(
                sa.case((Card.priority == "high", 0), else_=1),
                Card.created_at.desc(),
                Card.id.desc(),
            )
            .limit(limit)
            .options(selectinload(Card.email), selectinload(Card.party))
        )
    )
    unread = (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Card)
            .where(*_live(user, now), Card.owner_id == user.id, Card.read_at.is_(None))
        )
        or 0
    )
    fingerprint = "|".join(f"{c.id}:{c.priority}:{c.read_at is not None}:{c.title}" for c in cards)
    version = hashlib.sha256(f"{unread}|{fingerprint}".encode()).hexdigest()[:16]
    return Panel(cards, unread, version)


def mark_all_read(session: Session, user: EngageUser) -> int:
    """Mark the user's own live cards read; returns how many changed. The caller commits."""
    now = utcnow()
    result = session.execute(
        sa.update(Card)
        .where(*_live(user, now), Card.owner_id == user.id, Card.read_at.is_(None))
        .values(read_at=now)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(result)


def snooze_choices(now_local: datetime) -> list[tuple[str, str, datetime]]:
    """The quick snooze choices: ``(key, label, local time)``, from a local "now"."""
    tomorrow = (now_local + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    days_to_monday = (7 - now_local.weekday()) % 7 or 7
    monday = (now_local + timedelta(days=days_to_monday)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    return [
        ("1h", _("1 hour"), now_local + timedelta(hours=1)),
        ("3h", _("3 hours"), now_local + timedelta(hours=3)),
        ("tomorrow", _("Tomorrow 08:00"), tomorrow),
        ("monday", _("Monday 08:00"), monday),
    ]


def snooze_until(value: str, zone: str, *, now: datetime | None = None) -> datetime:
    """When a snooze chosen as ``value`` ends, in UTC.

    ``value`` is a quick choice key (see :func:`snooze_choices`) or a ``datetime-local`` value
    in ``zone``.

    :raises ValueError: with a sentence for the user, for a malformed or past time.
    """
    from .send_later import parse_local

    now = now or utcnow()
    quick = {key: when for key, _label, when in snooze_choices(now.astimezone(ZoneInfo(zone)))}
    if value in quick:
        return quick[value].astimezone(ZoneInfo("UTC"))
    try:
        until = parse_local(value, zone)
    except ValueError:
        raise ValueError(_("Choose a date and time to snooze until.")) from None
    if until <= now:
        raise ValueError(_("That time has passed: choose a time in the future."))
    return until


def add_phone_call(
    session: Session, user: EngageUser, card: Card, *, subject: str, phone: str, notes: str
) -> Activity:
    """Put a phone call activity on the card's regarding record's timeline; the caller commits.

    :raises ValueError: when the card has no regarding record (there is no timeline to put
        it on) or the subject is empty.
    """
    ref = card.regarding
    if ref is None:
        raise ValueError(_("This card is not about a record, so there is no timeline to add to."))
    subject = subject.strip()
    if not subject:
        raise ValueError(_("Give the phone call a subject."))
    lines = [_("Phone: %(number)s", number=phone.strip())] if phone.strip() else []
    if notes.strip():
        lines.append(notes.strip())
    activity = Activity(
        record_type=ref.type,
        record_id=ref.id,
        kind=ActivityKind.PHONE_CALL,
        occurred_at=utcnow(),
        owner_id=user.id,
        owner_team=user.team,
        title=subject[:300],
        notes="\n".join(lines),
    )
    session.add(activity)
    session.flush()
    return activity


# -- Views -----------------------------------------------------------------------------------

# Registered at the bottom of engage.views; imported late so that views can import this module.
from .views import blueprint  # noqa: E402


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


def _visible_card_or_404(card_id: int) -> tuple[EngageUser, Card]:
    user = sales_user()
    card = current_engage.session.get(Card, card_id)
    if card is None or not can_see(user, card.owner_id, card.owner_team):
        abort(404)
    return user, card


def _card_context(panel: Panel) -> dict[str, Any]:
    """What the card templates need besides the cards: records and owners, looked up once."""
    records: dict[RecordRef, Any] = {}
    for card in panel.cards:
        ref = card.regarding
        if ref is not None and ref not in records:
            records[ref] = current_engage.records.get(ref)
    return {"records": records}


def _render_panel(user: EngageUser, *, form: str | None = None, **form_context: Any) -> str:
    panel = panel_for(current_engage.session, user)
    return render_template(
        "engage/_assistant.html",
        panel=panel,
        user=user,
        poll=current_app.config["ENGAGE_ASSISTANT_POLL_SECONDS"],
        form=form,
        **_card_context(panel),
        **form_context,
    )


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
    session = current_engage.session
    if is_htmx() and request.args.get("part") == "cards":
        panel = panel_for(session, user)
        if request.args.get("v") == panel.version:
            response = current_app.response_class(status=204)
        else:
            response = current_app.response_class(
                render_template(
                    "engage/_assistant_cards.html",
                    panel=panel,
                    user=user,
                    poll=current_app.config["ENGAGE_ASSISTANT_POLL_SECONDS"],
                    **_card_context(panel),
                )
            )
        response.headers["ETag"] = f'"{panel.version}"'
        response.headers["Cache-Control"] = "no-store"
        return response
    if is_htmx():
        return _render_panel(user)
    panel = panel_for(session, user)
    return render_template(
        "engage/assistant_page.html",
        panel=panel,
        user=user,
        poll=current_app.config["ENGAGE_ASSISTANT_POLL_SECONDS"],
        form=None,
        **_card_context(panel),
    )


@blueprint.post("/assistant/read")
def assistant_mark_read() -> Any:
    """Mark all of the user's cards read: the unread count goes back to zero."""
    user = sales_user()
    mark_all_read(current_engage.session, user)
    current_engage.session.commit()
    return _panel_response(user)


@blueprint.post("/assistant/cards/<int:card_id>/dismiss")
def card_dismiss(card_id: int) -> Any:
    """Dismiss a card: it leaves the panel for good."""
    user, card = _visible_card_or_404(card_id)
    card.dismissed_at = utcnow()
    card.read_at = card.read_at or card.dismissed_at
    current_engage.session.commit()
    return _panel_response(user)


def _form_page(user: EngageUser, form: str, **context: Any) -> Any:
    """A card's form: alone for htmx (into the panel's form area), in the page otherwise."""
    if is_htmx():
        return render_template(f"engage/{form}.html", user=user, **context)
    panel = panel_for(current_engage.session, user)
    return render_template(
        "engage/assistant_page.html",
        panel=panel,
        user=user,
        poll=current_app.config["ENGAGE_ASSISTANT_POLL_SECONDS"],
        form=form,
        **_card_context(panel),
        **context,
    )


def _failed_form(user: EngageUser, form: str, **context: Any) -> Any:
    # The form comes back with its error inside the panel, answered 200 so that htmx swaps it.
    if is_htmx():
        return _render_panel(user, form=form, **context)
    return _form_page(user, form, **context), 422


@blueprint.route("/assistant/cards/<int:card_id>/snooze", methods=["GET", "POST"])
def card_snooze(card_id: int) -> Any:
    """Snooze a card until a chosen time (a quick choice or a time in the user's zone)."""
    from .send_later import sender_zone

    user, card = _visible_card_or_404(card_id)
    zone = sender_zone(user, request.values.get("browser_zone"))
    local_now = utcnow().astimezone(ZoneInfo(zone))
    context: dict[str, Any] = {
        "card": card,
        "zone": zone,
        "choices": snooze_choices(local_now),
        "until_value": request.form.get("until", ""),
        "min_value": local_now.strftime("%Y-%m-%dT%H:%M"),
        "error": "",
    }
    if request.method == "GET":
        return _form_page(user, "_snooze_form", **context)
    value = request.form.get("choice") or request.form.get("until", "")
    try:
        until = snooze_until(value, zone)
    except ValueError as exc:
        context["error"] = str(exc)
        return _failed_form(user, "_snooze_form", **context)
    card.snoozed_until = until
    current_engage.session.commit()
    return _panel_response(user)


@blueprint.route("/assistant/cards/<int:card_id>/phone-call", methods=["GET", "POST"])
def card_phone_call(card_id: int) -> Any:
    """Create a phone call activity from a card, pre-filled from its record (S33)."""
    from .compose_views import TIMELINE_CHANGED

    user, card = _visible_card_or_404(card_id)
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
        add_phone_call(
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
