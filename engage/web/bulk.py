"""Bulk email's page (SPEC S10): one email each to a selection of records, never followed.

What a bulk send does is :func:`engage.bulk.send_bulk`.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from ..bulk import MAX_RECIPIENTS, send_bulk
from ..content import text_to_html
from ..context import current_engage
from ..emails import DraftInput, check
from ..i18n import gettext as _
from ..ids import parse_id
from ..models import Email
from ..records import Record, RecordRef
from .blueprint import blueprint
from .guards import sales_user
from .htmx import is_htmx


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
    found = (parse_id(i) for i in request.args.get("ids", "").split(","))
    ids = [i for i in found if i is not None]
    emails = [
        e
        for e in (current_engage.session.get(Email, i) for i in ids[:MAX_RECIPIENTS])
        if e is not None and e.owner_id == user.id
    ]
    return render_template("engage/bulk_sent.html", emails=emails)
