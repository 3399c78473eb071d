"""Who a recipient is: the CRM record behind an address, and whether they allow following.

The server asks the host's record adapter itself, every time it matters (saving, sending,
delivering each copy), and never trusts which record a form claims for an address (SPEC S2,
S9).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .content import Address, format_address, split_entries
from .context import current_engage
from .follow import RecipientPreference
from .i18n import gettext as _
from .opt_out import is_opted_out
from .records import FollowPreference, Record, RecordRef


def recipient_preference(address: str, claimed: RecordRef | None = None) -> RecipientPreference:
    """The follow preference of ``address``, from the host's records themselves (S9).

    Every record the adapter finds with this address counts, and the strictest answer wins: one
    record that does not allow following blocks it, whichever record the form says was picked.
    ``claimed`` (the record picked in the typeahead) counts too, but only when it exists and
    has this address; a record that does not exist, or has another address, changes nothing.
    An address that is no record's has no preference of its own and allows following.
    """
    records = list(current_engage.records.find_by_email(address))
    picked = claimed_record(address, claimed)
    if picked is not None and picked.ref not in {r.ref for r in records}:
        records.insert(0, picked)
    if is_opted_out(current_engage.session, address):
        # The recipient stopped tracking with the link in an email (S43), and the host's
        # adapter could not store it: engage honours it itself.
        shown = records[0] if records else None
        return RecipientPreference(
            address,
            FollowPreference.DO_NOT_ALLOW,
            name=shown.name if shown else "",
            record_url=shown.url if shown else None,
            record_label=shown.label if shown else "",
        )
    if not records:
        return RecipientPreference(address)
    strictest = next(
        (r for r in records if r.follow_preference is FollowPreference.DO_NOT_ALLOW), records[0]
    )
    return RecipientPreference(
        address,
        strictest.follow_preference,
        name=strictest.name,
        record_url=strictest.url,
        record_label=strictest.label,
    )


def claimed_record(address: str, claimed: RecordRef | None) -> Record | None:
    """The record a form claims for ``address``, if it exists and really has that address."""
    if claimed is None:
        return None
    record = current_engage.records.get(claimed)
    if record is None or (record.email or "").strip().lower() != address.strip().lower():
        return None
    return record


def resolve(address: Address, picked: dict[str, RecordRef]) -> Address:
    """``address`` with its CRM record (S2), as saving a draft stores it."""
    # The record chosen in the typeahead wins when it exists and has this address; otherwise
    # the first record with this address (SPEC S2: a party that resolves to a record shows the
    # email on that record's timeline). A form cannot attach an address to another record.
    record = claimed_record(address.address, picked.get(address.address.lower()))
    if record is None:
        found = current_engage.records.find_by_email(address.address)
        record = found[0] if found else None
    return Address(address.address, address.name, record.ref if record else None)


@dataclass(slots=True)
class NameLookup:
    """An address field after its typed names were looked up among the CRM's records.

    :param text: the field with each name that found one record written as that record's
        address; everything else stays as typed.
    :param picked: the records found, by lower-cased address (as the typeahead posts them).
    :param problem: why a name was not turned into an address, or ``""``.
    """

    text: str
    picked: dict[str, RecordRef] = field(default_factory=dict)
    problem: str = ""


def look_up_names(text: str, *, limit: int = 8) -> NameLookup:
    """Turn the names typed in an address field into addresses, server-side.

    Without JavaScript there is no typeahead, yet the field invites typing a name. An entry
    with no ``@`` is searched among the records with an email address: one match (or one
    whose whole name is the entry) becomes ``Name <address>``; several or none leave the entry
    as typed and say so, listing the choices.
    """
    entries = split_entries(text)
    if all("@" in entry for entry in entries):
        return NameLookup(text)
    written: list[str] = []
    picked: dict[str, RecordRef] = {}
    problems: list[str] = []
    for entry in entries:
        if "@" in entry:
            written.append(entry)
            continue
        name = entry.strip().strip('"').strip()
        found = [r for r in current_engage.records.search(name, limit=limit) if r.email and name]
        exact = [r for r in found if r.name.casefold() == name.casefold()]
        chosen = exact if len(exact) == 1 else found
        if len(chosen) == 1:
            record = chosen[0]
            address = (record.email or "").strip()
            written.append(format_address(record.name, address))
            picked[address.lower()] = record.ref
            continue
        written.append(entry)
        if not found:
            problems.append(
                _(
                    "Not a valid email address: %(name)s. No CRM record with an email address "
                    "has that name either.",
                    name=entry,
                )
            )
        else:
            choices = "; ".join(f"{r.name} ({r.label}, {r.email})" for r in found)
            problems.append(
                _(
                    "Several records match “%(name)s”: %(choices)s. Type more of the name "
                    "or the address.",
                    name=name,
                    choices=choices,
                )
            )
    return NameLookup(", ".join(written), picked, " ".join(problems))
