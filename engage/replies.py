"""Replies to engage's emails, from every source, through one code path (SPEC S7, S13, S28).

A reply reaches engage in one of three ways, and each hands the raw RFC 822 bytes to
:func:`ingest`:

- the IMAP poller :func:`poll_imap`, an RQ job that ``rq cron engage.cron`` schedules, reads
  the unseen messages of the mailbox named by ``ENGAGE_IMAP_URL``;
- the inbound endpoint ``POST <prefix>/inbound/replies`` takes a message pushed by a mail
  provider's inbound webhook or a mail server's pipe, authenticated with
  ``ENGAGE_INBOUND_TOKEN``;
- the demo mailbox's Reply button posts to that same endpoint.

:func:`ingest` threads the message to one of engage's emails by its ``In-Reply-To`` and
``References`` headers, finds the recipient who wrote it by the ``From`` address, tells an
auto-reply (out of office, delivery report, …) from a person's answer with
:func:`auto_reply_reason`, and records it with :func:`engage.events.record_reply`. The same
message ingested twice is stored once, so every source may deliver more than once.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import LockError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import events
from .content import html_to_text
from .context import current_engage
from .models import Email, Party

logger = logging.getLogger(__name__)

#: The outcomes of :func:`ingest`.
MATCHED = "matched"
AUTO_REPLY = "auto_reply"
DUPLICATE = "duplicate"
UNMATCHED = "unmatched"
UNKNOWN_SENDER = "unknown_sender"

#: The largest message the inbound endpoint takes.
INBOUND_MAX_BYTES = 10 * 1024 * 1024

#: How many characters of a reply's own text are kept for the timeline.
EXCERPT_CHARS = 300

#: How many unseen messages one poll reads at most; the rest wait for the next poll, so one
#: run stays well inside RQ's default job timeout.
IMAP_BATCH = 200

#: Seconds after which the poller's lock frees itself, should a worker die holding it.
IMAP_LOCK_SECONDS = 600

#: Seconds before an IMAP connection or command gives up.
IMAP_TIMEOUT = 30

_PARSER = BytesParser(policy=default_policy)


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """What :func:`ingest` made of one message.

    :param status: ``matched`` (a person's reply, recorded), ``auto_reply`` (recorded as a
        machine reply that counts as no reply), ``duplicate`` (recorded before),
        ``unmatched`` (it answers none of engage's emails) or ``unknown_sender`` (it answers
        one, but its sender is not among that email's recipients).
    :param email_id: the email it answers, when one was found.
    :param party_id: the recipient who wrote it, when found.
    """

    status: str
    email_id: int | None = None
    party_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The outcome as the inbound endpoint answers it."""
        return {"status": self.status, "email_id": self.email_id, "party_id": self.party_id}


# -- telling auto-replies from people -------------------------------------------------------

#: ``Precedence`` values that no person sets on a reply of their own.
_MACHINE_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})

#: Headers whose mere presence marks an auto-responder (Exchange, Postfix vacation, procmail,
#: hosted help desks). ``X-Auto-Response-Suppress`` is not one of them: Outlook sets it on
#: ordinary mail to ask others not to auto-reply.
_AUTORESPONDER_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")

#: Local parts of addresses that only mail servers send from.
_SERVER_SENDERS = frozenset({"mailer-daemon", "postmaster"})

#: What auto-responders put at the start of a subject, in the languages reps meet most. Only a
#: prefix counts: the words alone, or followed within a few words by a colon or a closing
#: bracket (``Out of Office AutoReply: …``, ``[Auto-Reply] …``), so a person's ``Re: Out of
#: office next week?`` stays a reply.
_AUTO_SUBJECT_WORDS = (
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autoresponse",
    "vacation reply",
    "abwesenheitsnotiz",
    "abwesenheit",
    "automatische antwort",
    "automatische abwesenheitsnotiz",
    "réponse automatique",
    "reponse automatique",
    "absence",
    "absent du bureau",
    "fuera de la oficina",
    "respuesta automática",
    "respuesta automatica",
    "risposta automatica",
    "fuori ufficio",
    "automatisch antwoord",
    "afwezig",
    "resposta automática",
    "resposta automatica",
    "ausente do escritório",
    "autosvar",
    "automatisk svar",
    "automatiskt svar",
    "fraværende",
    "poza biurem",
    "odpowiedź automatyczna",
    "automatická odpověď",
    "автоответ",
    "автоматический ответ",
    "自动回复",
    "自動回覆",
    "自動応答",
)
_AUTO_SUBJECT = re.compile(
    r"^\s*[\[(]?\s*(?P<words>"
    + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in _AUTO_SUBJECT_WORDS)
    + r")\b(?:[^:：\])\n]{0,30}[:：\])]|\s*$)",
    re.IGNORECASE,
)


def _header(message: EmailMessage, name: str) -> str:
    """A header as text; one the parser cannot make sense of is read raw rather than raising."""
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):
        value = next((v for k, v in message.raw_items() if k.lower() == name.lower()), None)
    return "" if value is None else " ".join(str(value).split())


def _addresses(message: EmailMessage, name: str) -> list[str]:
    """The bare addresses in a header, lower-cased."""
    raw = [v for k, v in message.raw_items() if k.lower() == name.lower()]
    return [a.strip().lower() for _n, a in getaddresses([str(v) for v in raw]) if a.strip()]


def auto_reply_reason(message: EmailMessage) -> str | None:
    """Why ``message`` was written by a machine rather than a person, or ``None`` for a person.

    Looks at what auto-responders and mail servers mark their messages with (RFC 3834's
    ``Auto-Submitted``, the ``X-Autoreply`` family, ``Precedence``), at null or mail-server
    senders, at delivery and read reports (``multipart/report``) and at the subject prefixes
    out-of-office replies carry in several languages. ``X-Auto-Response-Suppress`` is ignored:
    Outlook puts it on ordinary mail.

    :param message: the message, parsed with :data:`email.policy.default`.
    :returns: a short reason for people to read, such as ``"Auto-Submitted: auto-replied"``.
    """
    submitted = _header(message, "Auto-Submitted")
    if submitted and submitted.split(";")[0].strip().lower() != "no":
        return f"Auto-Submitted: {submitted[:60]}"
    for name in _AUTORESPONDER_HEADERS:
        if name in message:
            return f"{name} header"
    for name in ("Precedence", "X-Precedence"):
        value = _header(message, name).lower()
        if value in _MACHINE_PRECEDENCE:
            return f"{name}: {value}"
    if _header(message, "Return-Path").strip() == "<>":
        return "null sender (Return-Path: <>)"
    for name in ("From", "Sender", "Return-Path"):
        for address in _addresses(message, name):
            if address.partition("@")[0] in _SERVER_SENDERS:
                return f"sent by a mail server ({address[:120]})"
    if message.get_content_type() == "multipart/report":
        report = (message.get_param("report-type") or "").lower()  # type: ignore[union-attr]
        if report == "disposition-notification":
            return "read receipt"
        return "delivery status notification"
    if match := _AUTO_SUBJECT.match(_header(message, "Subject")):
        return f"subject starts with {' '.join(match.group('words').split())!r}"
    return None


# -- what a reply says ----------------------------------------------------------------------

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")

#: The verbs of the line a mail client writes above the quoted original: "On …, X wrote:",
#: "Am … schrieb X:", "Le …, X a écrit :".
_ATTRIBUTION_VERB = (
    r"(wrote|schrieb|a\s+écrit|escribió|ha\s+scritto|schreef|escreveu|skrev"
    r"|napisał(\(a\))?|написал(\(а\))?)"
)
_ATTRIBUTION_ENDS = re.compile(_ATTRIBUTION_VERB + r"\s*:$", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^(on|am|le|el|il|op|em|den|w dniu)\s", re.IGNORECASE)
_ATTRIBUTION_OPENS = re.compile(
    _ATTRIBUTION_START.pattern + r".*\b" + _ATTRIBUTION_VERB + r"(?!\w).*:$", re.IGNORECASE
)


def _is_attribution(line: str) -> bool:
    return bool(_ATTRIBUTION_ENDS.search(line) or _ATTRIBUTION_OPENS.match(line))


#: Lines after which everything is the original message or a signature.
_CUT = re.compile(
    r"^(-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht)\s*-{2,}|_{20,}|-- ?)$",
    re.IGNORECASE,
)


_HEADER_BLOCK_START = re.compile(r"^\*?(from|von|de|da|van|från|fra|od)\s*:", re.IGNORECASE)
_HEADER_BLOCK_NEXT = re.compile(
    r"^\*?(sent|date|gesendet|datum|envoyé|enviado|fecha|inviato|verzonden|skickat|sendt|wysłano)"
    r"\s*:",
    re.IGNORECASE,
)


def _thread_ids(message: EmailMessage) -> list[str]:
    """The Message-IDs this message answers: ``In-Reply-To``, then ``References`` newest first."""
    ids = _MESSAGE_ID.findall(_header(message, "In-Reply-To"))
    ids += reversed(_MESSAGE_ID.findall(_header(message, "References")))
    return list(dict.fromkeys(ids))


def _occurred_at(message: EmailMessage, now: datetime) -> datetime:
    """When the reply was written: its ``Date``, in UTC, never later than now."""
    try:
        when = parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError, IndexError):
        return now
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000": the zone is unknown, UTC is the best guess
    return min(when.astimezone(UTC), now)


def _dedupe_id(message: EmailMessage, raw: bytes) -> str:
    """What makes this reply unique: its Message-ID, else (or when unwieldy) a hash of it."""
    found = _MESSAGE_ID.findall(_header(message, "Message-ID"))
    if found and len(found[0]) <= 250:
        return found[0]
    return "sha256:" + hashlib.sha256(found[0].encode() if found else raw).hexdigest()


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = str(part.get_content())  # type: ignore[union-attr]
    except (LookupError, UnicodeError, AttributeError):
        content = bytes(part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        content = html_to_text(content)
    return content.replace("\r\n", "\n")


def _original_headers(lines: list[str], index: int) -> bool:
    # Outlook quotes the original under a header block ("From: …" then "Sent: …") instead of
    # an attribution line.
    nxt = lines[index + 1].strip().lower() if index + 1 < len(lines) else ""
    return bool(_HEADER_BLOCK_START.match(lines[index].strip())) and bool(
        _HEADER_BLOCK_NEXT.match(nxt)
    )


def reply_excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The reply's own words: quoted lines, the "On … wrote:" line, the quoted original and
    the signature left out; at most ``limit`` characters, cut at a word.
    """
    lines = text.splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if _CUT.match(stripped) or _original_headers(lines, index):
            break
        if stripped.startswith(">"):
            continue
        if stripped.endswith(":"):
            # Clients wrap a long attribution: its first half is then on the line before.
            if (
                kept
                and not _ATTRIBUTION_START.match(stripped)
                and _ATTRIBUTION_OPENS.match(f"{kept[-1].strip()} {stripped}")
            ):
                kept.pop()
                continue
            if _is_attribution(stripped):
                continue
        kept.append(line.rstrip())
    excerpt = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    if len(excerpt) <= limit:
        return excerpt
    cut = excerpt[:limit].rsplit(None, 1)[0] if " " in excerpt[:limit] else excerpt[:limit]
    return cut.rstrip() + "…"


# -- ingesting ------------------------------------------------------------------------------


def _find_recipient(
    session: Session, ids: list[str], senders: list[str]
) -> tuple[ReplyOutcome, Party | None]:
    """The email among ``ids`` (most recent first) that one of ``senders`` received."""
    if not ids:
        return ReplyOutcome(UNMATCHED), None
    rows = session.execute(sa.select(Email.message_id, Email.id).where(Email.message_id.in_(ids)))
    found = {message_id: email_id for message_id, email_id in rows}
    emails = [found[i] for i in ids if i in found]
    if not emails:
        return ReplyOutcome(UNMATCHED), None
    for email_id in emails:
        for address in senders:
            party = events.recipient_by_address(session, email_id, address)
            if party is not None:
                return ReplyOutcome(MATCHED, email_id, party.id), party
    return ReplyOutcome(UNKNOWN_SENDER, emails[0]), None


def ingest(raw: bytes, *, source: str) -> ReplyOutcome:
    """Record the message in ``raw`` as a reply to one of engage's emails, if it is one.

    Runs inside an app context and commits its own work. Safe to call twice with the same
    message: the second call answers ``duplicate`` and stores nothing.

    :param raw: the whole message, as RFC 822 bytes.
    :param source: where it came from (``"imap"``, ``"inbound"``, …), for the log.
    :returns: the :class:`ReplyOutcome`.
    """
    message: EmailMessage = _PARSER.parsebytes(raw)  # type: ignore[assignment]
    # The host's scoped session, used as the plain Session it stands in for.
    session: Session = current_engage.session  # type: ignore[assignment]
    senders = _addresses(message, "From")
    found, party = _find_recipient(session, _thread_ids(message), senders)
    if party is None:
        logger.info("reply from %s via %s: %s", senders, source, found.status)
        return found
    reason = auto_reply_reason(message)
    try:
        event = events.record_reply(
            session,
            party,
            occurred_at=_occurred_at(message, datetime.now(UTC)),
            message_id=_dedupe_id(message, raw),
            subject=_header(message, "Subject")[:300],
            excerpt=reply_excerpt(_body_text(message)),
            auto_reply_reason=reason[:200] if reason else None,
        )
        session.commit()
    except IntegrityError:
        # The same reply arrived by two doors at once; the other one stored it.
        session.rollback()
        event = None
    status = DUPLICATE if event is None else (AUTO_REPLY if reason else MATCHED)
    logger.info(
        "reply to email %s from party %s via %s: %s", found.email_id, found.party_id, source, status
    )
    return ReplyOutcome(status, found.email_id, found.party_id)


# -- the IMAP mailbox -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """Where the reply mailbox is, read from ``ENGAGE_IMAP_URL``.

    ``imap://user:password@host[:port]/MAILBOX`` connects in plain text (port 143),
    ``imap+starttls://`` upgrades that connection with STARTTLS, ``imaps://`` uses TLS from the
    start (port 993). The server's certificate is verified. User and password are
    percent-decoded (write ``@`` as ``%40``); the mailbox defaults to ``INBOX``.
    """

    host: str
    port: int
    user: str
    password: str
    mailbox: str = "INBOX"
    tls: str = "none"  # "none", "starttls" or "ssl"

    @classmethod
    def from_url(cls, url: str) -> ImapSettings:
        """Read an ``imap://``, ``imap+starttls://`` or ``imaps://`` URL.

        :raises ValueError: when the URL is not one of those or lacks a host or a user.
        """
        parts = urlsplit(url)
        tls = {"imap": "none", "imap+starttls": "starttls", "imaps": "ssl"}.get(parts.scheme)
        if tls is None:
            raise ValueError(
                f"ENGAGE_IMAP_URL must start with imap://, imap+starttls:// or imaps://, "
                f"not {parts.scheme!r}"
            )
        if not parts.hostname or not parts.username:
            raise ValueError("ENGAGE_IMAP_URL needs a user and a host: imap://user:password@host/")
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if tls == "ssl" else 143),
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
            tls=tls,
        )


def _quoted_mailbox(name: str) -> str:
    # imaplib sends mailbox names as they are; one with spaces must be an IMAP quoted string.
    if re.fullmatch(r"[A-Za-z0-9_.\-/]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _connect(settings: ImapSettings) -> imaplib.IMAP4:
    if settings.tls == "ssl":
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            settings.host,
            settings.port,
            ssl_context=ssl.create_default_context(),
            timeout=IMAP_TIMEOUT,
        )
    else:
        client = imaplib.IMAP4(settings.host, settings.port, timeout=IMAP_TIMEOUT)
        if settings.tls == "starttls":
            client.starttls(ssl.create_default_context())
    client.login(settings.user, settings.password)
    return client


def _check(answer: tuple[str, Any], what: str) -> Any:
    status, data = answer
    if status != "OK":
        raise imaplib.IMAP4.error(f"IMAP {what} failed: {data!r}")
    return data


def _fetched_bytes(data: Any) -> bytes | None:
    # A FETCH answer is a list mixing (envelope, literal) tuples and closing b")" strings.
    for item in data or ():
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def poll_imap() -> int:
    """Read the unseen messages of the reply mailbox and ingest each (an RQ job).

    Every message is fetched without marking it read (``BODY.PEEK[]``), ingested, and only then
    flagged ``\\Seen``: a crash in between leaves it unseen, and the next poll ingests it again,
    which stores nothing twice. A Redis lock keeps two pollers from reading the mailbox at
    once. Does nothing when ``ENGAGE_IMAP_URL`` is unset.

    :returns: how many messages were ingested.
    """
    url = current_app.config.get("ENGAGE_IMAP_URL")
    if not url:
        return 0
    settings = ImapSettings.from_url(url)
    lock = current_engage.redis.lock("engage:imap", timeout=IMAP_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        logger.info("another poller is reading the reply mailbox; this one stands back")
        return 0
    try:
        return _poll(settings)
    finally:
        try:
            lock.release()
        except LockError:
            pass  # it expired during a very long poll; nobody else holds it for us


def _poll(settings: ImapSettings) -> int:
    client = _connect(settings)
    ingested = 0
    try:
        _check(client.select(_quoted_mailbox(settings.mailbox)), "SELECT")
        found = _check(client.uid("SEARCH", "UNSEEN"), "SEARCH")[0] or b""
        uids = bytes(found).decode("ascii").split()
        for uid in uids[:IMAP_BATCH]:
            raw = _fetched_bytes(_check(client.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH"))
            if raw is None:
                continue  # expunged by someone else since the search
            try:
                ingest(raw, source="imap")
            except Exception:
                # Left unseen, so the next poll tries again; the other messages go on.
                current_engage.session.rollback()
                logger.exception("could not ingest message %s of the reply mailbox", uid)
                continue
            _check(client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)"), "STORE")
            ingested += 1
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass  # the connection is going away either way
    return ingested
