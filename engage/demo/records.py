"""The demo CRM's record adapter: how engage learns about contacts, leads, accounts and deals.

This is the one object a host writes for engage (see :class:`engage.RecordAdapter`); the demo
writes it like any host would, from its own models, through the public API only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context, url_for
from flask_babel import gettext as _

from engage import FollowPreference, Record, RecordRef

from .models import SQLITE_CASEFOLD, Account, Contact, Lead, Opportunity, db

#: The record types the demo has, with the endpoint of each type's page.
RECORD_ENDPOINTS = {
    "contact": "demo.contact",
    "lead": "demo.lead",
    "account": "demo.account",
    "opportunity": "demo.opportunity",
}


def record_path(record_type: str, record_id: int | str) -> str:
    """The URL path of a record's page in the demo.

    Outside a request (in the RQ worker) there is no host name to build a full URL from, so a
    path is built from the URL map directly; engage accepts a path as a record URL.
    """
    endpoint = RECORD_ENDPOINTS[record_type]
    values: dict[str, Any] = {"record_id": int(record_id)}
    if has_request_context():
        return url_for(endpoint, **values)
    adapter = current_app.url_map.bind(
        "localhost", script_name=current_app.config.get("APPLICATION_ROOT") or "/"
    )
    return adapter.build(endpoint, values)


def _follow(value: str) -> FollowPreference:
    try:
        return FollowPreference(value)
    except ValueError:
        # An unknown stored value must not open tracking up: treat it as a refusal.
        return FollowPreference.DO_NOT_ALLOW


def contact_record(contact: Contact) -> Record:
    """The engage view of a demo contact."""
    return Record(
        ref=RecordRef("contact", str(contact.id)),
        name=contact.name,
        url=record_path("contact", contact.id),
        first_name=contact.first_name,
        email=contact.email or None,
        address=contact.address,
        follow_preference=_follow(contact.follow_preference),
        owner_id=str(contact.owner_id),
        type_label=_("Contact"),
        language=contact.language or None,
        phone=contact.phone or None,
    )


def lead_record(lead: Lead) -> Record:
    """The engage view of a demo lead."""
    return Record(
        ref=RecordRef("lead", str(lead.id)),
        name=lead.name,
        url=record_path("lead", lead.id),
        first_name=lead.first_name,
        email=lead.email or None,
        address=lead.address,
        follow_preference=_follow(lead.follow_preference),
        owner_id=str(lead.owner_id),
        type_label=_("Lead"),
        language=lead.language or None,
        phone=lead.phone or None,
    )


def account_record(account: Account) -> Record:
    """The engage view of a demo account (an organisation; its mailbox allows following)."""
    return Record(
        ref=RecordRef("account", str(account.id)),
        name=account.name,
        url=record_path("account", account.id),
        email=account.email or None,
        address=account.address,
        owner_id=str(account.owner_id),
        type_label=_("Account"),
        phone=account.phone or None,
    )


def order_number(opportunity: Opportunity) -> str | None:
    """The sales order of a won opportunity (the demo keeps no orders: it is made from the id)."""
    return f"SO-{10000 + opportunity.id}" if opportunity.won else None


def opportunity_record(opportunity: Opportunity) -> Record:
    """The engage view of a demo opportunity; ``won`` feeds template performance, and a won
    one offers templates its order number (``{{ order_number }}``)."""
    contact = opportunity.primary_contact
    number = order_number(opportunity)
    return Record(
        ref=RecordRef("opportunity", str(opportunity.id)),
        name=opportunity.name,
        url=record_path("opportunity", opportunity.id),
        owner_id=str(opportunity.owner_id),
        won=opportunity.won,
        type_label=_("Opportunity"),
        language=(contact.language or None) if contact else None,
        template_values={"order_number": number} if number else {},
    )


_MODELS: dict[str, tuple[type[Any], Callable[[Any], Record]]] = {
    "contact": (Contact, contact_record),
    "lead": (Lead, lead_record),
    "account": (Account, account_record),
    "opportunity": (Opportunity, opportunity_record),
}


def to_record(ref: RecordRef, obj: Any) -> Record:
    """The engage record for a demo model instance of type ``ref.type``."""
    return _MODELS[ref.type][1](obj)


def _fold(column: Any) -> Any:
    """``column`` case-folded in SQL, Unicode-aware on SQLite too (see ``SQLITE_CASEFOLD``)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return getattr(sa.func, SQLITE_CASEFOLD)(column)
    return sa.func.lower(column)


def _rank(record: Record, needle: str) -> tuple[int, str]:
    # Names that start with the text come first, then a word of the name, then the address.
    name = record.name.casefold()
    if name.startswith(needle):
        score = 0
    elif any(word.startswith(needle) for word in name.split()):
        score = 1
    elif record.email and record.email.casefold().startswith(needle):
        score = 2
    else:
        score = 3
    return (score, name)


class DemoRecords:
    """The demo's :class:`engage.RecordAdapter`: types ``contact``, ``lead``, ``account`` and
    ``opportunity``, each kept in its own demo table."""

    types = tuple(_MODELS)

    def get(self, ref: RecordRef) -> Record | None:
        """The record ``ref`` points at, or ``None`` for an unknown type or id."""
        entry = _MODELS.get(ref.type)
        if entry is None:
            return None
        try:
            ident = int(ref.id)
        except ValueError:
            return None
        model, build = entry
        obj = db.session.get(model, ident)
        return None if obj is None else build(obj)

    def search(self, text: str, *, limit: int = 10) -> Sequence[Record]:
        """Records whose name or email contains ``text`` (case-insensitive), best first.

        Contacts, leads, accounts and opportunities are searched alike; a name that starts
        with the text ranks above one that merely contains it.
        """
        needle = " ".join(text.split()).casefold()
        if not needle or limit <= 0:
            return []
        found: list[Record] = []
        person_name = sa.func.trim(Contact.first_name + " " + Contact.last_name)
        lead_name = sa.func.trim(Lead.first_name + " " + Lead.last_name)
        queries: list[tuple[str, Any, list[Any]]] = [
            ("contact", Contact, [person_name, Contact.last_name, Contact.email]),
            ("lead", Lead, [lead_name, Lead.last_name, Lead.email, Lead.company]),
            ("account", Account, [Account.name, Account.email]),
            ("opportunity", Opportunity, [Opportunity.name]),
        ]
        for record_type, model, columns in queries:
            condition = sa.or_(
                *(_fold(column).contains(needle, autoescape=True) for column in columns)
            )
            rows = db.session.scalars(
                sa.select(model).where(condition).order_by(model.id).limit(limit)
            )
            build = _MODELS[record_type][1]
            found.extend(build(row) for row in rows)
        found.sort(key=lambda record: _rank(record, needle))
        return found[:limit]

    def find_by_email(self, address: str) -> Sequence[Record]:
        """Every contact, lead and account whose email is ``address``, ignoring case."""
        wanted = address.strip().casefold()
        if not wanted:
            return []
        found: list[Record] = []
        for record_type, model in (("contact", Contact), ("lead", Lead), ("account", Account)):
            rows = db.session.scalars(
                sa.select(model).where(_fold(model.email) == wanted).order_by(model.id)
            )
            build = _MODELS[record_type][1]
            found.extend(build(row) for row in rows)
        return found

    def set_follow_preference(self, ref: RecordRef, preference: FollowPreference) -> bool:
        """engage's optional adapter method (SPEC S43): a recipient's own "don't track me"
        becomes the contact's or lead's follow-email setting, as if the rep had set it."""
        if ref.type not in ("contact", "lead"):
            return False
        model = _MODELS[ref.type][0]
        try:
            obj = db.session.get(model, int(ref.id))
        except ValueError:
            return False
        if obj is None:
            return False
        obj.follow_preference = preference.value
        db.session.commit()
        return True
