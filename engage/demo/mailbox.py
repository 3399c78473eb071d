"""The demo mailbox: a local SMTP sink that keeps every message, and what the pages show of it.

engage sends through whatever SMTP relay ``ENGAGE_SMTP_URL`` names. In the demo that relay is
an aiosmtpd server that delivers nowhere: it stores each message whole in the
``demo_mail_message`` table, so the mailbox pages can show what every recipient received,
whichever process (web server, RQ worker) sent it and whichever thread runs the sink.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formataddr, formatdate, getaddresses, make_msgid, parsedate_to_datetime
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask
from flask_babel import format_datetime, gettext
from sqlalchemy.orm import Session, scoped_session

from .models import MailMessage, MailRecipient, db, prepare_engine

_PARSER = BytesParser(policy=policy.default)


def parse_message(raw: bytes) -> EmailMessage:
    """The message in ``raw`` as an :class:`email.message.EmailMessage`."""
    return _PARSER.parsebytes(raw)  # type: ignore[return-value]


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError):
        # A header the parser cannot make sense of still deserves to be shown, not to crash
        # the sink: fall back to its raw text.
        value = next((v for k, v in message.raw_items() if k.lower() == name.lower()), None)
    return "" if value is None else str(value)


def store_message(
    session: Session | scoped_session[Any],
    raw: bytes,
    *,
    envelope_from: str,
    envelope_to: list[str],
) -> MailMessage:
    """Keep one received message with its envelope; the caller commits ``session``."""
    message = parse_message(raw)
    row = MailMessage(
        envelope_from=envelope_from or "",
        subject=_header(message, "Subject"),
        from_header=_header(message, "From"),
        to_header=", ".join(h for h in (_header(message, "To"), _header(message, "Cc")) if h),
        raw=raw,
    )
    row.recipients = [MailRecipient(address=address) for address in dict.fromkeys(envelope_to)]
    session.add(row)
    return row


class MailboxHandler:
    """An aiosmtpd handler that stores every message it is given in the demo mailbox.

    :param engine: the engine of the demo database; the handler opens its own short sessions
        on it, so it works in any thread or process.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _store(self, raw: bytes, envelope_from: str, envelope_to: list[str]) -> int:
        with Session(self.engine) as session:
            row = store_message(session, raw, envelope_from=envelope_from, envelope_to=envelope_to)
            session.commit()
            return row.id

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        """Store the message (off the event loop, since SQLite may make us wait)."""
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            await asyncio.to_thread(
                self._store, raw, envelope.mail_from or "", list(envelope.rcpt_tos)
            )
        except Exception:
            # A temporary failure makes engage's sender retry later instead of losing the mail.
            return "451 Requested action aborted: the demo mailbox could not store the message"
        return "250 Message accepted for delivery"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _engine_for(app_or_db_url: Flask | str) -> sa.Engine:
    if isinstance(app_or_db_url, Flask):
        with app_or_db_url.app_context():
            # The app's engine already has the demo's connection setup; tables exist.
            return db.engine
    engine = sa.create_engine(app_or_db_url)
    prepare_engine(engine)
    tables = [MailMessage.__table__, MailRecipient.__table__]
    db.metadata.create_all(engine, tables=tables)  # type: ignore[arg-type]
    return engine


def start_smtp_sink(
    app_or_db_url: Flask | str, host: str = "127.0.0.1", port: int = 0
) -> Controller:
    """Start the demo's SMTP sink in a thread of its own and return its controller.

    :param app_or_db_url: the demo app (its database is used) or a database URL.
    :param host: the address to listen on.
    :param port: the port to listen on; ``0`` picks a free one (read ``controller.port``).
    :returns: the running :class:`aiosmtpd.controller.Controller`; call ``stop()`` on it.
    """
    engine = _engine_for(app_or_db_url)
    controller = Controller(
        MailboxHandler(engine),
        hostname=host,
        port=port or free_port(host),
        enable_SMTPUTF8=True,
        # The sink is local and keeps whole messages: allow big attachments through.
        data_size_limit=64 * 1024 * 1024,
        server_hostname="demo-mailbox.localhost",
    )
    controller.start()
    return controller


@dataclass
class Part:
    """An attachment of a received message, for listing and download."""

    index: int
    filename: str
    content_type: str
    size: int


@dataclass
class MessageView:
    """What the mailbox page shows of one message."""

    #: ``(name, value)``; the Date header's value is a datetime (shown in the reader's zone
    #: and language), when it parses.
    headers: list[tuple[str, Any]]
    text: str | None
    html: str | None
    attachments: list[Part] = field(default_factory=list)


#: The headers shown above a message, in this order, when present.
SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID", "In-Reply-To")


def _content(part: EmailMessage | None) -> str | None:
    if part is None:
        return None
    try:
        text = str(part.get_content())
    except (LookupError, UnicodeError):
        payload = part.get_payload(decode=True) or b""
        text = bytes(payload).decode("utf-8", "replace")
    # SMTP carries CRLF line ends; the page wants plain newlines.
    return text.replace("\r\n", "\n")


def _dated(value: str) -> Any:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return value


def attachment_parts(message: EmailMessage) -> list[EmailMessage]:
    """The attachments of ``message`` in a stable order, so an index names one of them."""
    return list(message.iter_attachments())  # type: ignore[arg-type]


def view_message(raw: bytes) -> MessageView:
    """Headers, text body, HTML body and attachments of a raw message."""
    message = parse_message(raw)
    headers: list[tuple[str, Any]] = [
        (name, _dated(value) if name == "Date" else value)
        for name in SHOWN_HEADERS
        if (value := _header(message, name))
    ]
    attachments = []
    for index, part in enumerate(attachment_parts(message)):
        payload = part.get_payload(decode=True) or b""
        attachments.append(
            Part(
                index=index,
                filename=part.get_filename() or f"attachment-{index + 1}",
                content_type=part.get_content_type(),
                size=len(payload),
            )
        )
    return MessageView(
        headers=headers,
        text=_content(message.get_body(preferencelist=("plain",))),  # type: ignore[arg-type]
        html=_content(message.get_body(preferencelist=("html",))),  # type: ignore[arg-type]
        attachments=attachments,
    )


def framed_html(html: str) -> str:
    """The HTML body prepared for a sandboxed ``<iframe srcdoc>``.

    Links open in a new tab: a sandboxed frame may open popups that escape the sandbox, so the
    reader lands on the real page (through engage's click tracking) with scripts allowed there,
    while the message itself runs no script.
    """
    base = '<base target="_blank">'
    # Inside <head> when there is one: before the doctype it would put the frame in quirks mode.
    for opening in (_HEAD, _HTML):
        if match := opening.search(html):
            return html[: match.end()] + base + html[match.end() :]
    return base + html


_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)
_HTML = re.compile(r"<html(?:\s[^>]*)?>", re.IGNORECASE)


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def build_reply(raw: bytes, *, reply_as: str, text: str, name: str = "") -> EmailMessage:
    """A reply to the message in ``raw``, written by its recipient ``reply_as``.

    It threads the way mail clients do (``In-Reply-To`` and ``References`` name the original
    ``Message-ID``), goes to the original's ``Reply-To`` or else its ``From``, and quotes the
    original text below the reply.

    :param raw: the message being answered.
    :param reply_as: the address of the recipient who answers.
    :param text: what they write.
    :param name: their display name, if known.
    """
    original = parse_message(raw)
    reply = EmailMessage()
    reply["From"] = formataddr((name, reply_as)) if name else reply_as
    reply["To"] = _header(original, "Reply-To") or _header(original, "From")
    subject = _header(original, "Subject")
    reply["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    reply["Date"] = formatdate(localtime=False)
    domain = reply_as.rpartition("@")[2] or "demo-mailbox.localhost"
    reply["Message-ID"] = make_msgid(domain=domain)
    if message_id := _header(original, "Message-ID").strip():
        reply["In-Reply-To"] = message_id
        references = _header(original, "References").split()
        reply["References"] = " ".join([*references, message_id])
    body = text.replace("\r\n", "\n").rstrip() + "\n"
    original_text = _content(original.get_body(preferencelist=("plain",)))  # type: ignore[arg-type]
    if original_text:
        # As a mail program writes it: in its user's language (the demo's page language).
        sent = _dated(_header(original, "Date"))
        when = format_datetime(sent, "medium") if isinstance(sent, datetime) else sent
        intro = gettext(
            "On %(date)s, %(sender)s wrote:", date=when, sender=_header(original, "From")
        )
        body += f"\n{intro}\n{_quoted(original_text)}\n"
    reply.set_content(body)
    return reply


def reply_recipients(reply: EmailMessage) -> list[str]:
    """The envelope recipients of a reply: every address in its To and Cc headers."""
    return [
        address
        for _name, address in getaddresses(reply.get_all("To", []) + reply.get_all("Cc", []))
        if address
    ]
