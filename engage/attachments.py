"""Attachments of a draft: add, remove, follow or not, and fetch them (SPEC S16–S18).

The compose panel lists the draft's files. Its controls are submit buttons of the compose form
that post the whole form to the routes below (``formaction``), so every step works as a plain
form without JavaScript, and with htmx the panel is swapped in place as for Save.

The rules, in one place:

- **Attach** on a new email saves the draft first with everything the form holds (S18: the
  reference makes you save; engage saves for you), then attaches. On a saved draft, Attach,
  Remove, Follow and Don't follow change only the files: the panel comes back with the rest of
  the form exactly as typed, and Save keeps the text as it always does.
- A file is measured while it is copied into the attachment store, never by what the request
  claims: beyond ``ENGAGE_MAX_ATTACHMENT_MB`` the copy stops, its bytes are dropped and the
  panel says which file and which limit. Empty files and a missing file are refused too.
- The file name is kept for display and for the MIME header only, cleaned of paths and control
  characters; the bytes live under a key the store chooses. The content type is the browser's,
  or guessed from the name when the browser had none better than ``application/octet-stream``.
- Only the draft's owner changes its files (anyone else gets 404), and only while it is a draft
  (S23): once Send was pressed they are frozen.
- A file can be *followed* only while the email's follow status is On (S8, S17). When it is
  Off, Blocked or Disabled the Follow control is refused with the reason, and files already
  marked followed are shown as going out as normal attachments. :func:`engage.emails.submit`
  settles this for good: when the sent email is not followed, every file is unfollowed, so each
  copy carries it as a MIME part. In a followed email each recipient's copy lists the followed
  files as tracked links (see :mod:`engage.delivery` and :func:`engage.tracking.attachment`).

Removing a file, or deleting its draft, deletes its bytes from the store.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from typing import IO, Any

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
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from . import emails
from .access import Denied, sales_user, visible_email_or_404
from .compose_views import TIMELINE_CHANGED, _draft_from_form, _render_compose
from .emails import DraftInput
from .extension import current_engage
from .follow import FollowState, FollowStatus
from .htmx import is_htmx
from .i18n import gettext as _
from .models import Attachment, Email, EmailStatus
from .views import blueprint

#: The name of the compose form's file input, and the key of its errors.
FILE_FIELD = "attachment"
#: The key of errors about the listed files (a refused Follow).
LIST_FIELD = "attachments"

_CHUNK = 1 << 16
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
#: Longest file name kept, in UTF-8 bytes (the column holds 255 characters).
_NAME_BYTES = 200


class AttachmentRefused(Exception):
    """A file that cannot be attached; the message says why, in the user's words."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file copied into the attachment store, not yet attached to an email."""

    filename: str
    content_type: str
    size: int
    sha256: str
    key: str


# -- the rules, without Flask's request ------------------------------------------------------


def clean_filename(name: str | None) -> str:
    """A file name fit to show and to put in a MIME header: no folders, no control characters.

    The result is never used as a path. Browsers of old sent the whole path of the file; only
    its last part is kept. Control and format characters (a right-to-left override can make
    ``gpj.exe`` look like ``exe.jpg``) are dropped, white space is collapsed, and a long name is
    shortened, keeping its extension. An empty result becomes ``attachment``.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split()).strip(" .")
    if len(text.encode()) > _NAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        if not dot or len(ext) > 16:
            stem, ext = text, ""
        suffix = f".{ext}" if ext else ""
        room = _NAME_BYTES - len(suffix.encode())
        stem = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
        text = stem + suffix
    return text or "attachment"


def content_type_for(filename: str, sent: str | None) -> str:
    """The content type to keep: the browser's, unless it is missing, generic or malformed."""
    kind = (sent or "").split(";", 1)[0].strip().lower()
    if kind and kind != "application/octet-stream" and _MIME_TYPE.match(kind):
        return kind
    guessed, _encoding = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def format_size(size: int) -> str:
    """A file size as people read it: ``512 bytes``, ``14 KB``, ``2.5 MB`` (1 KB = 1024 bytes)."""
    if size < 1024:
        return _("%(num)s bytes", num=size)
    value, unit = size / 1024, "KB"
    for larger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    shown = f"{value:.1f}".removesuffix(".0") if value < 10 else f"{value:.0f}"
    return f"{shown} {unit}"


def limit_mb() -> float:
    """``ENGAGE_MAX_ATTACHMENT_MB``: the largest file accepted, in megabytes."""
    return float(current_app.config["ENGAGE_MAX_ATTACHMENT_MB"])


def limit_bytes() -> int:
    """The largest file accepted, in bytes."""
    return int(limit_mb() * 1024 * 1024)


def _limit_text() -> str:
    return f"{limit_mb():g}"


class _MeasuredReader:
    """Reads a stream for the store, counting and hashing, and stops once past ``limit``.

    When the stream goes past the limit it reads as ended, so no store ever receives more than
    ``limit`` bytes plus one chunk, whatever the request claimed about its size.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._hash = hashlib.sha256()
        self.size = 0
        self.too_large = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        if self.too_large:
            return b""
        chunk = self._stream.read(size)
        if not chunk:
            return b""
        self.size += len(chunk)
        if self.size > self._limit:
            self.too_large = True
            return b""
        self._hash.update(chunk)
        return chunk

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def store_upload(upload: FileStorage) -> StoredFile:
    """Copy an uploaded file into the attachment store, measuring it on the way.

    :raises AttachmentRefused: when no file was chosen, or it is empty, or larger than the limit;
        nothing stays in the store then.
    """
    if not upload or not upload.filename:
        raise AttachmentRefused(_("Choose a file to attach first."))
    filename = clean_filename(upload.filename)
    reader = _MeasuredReader(upload.stream, limit_bytes())
    store = current_engage.store
    key = store.save(reader, filename=filename)  # type: ignore[arg-type]
    if reader.too_large:
        store.delete(key)
        raise AttachmentRefused(
            _(
                "“%(name)s” is larger than the %(limit)s MB limit for attachments, so it was not "
                "attached. Nothing else changed.",
                name=filename,
                limit=_limit_text(),
            )
        )
    if reader.size == 0:
        store.delete(key)
        raise AttachmentRefused(_("“%(name)s” is empty, so it was not attached.", name=filename))
    return StoredFile(
        filename=filename,
        content_type=content_type_for(filename, upload.mimetype),
        size=reader.size,
        sha256=reader.sha256,
        key=key,
    )


def attach(session: Session, email: Email, stored: StoredFile) -> Attachment:
    """Attach a stored file to a draft, unfollowed, and commit.

    If the commit fails the stored bytes are deleted, so the store keeps no orphan.
    """
    if email.status is not EmailStatus.DRAFT:
        raise ValueError("only a draft's attachments can change")
    attachment = Attachment(
        filename=stored.filename,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
        storage_key=stored.key,
        followed=False,
    )
    email.attachments.append(attachment)
    try:
        session.commit()
    except Exception:
        session.rollback()
        current_engage.store.delete(stored.key)
        raise
    return attachment


def detach(session: Session, attachment: Attachment) -> None:
    """Remove an attachment from its draft and delete its bytes; commits."""
    key = attachment.storage_key
    attachment.email.attachments.remove(attachment)
    session.commit()
    current_engage.store.delete(key)


def follow_refusal(status: FollowStatus) -> str | None:
    """Why a file of a message with this follow status cannot be followed; ``None`` if it can."""
    if status.state is FollowState.ON:
        return None
    if status.state is FollowState.OFF:
        return _(
            "This email is not followed, so its attachments cannot be followed. Press Follow "
            "for the email first; until then its files are sent as normal attachments."
        )
    if status.state is FollowState.BLOCKED:
        return _(
            "Following is blocked because a recipient does not allow it, so attachments cannot "
            "be followed. They are sent as normal attachments."
        )
    if status.state is FollowState.BULK:
        return _("Bulk emails are never followed, so their attachments cannot be followed.")
    return emails.follow_disabled_reason() or _("Following is not available.")


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
        request.max_form_memory_size = max(int(memory), 2 * body + _CHUNK)
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
                limit=_limit_text(),
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
        return _draft_from_form()
    return DraftInput.from_email(email), {}


def _panel(
    draft: DraftInput,
    email: Email | None,
    errors: dict[str, str],
    *,
    notice: str | None = None,
    refused: bool = False,
) -> Any:
    return _render_compose(
        draft, email=email, errors=errors, notice=notice, status=422 if refused else 200
    )


@blueprint.post("/compose/attachments")
def attach_to_new_email() -> Any:
    """Attach a file to a new email: save it as a draft with what the form holds, then attach."""
    user = sales_user()
    draft, errors = _draft_from_form()
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
        stored = store_upload(upload)
    except AttachmentRefused as refusal:
        return _panel(draft, None, {FILE_FIELD: str(refusal)}, refused=True)
    session = current_engage.session
    try:
        email = emails.save_draft(session, user, draft, None)
    except Exception:
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


@blueprint.post("/emails/<int:email_id>/attachments")
def attach_to_email(email_id: int) -> Any:
    """Attach a file to a saved draft; the rest of the form comes back as typed."""
    email = _owned_draft(email_id)
    draft, errors = _panel_draft(email)
    try:
        upload = chosen_file()
        if upload is None:
            raise AttachmentRefused(_("Choose a file to attach first."))
        stored = store_upload(upload)
    except AttachmentRefused as refusal:
        return _panel(draft, email, {**errors, FILE_FIELD: str(refusal)}, refused=True)
    attachment = attach(current_engage.session, email, stored)
    return _panel(draft, email, errors, notice=_("Attached “%(name)s”.", name=attachment.filename))


@blueprint.post("/emails/<int:email_id>/attachments/<int:attachment_id>/remove")
def remove_attachment(email_id: int, attachment_id: int) -> Any:
    """Remove a file from a draft and delete its bytes."""
    email = _owned_draft(email_id)
    attachment = _attachment_of(email, attachment_id)
    draft, errors = _panel_draft(email)
    name = attachment.filename
    detach(current_engage.session, attachment)
    return _panel(draft, email, errors, notice=_("Removed “%(name)s”.", name=name))


@blueprint.post("/emails/<int:email_id>/attachments/<int:attachment_id>/follow")
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


@blueprint.post("/emails/<int:email_id>/attachments/<int:attachment_id>/unfollow")
def unfollow_attachment(email_id: int, attachment_id: int) -> Any:
    """Stop following a file: it goes with the email as a normal attachment."""
    email = _owned_draft(email_id)
    attachment = _attachment_of(email, attachment_id)
    draft, errors = _panel_draft(email)
    attachment.followed = False
    current_engage.session.commit()
    notice = _("“%(name)s” will be sent as a normal attachment.", name=attachment.filename)
    return _panel(draft, email, errors, notice=notice)


@blueprint.get("/emails/<int:email_id>/attachments/<int:attachment_id>")
def download_attachment(email_id: int, attachment_id: int) -> Response:
    """A file of an email, for the rep who may see that email (no tracking)."""
    email = visible_email_or_404(email_id)
    return file_response(_attachment_of(email, attachment_id))
