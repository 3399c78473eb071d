"""Who a recipient is: the CRM record behind an address, and whether they allow following.

The server asks the host's record adapter itself, every time it matters (saving, sending,
delivering each copy), and never trusts which record a form claims for an address (SPEC S2,
S9).
"""

from __future__ import annotations

from .content import Address
from .context import current_engage
from .follow import RecipientPreference
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
