"""Attachments of a draft: add, remove, follow or not, and fetch them (SPEC S16–S18).

The compose panel lists the draft's files. Its controls are submit buttons of the compose form
that post the whole form to the routes of :mod:`engage.web.compose_attachments` (``formaction``), so every step works as a plain
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
  files as tracked links (see :mod:`engage.delivery` and :mod:`engage.web.tracking`).

Removing a file, or deleting its draft, deletes its bytes from the store.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from typing import IO

from flask import current_app
from sqlalchemy.orm import Session

from . import emails
from .context import current_engage
from .follow import FollowState, FollowStatus
from .i18n import gettext as _
from .models import Attachment, Email, EmailStatus

#: The name of the compose form's file input, and the key of its errors.
FILE_FIELD = "attachment"
#: The key of errors about the listed files (a refused Follow).
LIST_FIELD = "attachments"

CHUNK = 1 << 16
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


def limit_mb() -> float:
    """``ENGAGE_MAX_ATTACHMENT_MB``: the largest file accepted, in megabytes."""
    return float(current_app.config["ENGAGE_MAX_ATTACHMENT_MB"])


def limit_bytes() -> int:
    """The largest file accepted, in bytes."""
    return int(limit_mb() * 1024 * 1024)


def limit_text() -> str:
    """The limit as the user reads it, in megabytes (``10``, ``2.5``)."""
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
            return b"".join(iter(lambda: self.read(CHUNK), b""))
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


def store_upload(name: str | None, stream: IO[bytes], mimetype: str | None) -> StoredFile:
    """Copy an uploaded file (its name, bytes and the browser's content type) into the
    attachment store, measuring it on the way.

    :raises AttachmentRefused: when no file was chosen, or it is empty, or larger than the limit;
        nothing stays in the store then.
    """
    if not name:
        raise AttachmentRefused(_("Choose a file to attach first."))
    filename = clean_filename(name)
    reader = _MeasuredReader(stream, limit_bytes())
    store = current_engage.store
    key = store.save(reader, filename=filename)  # type: ignore[arg-type]
    if reader.too_large:
        store.delete(key)
        raise AttachmentRefused(
            _(
                "“%(name)s” is larger than the %(limit)s MB limit for attachments, so it was not "
                "attached. Nothing else changed.",
                name=filename,
                limit=limit_text(),
            )
        )
    if reader.size == 0:
        store.delete(key)
        raise AttachmentRefused(_("“%(name)s” is empty, so it was not attached.", name=filename))
    return StoredFile(
        filename=filename,
        content_type=content_type_for(filename, mimetype),
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
