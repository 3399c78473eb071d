"""Bulk email: one message to many records at once, never followed (SPEC S10).

Each recipient gets an email of their own (nobody sees the others' addresses), regarding their
own record, so each lands on that record's timeline. Following is not offered: mass email
is exactly where tracking people is least welcome, and the reference leaves it out too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from .access import sales_user
from .compose import clean_html, format_address, subject_error, text_to_html
from .emails import DraftInput, check, save_draft, submit
from .extension import current_engage
from .htmx import is_htmx
from .i18n import gettext as _
from .models import Email
from .records import EngageUser, Record, RecordRef
from .views import blueprint

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
            to=format_address(record.name, record.email),
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


def _records_from(values: list[str]) -> list[Record]:
    records = []
    for value in values:
        try:
            ref = RecordRef.parse(value)
        except ValueError:
            abort(400, description=_("That record reference is not valid."))
        record = current_engage.records.get(ref)
        if record is not None:
            records.append(record)
    return records


@blueprint.route("/bulk", methods=["GET", "POST"])
def bulk_compose() -> Any:
    """Write one email to the selected records (``?records=contact:1&records=contact:2``)."""
    user = sales_user()
    values = request.values.getlist("records")
    records = _records_from(values)
    if not records:
        abort(400, description=_("Select at least one record to write to."))
    if len(records) > MAX_RECIPIENTS:
        abort(400, description=_("Select at most %(max)s records.", max=MAX_RECIPIENTS))
    subject = request.form.get("subject", "")
    body = request.form.get("body", "")
    errors: dict[str, str] = {}
    if request.method == "POST":
        errors = check(DraftInput(subject=subject, body=body), sending=False)
        if not subject.strip():
            errors["subject"] = _("Write a subject for a bulk email.")
        if not errors:
            result = send_bulk(
                user, [r.ref for r in records], subject=subject, html=text_to_html(body)
            )
            flash(
                _(
                    "Queued %(count)s emails; %(skipped)s records skipped.",
                    count=len(result.email_ids),
                    skipped=len(result.skipped),
                ),
                "engage-success",
            )
            return redirect(url_for("engage.bulk_sent", ids=",".join(map(str, result.email_ids))))
    without_email = [r for r in records if not r.email]
    template = "engage/_bulk.html" if is_htmx() else "engage/bulk_page.html"
    return (
        render_template(
            template,
            records=records,
            without_email=without_email,
            subject=subject,
            body=body,
            errors=errors,
        ),
        422 if errors else 200,
    )


@blueprint.get("/bulk/sent")
def bulk_sent() -> Any:
    """What a bulk send queued, with each email's status."""
    user = sales_user()
    ids = [int(i) for i in request.args.get("ids", "").split(",") if i.isdigit()]
    emails = [
        e
        for e in (current_engage.session.get(Email, i) for i in ids[:MAX_RECIPIENTS])
        if e is not None and e.owner_id == user.id
    ]
    return render_template("engage/bulk_sent.html", emails=emails)
