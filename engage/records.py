"""How engage learns about the host's CRM records and users.

The host owns its records (contacts, leads, opportunities, accounts, …) and its users.
engage never touches the host's tables: it asks one **record adapter** object, written by the
host, and receives plain, immutable value objects in return. The adapter is a
:class:`typing.Protocol`, so any object with these methods will do; no base class is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class FollowPreference(StrEnum):
    """A recipient's *follow email* privacy setting (SPEC S9)."""

    ALLOW = "allow"
    DO_NOT_ALLOW = "do_not_allow"


class Role(StrEnum):
    """The roles engage understands (SPEC S36, S37)."""

    SALESPERSON = "salesperson"
    SALES_MANAGER = "sales_manager"
    ADMIN = "admin"


#: The roles that may use the email features at all.
SALES_ROLES = frozenset({Role.SALESPERSON, Role.SALES_MANAGER})


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Points at one host record: its type (``"contact"``, ``"lead"``, …) and its id.

    Ids are kept as strings so that hosts with integer, UUID or slug keys all fit.
    """

    type: str
    id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", str(self.id))

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> RecordRef:
        """Read the ``type:id`` form written by :meth:`__str__`.

        :raises ValueError: when ``text`` has no colon or an empty part.
        """
        kind, sep, ident = text.partition(":")
        if not sep or not kind or not ident:
            raise ValueError(f"not a record reference: {text!r}")
        return cls(kind, ident)


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """A record's postal address, as the host keeps it.

    :param country: an ISO 3166-1 alpha-2 code (``"DE"``, ``"US"``) or a country name.
    """

    street: str = ""
    city: str = ""
    postal_code: str = ""
    region: str = ""
    country: str = ""

    def is_empty(self) -> bool:
        """True when no part of the address is filled in."""
        return not any((self.street, self.city, self.postal_code, self.region, self.country))

    def one_line(self) -> str:
        """The address on one line, empty parts left out."""
        city = " ".join(p for p in (self.postal_code, self.city) if p)
        return ", ".join(p for p in (self.street, city, self.region, self.country) if p)


@dataclass(frozen=True, slots=True)
class Record:
    """What engage needs to know about one host record.

    :param ref: the record's type and id.
    :param name: the display name (``"Ada Lovelace"``, ``"Acme Corp"``).
    :param url: where the record's page lives on the host.
    :param first_name: for greetings in templates; empty when the record has none.
    :param email: the primary email address, or ``None``.
    :param address: the postal address, or ``None`` when unknown.
    :param follow_preference: whether the person allows their emails to be followed.
    :param owner_id: the id of the host user who owns the record.
    :param won: for opportunities, whether it was won; ``None`` for other record types.
    :param type_label: how the host names the record type to users (``"Contact"``).
    :param language: the person's preferred language (``"de"``) when the host knows it.
    :param phone: a phone number, used to pre-fill phone call activities.
    :param template_values: further values templates may use for this record, by name
        (``{"order_number": "10042"}``); names are plain identifiers (SPEC S29).
    """

    ref: RecordRef
    name: str
    url: str
    first_name: str = ""
    email: str | None = None
    address: PostalAddress | None = None
    follow_preference: FollowPreference = FollowPreference.ALLOW
    owner_id: str | None = None
    won: bool | None = None
    type_label: str = ""
    language: str | None = None
    phone: str | None = None
    template_values: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def allows_follow(self) -> bool:
        """True when the record's follow preference allows tracking."""
        return self.follow_preference is FollowPreference.ALLOW

    @property
    def label(self) -> str:
        """The type label, or the type itself capitalised when the host gave none."""
        return self.type_label or self.ref.type.replace("_", " ").capitalize()


@runtime_checkable
class RecordAdapter(Protocol):
    """The one object through which the host tells engage about its records (SPEC S38).

    Every method is called inside an application context; a method may use the host's
    database session. Return ``None`` or an empty sequence for "not found", never raise.
    """

    def get(self, ref: RecordRef) -> Record | None:
        """Look up one record by type and id."""
        ...

    def search(self, text: str, *, limit: int = 10) -> Sequence[Record]:
        """Records whose name or email matches ``text``, best matches first."""
        ...

    def find_by_email(self, address: str) -> Sequence[Record]:
        """Every record whose email address is ``address`` (compared case-insensitively)."""
        ...


@runtime_checkable
class FollowPreferenceWriter(Protocol):
    """The optional adapter method through which a recipient's own opt-out reaches the host's
    record (SPEC S43). A :class:`RecordAdapter` that also has it is asked to store the
    preference; one without it leaves engage to keep and honour the opt-out itself.
    """

    def set_follow_preference(self, ref: RecordRef, preference: FollowPreference) -> bool:
        """Store ``preference`` as the record's *follow email* setting and commit it.

        Return ``True`` once it is stored, ``False`` when the record is gone or cannot take it.
        """
        ...


@dataclass(frozen=True, slots=True)
class EngageUser:
    """The signed-in host user, as engage sees them.

    :param id: the host's user id, as a string.
    :param name: the display name used in the From header.
    :param email: the address emails are sent from.
    :param roles: the engage roles this user holds.
    :param team: the sales team; a sales manager sees the work of their team.
    :param timezone: an IANA zone name (``"Europe/Berlin"``) from the user's profile, if any.
    """

    id: str
    name: str
    email: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    team: str | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "roles", frozenset(Role(r) for r in self.roles))

    @property
    def is_sales(self) -> bool:
        """True for a salesperson or a sales manager."""
        return bool(self.roles & SALES_ROLES)

    @property
    def is_manager(self) -> bool:
        """True for a sales manager."""
        return Role.SALES_MANAGER in self.roles

    @property
    def is_admin(self) -> bool:
        """True for an organisation admin."""
        return Role.ADMIN in self.roles
