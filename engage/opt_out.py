"""The recipient's own choice (SPEC S43): "Don't track my opens and clicks", one signed click.

When the organisation turns it on (:func:`set_opt_out_line`, off by default), every followed
copy carries a short line in the email's language with a link of its own
(:func:`opt_out_url`). The link is signed with the app's ``SECRET_KEY`` and names only that
copy (its :class:`engage.models.Party`), so it can change no one else's preference. Opening it
shows a confirmation page whose button posts back (mail scanners fetch links, so a GET changes
nothing); the POST runs :func:`apply_opt_out`, once: a second use finds it done.

:func:`apply_opt_out` is the public way to record a recipient's opt-out (sequences use it too):

- the copy stops being tracked at once: the event worker records nothing its pixel, links or
  files fetch from then on (they still answer, so nothing breaks for the reader);
- the recipient's *follow email* preference becomes *do not allow* through the host's adapter
  when it has the optional method ``set_follow_preference`` (:class:`FollowPreferenceWriter`);
  either way engage keeps the opt-out in its own table (:class:`TrackingOptOut`), and honours
  it itself (:func:`is_opted_out`, read by :func:`engage.recipients.recipient_preference`) when
  the adapter could not take it;
- the records with that address show it on their timelines.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .context import current_engage
from .i18n import gettext as _
from .models import (
    Activity,
    ActivityKind,
    Email,
    EmailTemplate,
    Party,
    TrackingOptOut,
    affected_rows,
    utcnow,
)
from .organisation import set_switch, switch
from .records import FollowPreference, FollowPreferenceWriter, RecordRef
from .tracking import base_url

#: The organisation setting that puts the line in followed emails.
OPT_OUT_LINE = "opt_out_line"
_SALT = "engage-opt-out"


def opt_out_line_enabled() -> bool:
    """Whether followed emails carry the "Don't track my opens and clicks" line (S43)."""
    return switch(OPT_OUT_LINE, "ENGAGE_OPT_OUT_LINE")


def set_opt_out_line(enabled: bool, *, by: str) -> None:
    """Turn the line on or off for the organisation and commit."""
    set_switch(OPT_OUT_LINE, enabled, by=by)


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def opt_out_token(party_id: int, language: str) -> str:
    """The signed token of one copy's link: its party and the language of its page."""
    return str(_serializer().dumps({"p": party_id, "l": language[:10]}))


@dataclass(frozen=True, slots=True)
class OptOutLink:
    """What a genuine link names."""

    party_id: int
    language: str


def read_opt_out_token(token: str) -> OptOutLink | None:
    """The copy a link names, or ``None`` for a token engage did not sign (or a mangled one)."""
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("p"), int):
        return None
    language = data.get("l") if isinstance(data.get("l"), str) else "en"
    return OptOutLink(data["p"], language or "en")


def opt_out_url(party: Party, language: str) -> str:
    """The link in ``party``'s copy (``ENGAGE_PUBLIC_URL`` + the prefix + ``/o/<token>``)."""
    return f"{base_url()}/o/{opt_out_token(party.id, language)}"


def email_language(email: Email, party: Party) -> str:
    """The language an email is written in, as far as engage knows: the template it used,
    else the recipient's record's language, else the app's default locale."""
    session = current_engage.session
    if email.template_id is not None:
        template = session.get(EmailTemplate, email.template_id)
        if template is not None and template.language:
            return template.language
    record = current_engage.records.get(party.record) if party.record else None
    if record is not None and record.language:
        return record.language
    return str(current_app.config.get("BABEL_DEFAULT_LOCALE") or "en")


def is_opted_out(session: Session, address: str) -> bool:
    """Whether ``address`` stopped tracking with engage's link and engage must honour it itself
    (the adapter could not take the preference)."""
    return bool(
        session.scalar(
            sa.select(TrackingOptOut.id).where(
                TrackingOptOut.address == address.strip().lower(),
                TrackingOptOut.in_adapter.is_(False),
            )
        )
    )


def _records_of(party: Party) -> list[RecordRef]:
    # Only records that have this very address: a link can change no one else's preference.
    refs = [r.ref for r in current_engage.records.find_by_email(party.address)]
    if party.record is not None and party.record not in refs:
        record = current_engage.records.get(party.record)
        if record is not None and (record.email or "").lower() == party.address.lower():
            refs.insert(0, party.record)
    return refs


def apply_opt_out(session: Session, party: Party, *, now: datetime | None = None) -> bool:
    """Record that ``party``'s recipient does not want to be tracked, once; commits.

    Returns ``False`` when this copy's opt-out was recorded before (nothing changes again).
    """
    now = now or utcnow()
    moved = affected_rows(
        session.execute(
            sa.update(Party)
            .where(Party.id == party.id, Party.opted_out_at.is_(None))
            .values(opted_out_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if not moved:
        session.rollback()
        return False
    session.refresh(party)
    refs = _records_of(party)
    adapter = current_engage.records
    in_adapter = False
    if isinstance(adapter, FollowPreferenceWriter) and refs:
        in_adapter = all(
            adapter.set_follow_preference(ref, FollowPreference.DO_NOT_ALLOW) for ref in refs
        )
    address = party.address.strip().lower()
    row = session.scalar(sa.select(TrackingOptOut).where(TrackingOptOut.address == address))
    if row is None:
        row = TrackingOptOut(address=address)
        session.add(row)
    first = refs[0] if refs else None
    row.record_type, row.record_id = (first.type, first.id) if first else (None, None)
    row.in_adapter, row.party_id, row.opted_out_at = in_adapter, party.id, now
    email = party.email
    for ref in refs or ([email.regarding] if email.regarding else []):
        session.add(
            Activity(
                record_type=ref.type,
                record_id=ref.id,
                kind=ActivityKind.OPT_OUT,
                occurred_at=now,
                owner_id=email.owner_id,
                owner_team=email.owner_team,
                title=party.address,
            )
        )
    try:
        session.commit()
    except IntegrityError:  # the same address opted out through two copies at once
        session.rollback()
        return False
    return True


def with_opt_out_line(
    email: Email, party: Party, body_html: str, body_text: str, *, enabled: bool | None = None
) -> tuple[str, str]:
    """A followed copy's bodies with the opt-out line at the end, when the organisation wants
    it; the line is in the email's language and its link goes to this copy's page.

    :param enabled: the organisation's switch, when the caller has read it already.
    """
    if not (opt_out_line_enabled() if enabled is None else enabled):
        return body_html, body_text
    language = email_language(email, party)
    url = opt_out_url(party, language)
    with force_locale(language):
        words = _("Don't track my opens and clicks")
    line_html = (
        '<p class="engage-opt-out" style="font-size:12px;color:#666">'
        f'<a href="{html.escape(url)}">{html.escape(words)}</a></p>'
    )
    return body_html + line_html, f"{body_text}\n\n{words}: {url}"
