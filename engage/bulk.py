"""Bulk email: one message to many records at once, never followed (SPEC S10).

Each recipient gets an email of their own (nobody sees the others' addresses), regarding their
own record, so each lands on that record's timeline. The page a rep uses is
:mod:`engage.web.bulk`; hosts call :func:`send_bulk` (``engage.send_bulk``) directly. Following is not offered: mass email
is exactly where tracking people is least welcome, and the reference leaves it out too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .content import clean_html, format_address, header_safe, subject_error
from .context import current_engage
from .emails import DraftInput, save_draft, submit
from .i18n import gettext as _
from .records import EngageUser, RecordRef

#: The most recipients one bulk send takes.
MAX_RECIPIENTS = 500


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk send did: the emails queued, and the records skipped with the reason."""

    email_ids: list[int]
    skipped: list[tuple[RecordRef, str]]


def send_bulk(
    sender: EngageUser, records: Sequence[RecordRef], *, subject: str, html: str
) -> BulkResult:
    """Queue one unfollowed email per record to its email address, regarding that record.

    Records that do not exist or have no email address are skipped and reported. Must run in
    an app context.

    :raises ValueError: for a subject with a line break, or more than :data:`MAX_RECIPIENTS`.
    """
    if len(records) > MAX_RECIPIENTS:
        raise ValueError(f"a bulk send takes at most {MAX_RECIPIENTS} records")
    if subject_error(subject):
        raise ValueError("the subject must be one line")
    session = current_engage.session
    body = clean_html(html)
    queued: list[int] = []
    skipped: list[tuple[RecordRef, str]] = []
    for ref in dict.fromkeys(records):  # the same record twice gets one email
        record = current_engage.records.get(ref)
        if record is None:
            skipped.append((ref, _("not found")))
            continue
        if not record.email:
            skipped.append((ref, _("no email address")))
            continue
        draft = DraftInput(
            to=format_address(header_safe(record.name), record.email),
            subject=subject,
            body=body,
            regarding=ref,
            picked={record.email.lower(): ref},
            follow=False,
        )
        email = save_draft(session, sender, draft, None)
        email.bulk = True
        email.followed = False
        submit(session, sender, email)
        queued.append(email.id)
    return BulkResult(queued, skipped)
