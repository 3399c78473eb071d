"""The compose panel's attachments: attach, remove, follow or not, and download (SPEC S16–S18).

The rules are in :mod:`engage.attachments`; here are the routes the panel's buttons post the
whole compose form to (``formaction``), the request limits of that form, and the download.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    request,
    send_file,
    url_for,
)
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from .. import emails
from ..attachments import (
    CHUNK,
    AttachmentRefused,
    StoredFile,
    attach,
    detach,
    follow_refusal,
    limit_bytes,
    limit_text,
    store_upload,
)
from ..context import current_engage
from ..emails import DraftInput
from ..i18n import format_size
from ..i18n import gettext as _
from ..models import Attachment, Email, EmailStatus
from .blueprint import blueprint
from .compose_form import FILE_FIELD, LIST_FIELD, TIMELINE_CHANGED, read_draft, render_compose
from .guards import Denied, sales_user, visible_email_or_404
from .htmx import is_htmx


def file_response(attachment: Attachment) -> Response:
    """The stored file as a download under its own name, never rendered by the browser.

    :raises werkzeug.exceptions.NotFound: when the store no longer has the bytes.
    """
    try:
        stream = current_engage.store.open(attachment.storage_key)
    except KeyError:
        abort(404)
    response = send_file(
        stream,
        mimetype=attachment.content_type,
        as_attachment=True,
        download_name=attachment.filename,
        conditional=False,
        etag=False,
        max_age=0,
    )
    response.content_length = attachment.size
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def store_chosen(upload: FileStorage) -> StoredFile:
    """Copy the chosen file into the attachment store (see :func:`engage.attachments.store_upload`)."""
    return store_upload(upload.filename, upload.stream, upload.mimetype)


def chosen_file() -> FileStorage | None:
    """The file chosen in the compose form's file input, or ``None`` when none was chosen."""
    upload = request.files.get(FILE_FIELD)
    return upload if upload is not None and upload.filename else None


# -- request limits --------------------------------------------------------------------------------

#: The endpoints that take the compose form, which may carry a file.
FORM_ENDPOINTS = frozenset(
    {
        "engage.create_email",
        "engage.edit_email",
        "engage.attach_to_new_email",
        "engage.attach_to_email",
        "engage.remove_attachment",
        "engage.follow_attachment",
        "engage.unfollow_attachment",
    }
)


@blueprint.before_app_request
def _size_limits_for_the_compose_form() -> None:
    # Runs before the blueprint's CSRF check reads the form. The compose form is
    # multipart/form-data, so Werkzeug applies MAX_FORM_MEMORY_SIZE (500 000 bytes by default)
    # to its text fields: the body may be larger (ENGAGE_MAX_BODY_KB) and must reach the
    # compose checks to be refused with its own limit named. The whole request is capped at
    # twice the file limit (plus the form's text), so a file somewhat over the limit still
    # reaches store_upload and is refused inline, while a runaway upload is cut off while it
    # streams. A host's own, smaller MAX_CONTENT_LENGTH wins.
    if request.method != "POST" or request.endpoint not in FORM_ENDPOINTS:
        return
    config = current_app.config
    body = int(config["ENGAGE_MAX_BODY_KB"]) * 1024
    memory = config.get("MAX_FORM_MEMORY_SIZE")
    if memory is not None:
        request.max_form_memory_size = max(int(memory), 2 * body + CHUNK)
    cap = 2 * limit_bytes() + 2 * body + (1 << 20)
    host_cap = config.get("MAX_CONTENT_LENGTH")
    request.max_content_length = min(cap, int(host_cap)) if host_cap else cap
    try:
        request.form  # noqa: B018 - parse now, while the refusal can still name the limit
    except RequestEntityTooLarge:
        raise Denied(
            413,
            _(
                "The upload is far larger than the %(limit)s MB limit for attachments and was "
                "stopped. Go back, choose a smaller file and attach it again.",
                limit=limit_text(),
            ),
            _("Too large"),
        ) from None


# -- the views -------------------------------------------------------------------------------------


@blueprint.app_template_global("engage_file_size")
def _file_size_global(size: int) -> str:
    return format_size(size)


def _owned_draft(email_id: int) -> Email:
    user = sales_user()
    email = visible_email_or_404(email_id)
    if email.owner_id != user.id:
        abort(404)  # a manager may read the team's drafts, not change them
    if email.status is not EmailStatus.DRAFT:
        raise Denied(
            409,
            _("Send was pressed for this email, so its attachments can no longer change."),
            _("Already sent"),
        )
    return email


def _attachment_of(email: Email, attachment_id: int) -> Attachment:
    for attachment in email.attachments:
        if attachment.id == attachment_id:
            return attachment
    abort(404)


def _panel_draft(email: Email) -> tuple[DraftInput, dict[str, str]]:
    # The compose form posts its fields along with the button pressed; the panel comes back
    # with them as typed. A bare post (no compose fields) shows the stored draft.
    if "body_format" in request.form:
        return read_draft()
    return DraftInput.from_email(email), {}


def _panel(
    draft: DraftInput,
    email: Email | None,
    errors: dict[str, str],
    *,
    notice: str | None = None,
    refused: bool = False,
) -> Any:
    return render_compose(
        draft, email=email, errors=errors, notice=notice, status=422 if refused else 200
    )


@blueprint.post("/compose/attachments")
def attach_to_new_email() -> Any:
    """Attach a file to a new email: save it as a draft with what the form holds, then attach."""
    user = sales_user()
    draft, errors = read_draft()
    errors.update(emails.check(draft, sending=False))
    upload = chosen_file()
    if errors:
        if upload is not None:
            errors[FILE_FIELD] = _(
                "The file was not attached: fix what is marked, then choose it again."
            )
        return _panel(draft, None, errors, refused=True)
    try:
        if upload is None:
            raise AttachmentRefused(_("Choose a file to attach first."))
        stored = store_chosen(upload)
    except AttachmentRefused as refusal:
        return _panel(draft, None, {FILE_FIELD: str(refusal)}, refused=True)
    session = current_engage.session
    # The same new-email form posted twice continues its first draft (see the compose view).
    earlier = emails.submitted_with(session, user, draft.submission_key)
    if earlier is not None and earlier.status is not EmailStatus.DRAFT:
        current_engage.store.delete(stored.key)
        raise Denied(
            409,
            _("Send was pressed for this email, so its attachments can no longer change."),
            _("Already sent"),
        )
    try:
        email = emails.save_draft(session, user, draft, earlier)
    except Exception:
        # Rolled back first: a database store deletes on a connection of its own, which
        # SQLite would keep waiting for this transaction's write lock.
        session.rollback()
        current_engage.store.delete(stored.key)
        raise
    attachment = attach(session, email, stored)
    notice = _("Attached “%(name)s”. The draft was saved.", name=attachment.filename)
    if not is_htmx():
        flash(notice, "engage-success")
        return redirect(url_for("engage.edit_email", email_id=email.id))
    response = _panel(DraftInput.from_email(email), email, {}, notice=notice)
    response.headers["HX-Trigger"] = TIMELINE_CHANGED
    return response


@blueprint.post("/emails/<engage_id:email_id>/attachments")
def attach_to_email(email_id: int) -> Any:
    """Attach a file to a saved draft; the rest of the form comes back as typed."""
    email = _owned_draft(email_id)
    draft, errors = _panel_draft(email)
    try:
        upload = chosen_file()
        if upload is None:
            raise AttachmentRefused(_("Choose a file to attach first."))
        stored = store_chosen(upload)
    except AttachmentRefused as refusal:
        return _panel(draft, email, {**errors, FILE_FIELD: str(refusal)}, refused=True)
    attachment = attach(current_engage.session, email, stored)
    return _panel(draft, email, errors, notice=_("Attached “%(name)s”.", name=attachment.filename))


@blueprint.post("/emails/<engage_id:email_id>/attachments/<engage_id:attachment_id>/remove")
def remove_attachment(email_id: int, attachment_id: int) -> Any:
    """Remove a file from a draft and delete its bytes."""
    email = _owned_draft(email_id)
    attachment = _attachment_of(email, attachment_id)
    draft, errors = _panel_draft(email)
    name = attachment.filename
    detach(current_engage.session, attachment)
    return _panel(draft, email, errors, notice=_("Removed “%(name)s”.", name=name))


@blueprint.post("/emails/<engage_id:email_id>/attachments/<engage_id:attachment_id>/follow")
def follow_attachment(email_id: int, attachment_id: int) -> Any:
    """Follow a file: recipients get a tracked link to it. Needs follow status On (S17)."""
    email = _owned_draft(email_id)
    attachment = _attachment_of(email, attachment_id)
    draft, errors = _panel_draft(email)
    status = emails.follow_status_of(emails.draft_recipients(draft), wants_follow=draft.follow)
    refusal = follow_refusal(status)
    if refusal:
        return _panel(draft, email, {**errors, LIST_FIELD: refusal}, refused=True)
    attachment.followed = True
    current_engage.session.commit()
    notice = _(
        "“%(name)s” will be followed: each recipient gets a link to it that tells you when "
        "they open it.",
        name=attachment.filename,
    )
    return _panel(draft, email, errors, notice=notice)


@blueprint.post("/emails/<engage_id:email_id>/attachments/<engage_id:attachment_id>/unfollow")
def unfollow_attachment(email_id: int, attachment_id: int) -> Any:
    """Stop following a file: it goes with the email as a normal attachment."""
    email = _owned_draft(email_id)
    attachment = _attachment_of(email, attachment_id)
    draft, errors = _panel_draft(email)
    attachment.followed = False
    current_engage.session.commit()
    notice = _("“%(name)s” will be sent as a normal attachment.", name=attachment.filename)
    return _panel(draft, email, errors, notice=notice)


@blueprint.get("/emails/<engage_id:email_id>/attachments/<engage_id:attachment_id>")
def download_attachment(email_id: int, attachment_id: int) -> Response:
    """A file of an email, for the rep who may see that email (no tracking)."""
    email = visible_email_or_404(email_id)
    return file_response(_attachment_of(email, attachment_id))
