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

Replies come from outside, so :func:`ingest` reads every message as hostile: whatever bytes it
is handed, it answers and never raises for them. It parses within limits (how deep the MIME
parts nest, how many there are, how many header lines, how much work the parser may do), reads
every header within a length and falls back to its raw text when the header parser trips, and
trusts a ``Date`` only between the email it answers and now. A message it cannot read is
answered ``unparseable`` with a reason and noted once in
:class:`engage.models.UnparseableMessage` by the hash of its bytes, so the same bytes are never
parsed again. Only a failure of engage's own (the database gone, say) raises; the IMAP poller
retries such a message :data:`IMAP_MAX_ATTEMPTS` times and then gives up on it the same way.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.feedparser import BufferedSubFile, BytesFeedParser  # type: ignore[attr-defined]
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import LockError
from rq.timeouts import BaseTimeoutException
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import absences, events, sequences
from .best_time import working_hours_from_config
from .content import html_to_text
from .context import current_engage
from .geocoding import timezone_of
from .models import Email, Party, UnparseableMessage
from .out_of_office import return_date

logger = logging.getLogger(__name__)

#: The outcomes of :func:`ingest`.
MATCHED = "matched"
AUTO_REPLY = "auto_reply"
DUPLICATE = "duplicate"
UNMATCHED = "unmatched"
UNKNOWN_SENDER = "unknown_sender"
UNPARSEABLE = "unparseable"

#: The largest message the inbound endpoint takes.
INBOUND_MAX_BYTES = 10 * 1024 * 1024

#: How many characters of an auto-reply's text are read for a return date (SPEC S42).
_RETURN_DATE_CHARS = 20_000

#: How many characters of a reply's own text are kept for the timeline.
EXCERPT_CHARS = 300

#: How many unseen messages one poll reads at most; the rest wait for the next poll, so one
#: run stays well inside RQ's default job timeout.
IMAP_BATCH = 200

#: Seconds after which the poller's lock frees itself, should a worker die holding it.
IMAP_LOCK_SECONDS = 600

#: Seconds before an IMAP connection or command gives up.
IMAP_TIMEOUT = 30

#: How many times the poller tries a message whose ingesting fails (or stops the poll) before
#: it gives up on it: notes it as unparseable, flags it ``\\Seen`` and reads it no more.
IMAP_MAX_ATTEMPTS = 3

#: Seconds the poller remembers a message's failed attempts.
IMAP_ATTEMPTS_TTL = 7 * 24 * 3600

# -- limits on what one message may ask of the parser -----------------------------------------
# Mail programs stay far below each; a message beyond one is answered ``unparseable``.

#: How deep MIME parts may nest (a forward of a forward of … nests two or three levels a time;
#: Postfix refuses mail past 100). Python's parser recurses once a level and fails near 1,000.
MIME_MAX_DEPTH = 50

#: How many MIME parts a message may have.
MIME_MAX_PARTS = 1000

#: How many header lines a message may have, all its parts together.
MAX_HEADER_LINES = 10_000

#: How much work the parser may do: every line it reads is checked against every multipart
#: boundary still open, so lines times nesting is what a message costs (a 25 MB attachment
#: four levels deep is about 1.7 million checks; 10 million take a few seconds at most).
PARSE_MAX_LINE_CHECKS = 10_000_000

#: The longest header value handed to the header parser, whose cost grows faster than the
#: length; the rest is cut. Threading headers are read from their raw text, whole.
HEADER_MAX_CHARS = 16 * 1024

#: How many characters of a reply's text are read for its excerpt.
BODY_MAX_CHARS = 1_000_000

#: How many ``In-Reply-To`` and ``References`` ids, and ``From`` addresses, are looked up.
MAX_THREAD_IDS = 100
MAX_SENDERS = 10

#: A ``Date`` before this is no date a reply was written on.
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """What :func:`ingest` made of one message.

    :param status: ``matched`` (a person's reply, recorded), ``auto_reply`` (recorded as a
        machine reply that counts as no reply), ``duplicate`` (recorded before),
        ``unmatched`` (it answers none of engage's emails), ``unknown_sender`` (it answers
        one, but its sender is not among that email's recipients) or ``unparseable`` (it
        could not be read as a message; noted once, see :class:`UnparseableMessage`).
    :param email_id: the email it answers, when one was found.
    :param party_id: the recipient who wrote it, when found.
    :param reason: why it is ``unparseable`` (or, for a ``duplicate`` of such a message,
        ``"unparseable: …"``).
    """

    status: str
    email_id: int | None = None
    party_id: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The outcome as the inbound endpoint answers it (``reason`` only when there is one)."""
        answer: dict[str, Any] = {
            "status": self.status,
            "email_id": self.email_id,
            "party_id": self.party_id,
        }
        if self.reason is not None:
            answer["reason"] = self.reason
        return answer


class Unparseable(Exception):
    """A message engage cannot read as one; the text says why."""


# -- reading a message that may be hostile ----------------------------------------------------

#: Control characters, which no stored text keeps (PostgreSQL refuses NUL outright).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(text: str) -> str:
    """``text`` fit to store: no control characters, no lone surrogates, ``\\n`` line ends.

    The parser keeps the bytes it could not decode as lone surrogates; they become U+FFFD.
    """
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


class _InboundPolicy(EmailPolicy):
    """:data:`email.policy.default`, but a header it cannot parse is read as its raw text.

    The header parser raises on some hostile values (``IndexError``, ``AttributeError``, a
    ``RecursionError`` for a few thousand nested comments, and inside the message parser too,
    where a part's ``Content-Type`` is read) and takes quadratic time on others, so values are
    cut at :data:`HEADER_MAX_CHARS` first. Undecoded 8-bit bytes that are valid UTF-8 (as
    RFC 6532 mail sends them) are read as UTF-8.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        if not isinstance(value, str) or hasattr(value, "name"):
            return super().header_fetch_parse(name, value)
        value = "".join(value.splitlines())[:HEADER_MAX_CHARS]
        try:
            value = value.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeError:
            pass  # not UTF-8: the header parser makes the bytes U+FFFD
        try:
            return super().header_fetch_parse(name, value)
        except Exception:  # the email package on input it was not written for
            return _clean(value)


_POLICY = _InboundPolicy()


class _MeteredInput(BufferedSubFile):
    """The parser's input, counting its work: each line read, times the boundaries open."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = PARSE_MAX_LINE_CHECKS

    def readline(self) -> str | object:
        self.budget -= 1 + len(self._eofstack)
        if self.budget < 0:
            raise Unparseable(
                f"parsing it takes too long (over {PARSE_MAX_LINE_CHECKS:,} line checks)"
            )
        return super().readline()


class _BoundedParser(BytesFeedParser):
    """Python's message parser, stopped at :data:`MIME_MAX_DEPTH`, :data:`MIME_MAX_PARTS`,
    :data:`MAX_HEADER_LINES` and :data:`PARSE_MAX_LINE_CHECKS`.

    The parser recurses once per nesting level (and a message nested 1,000 deep ends in a
    ``RecursionError``), and every line it reads is checked against every open boundary;
    stopping it where it creates a part and reads a line keeps both bounded. What it returns
    is a message tree no deeper than :data:`MIME_MAX_DEPTH`, safe for the email package's own
    recursive walks.
    """

    def __init__(self) -> None:
        super().__init__(policy=_POLICY)
        self._input = _MeteredInput()
        self._parts = 0
        self._header_lines = 0

    def _new_message(self) -> None:
        self._parts += 1
        if self._parts > MIME_MAX_PARTS:
            raise Unparseable(f"more than {MIME_MAX_PARTS} MIME parts")
        if len(self._msgstack) >= MIME_MAX_DEPTH:  # type: ignore[attr-defined]
            raise Unparseable(f"MIME parts nested more than {MIME_MAX_DEPTH} levels deep")
        super()._new_message()  # type: ignore[misc]

    def _parse_headers(self, lines: list[str]) -> None:
        self._header_lines += len(lines)
        if self._header_lines > MAX_HEADER_LINES:
            raise Unparseable(f"more than {MAX_HEADER_LINES} header lines")
        super()._parse_headers(lines)  # type: ignore[misc]


def parse(raw: bytes) -> EmailMessage:
    """``raw`` parsed within engage's limits, with :data:`email.policy.default`'s API.

    :raises Unparseable: past a limit, or when ``raw`` has no header field at all (an empty
        or binary blob is no message).
    """
    parser = _BoundedParser()
    parser.feed(raw)
    message: EmailMessage = parser.close()  # type: ignore[assignment]
    if not message.keys():
        raise Unparseable("no header fields: not an RFC 822 message")
    return message


def raw_digest(raw: bytes) -> str:
    """The SHA-256 of a message's bytes, which :class:`UnparseableMessage` is keyed by."""
    return hashlib.sha256(raw).hexdigest()


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


def _raw_header(message: Message, name: str) -> str | None:
    """The first ``name`` header's raw text, as the message carries it."""
    name = name.lower()
    return next((str(v) for k, v in message.raw_items() if k.lower() == name), None)


def _header(message: Message, name: str) -> str:
    """A header as text on one line; one the parser cannot make sense of is read raw."""
    try:
        value = message.get(name)
    except Exception:  # the email package on input it was not written for
        value = _raw_header(message, name)
    return "" if value is None else _clean(" ".join(str(value).split()))


#: Something shaped like an address, for a header that ``getaddresses`` trips on.
_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"]+@[^\s<>()\[\]\\,;:\"]+")


def _addresses(message: Message, name: str) -> list[str]:
    """The bare addresses in a header, lower-cased: at most :data:`MAX_SENDERS`, each
    printable and no longer than an address can be."""
    found: list[str] = []
    for key, value in message.raw_items():
        if key.lower() != name.lower():
            continue
        value = str(value)[:HEADER_MAX_CHARS]
        try:
            found += [address for _name, address in getaddresses([value])]
        except Exception:  # a RecursionError for a few thousand nested comments, …
            found += _ADDRESS.findall(value)
    found = [a.strip().lower() for a in found]
    return list(dict.fromkeys(a for a in found if a and len(a) <= 320 and a.isprintable()))[
        :MAX_SENDERS
    ]


def auto_reply_reason(message: Message) -> str | None:
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
        report = str(message.get_param("report-type") or "").lower()
        if report == "disposition-notification":
            return "read receipt"
        return "delivery status notification"
    if match := _AUTO_SUBJECT.match(_header(message, "Subject")):
        return f"subject starts with {' '.join(match.group('words').split())!r}"
    return None


# -- what a reply says ----------------------------------------------------------------------

#: A Message-ID: printable ASCII between angle brackets (RFC 5322 allows nothing else).
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+>")

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


def _thread_ids(message: Message) -> list[str]:
    """The Message-IDs this message answers: ``In-Reply-To``, then ``References`` newest first;
    at most :data:`MAX_THREAD_IDS`, read from the headers' raw text (however long)."""
    ids = _MESSAGE_ID.findall(_raw_header(message, "In-Reply-To") or "")
    ids += reversed(_MESSAGE_ID.findall(_raw_header(message, "References") or ""))
    return [i for i in dict.fromkeys(ids) if len(i) <= 255][:MAX_THREAD_IDS]


def _written_at(message: Message, now: datetime) -> datetime | None:
    """When the reply says it was written, in UTC; ``None`` when its ``Date`` is missing,
    unreadable, out of range, before :data:`EARLIEST_DATE` or later than ``now`` (the answered
    email's own time is checked by :func:`_occurred_at`)."""
    try:
        when = parsedate_to_datetime(" ".join((_raw_header(message, "Date") or "").split())[:200])
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # "-0000": the zone is unknown, UTC is the best guess
        when = when.astimezone(UTC)  # OverflowError for 31 Dec 9999 -1200
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if EARLIEST_DATE <= when <= now else None


def _occurred_at(written_at: datetime | None, email: Email, now: datetime) -> datetime:
    """When the reply was written: its ``Date`` when that can be true, else the time it came.

    A ``Date`` can be true only between the answered email's own ``Date`` and now: a reply is
    not written before the email it answers, nor in the future (a clock running fast, a
    forged date, ``31 Dec 9999``).
    """
    earliest = email.submitted_at or email.created_at
    if written_at is None or (earliest is not None and written_at < earliest):
        return now
    return written_at


def _dedupe_id(message: Message, raw: bytes) -> str:
    """What makes this reply unique: its Message-ID, else (or when unwieldy) a hash of it."""
    found = _MESSAGE_ID.findall(_raw_header(message, "Message-ID") or "")
    if found and len(found[0]) <= 250:
        return str(found[0])
    return "sha256:" + hashlib.sha256(found[0].encode() if found else raw).hexdigest()


def _body_part(message: EmailMessage) -> EmailMessage | None:
    """The part :meth:`EmailMessage.get_body` picks with ``("plain", "html")``, found by a walk
    that keeps its own stack (so no nesting can exhaust Python's) and stops after
    :data:`MIME_MAX_PARTS` parts."""
    best, best_rank = None, 2
    stack = [message]
    for _seen in range(MIME_MAX_PARTS):
        if not stack:
            break
        part = stack.pop()
        if part.is_attachment():
            continue
        maintype, _slash, subtype = part.get_content_type().partition("/")
        if maintype == "text":
            rank = {"plain": 0, "html": 1}.get(subtype, 2)
            if rank < best_rank:
                best, best_rank = part, rank
                if rank == 0:
                    break
            continue
        if maintype != "multipart" or not part.is_multipart():
            continue  # a message/rfc822 part is a quoted message, not the reply's text
        children = [p for p in part.get_payload() if isinstance(p, EmailMessage)]
        if subtype == "related":  # only its start part (RFC 2387), else the first
            start = part.get_param("start")
            chosen = [c for c in children if start and c.get("Content-ID") == start]
            children = chosen[:1] or children[:1]
        stack.extend(reversed(children))
    return best


def _body_text(message: EmailMessage) -> str:
    """The text of the reply's body (its HTML made text), at most :data:`BODY_MAX_CHARS`."""
    part = _body_part(message)
    if part is None:
        return ""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    content = None
    # Its charset, else UTF-8 (what 8-bit text with no charset, or an unknown one, mostly is).
    for charset in (part.get_content_charset("us-ascii"), "utf-8"):
        try:
            content = payload.decode(str(charset))
            break
        except (LookupError, UnicodeError, ValueError):
            continue  # unknown, no text encoding ("zlib"), or not what the bytes are
    if content is None:
        content = payload.decode("utf-8", "replace")
    content = content[:BODY_MAX_CHARS]
    if part.get_content_type() == "text/html":
        content = html_to_text(content)
    return _clean(content)


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


@dataclass(frozen=True, slots=True)
class Reply:
    """What :func:`read_reply` read in a message: plain values, clean to store."""

    senders: list[str]
    thread_ids: list[str]
    written_at: datetime | None
    dedupe_id: str
    subject: str
    excerpt: str
    auto_reply_reason: str | None
    #: For an out-of-office reply: the day it says its writer is back (SPEC S42), if it says.
    returns_on: date | None = None


def read_reply(raw: bytes, now: datetime | None = None) -> Reply:
    """Read the message in ``raw`` within engage's limits, touching no database.

    :raises Unparseable: when it cannot be read, for whatever reason; nothing else.
    """
    try:
        message = parse(raw)
        reason = auto_reply_reason(message)
        now = now or datetime.now(UTC)
        written_at = _written_at(message, now)
        subject = _header(message, "Subject")[:300]
        text = _body_text(message)
        return Reply(
            senders=_addresses(message, "From"),
            thread_ids=_thread_ids(message),
            written_at=written_at,
            dedupe_id=_dedupe_id(message, raw),
            subject=subject,
            excerpt=reply_excerpt(text),
            auto_reply_reason=_clean(reason)[:200] if reason else None,
            returns_on=(
                return_date(subject, text[:_RETURN_DATE_CHARS], written=(written_at or now).date())
                if reason
                else None
            ),
        )
    except Unparseable:
        raise
    except Exception as error:  # the email package (or engage) on input it was not written for
        logger.warning("an inbound message could not be read", exc_info=True)
        raise Unparseable(
            _clean(f"it could not be read ({type(error).__name__}: {error})")
        ) from error


#: A Message-ID header in raw bytes, found without the parser, for a message it failed on.
_RAW_MESSAGE_ID = re.compile(
    rb"^message-id:[ \t]*(<[!-;=?-~]{1,250}>)", re.IGNORECASE | re.MULTILINE
)


def record_unparseable(raw: bytes, *, source: str, reason: str) -> ReplyOutcome:
    """Note the message in ``raw`` as unparseable, once; commits.

    :returns: ``unparseable`` with the reason, or ``duplicate`` when it was noted before.
    """
    session: Session = current_engage.session  # type: ignore[assignment]
    reason = " ".join(_clean(reason).split())[:300]
    found = _RAW_MESSAGE_ID.search(raw[: HEADER_MAX_CHARS * 4])
    try:
        session.add(
            UnparseableMessage(
                sha256=raw_digest(raw),
                source=source[:20],
                reason=reason,
                size=len(raw),
                message_id=found.group(1).decode("ascii") if found else None,
            )
        )
        session.commit()
    except IntegrityError:
        # The same message came by two doors at once; the other one noted it.
        session.rollback()
        return ReplyOutcome(DUPLICATE, reason=f"unparseable: {reason}"[:300])
    logger.warning("unparseable message via %s (%d bytes): %s", source, len(raw), reason)
    return ReplyOutcome(UNPARSEABLE, reason=reason)


def ingest(raw: bytes, *, source: str) -> ReplyOutcome:
    """Record the message in ``raw`` as a reply to one of engage's emails, if it is one.

    Runs inside an app context and commits its own work. Safe to call twice with the same
    message: the second call answers ``duplicate`` and stores nothing. Any bytes at all may be
    handed in: a message that cannot be read is answered ``unparseable`` (and noted, so the
    same bytes answer ``duplicate`` next time without being parsed again). Only engage's own
    failures raise, such as a database that cannot be reached.

    :param raw: the whole message, as RFC 822 bytes.
    :param source: where it came from (``"imap"``, ``"inbound"``, …), for the log.
    :returns: the :class:`ReplyOutcome`.
    """
    # The host's scoped session, used as the plain Session it stands in for.
    session: Session = current_engage.session  # type: ignore[assignment]
    noted = session.scalar(
        sa.select(UnparseableMessage.reason).where(UnparseableMessage.sha256 == raw_digest(raw))
    )
    if noted is not None:
        logger.info("unparseable message via %s, seen before: %s", source, noted)
        return ReplyOutcome(DUPLICATE, reason=f"unparseable: {noted}"[:300])
    now = datetime.now(UTC)
    try:
        reply = read_reply(raw, now)
    except Unparseable as error:
        return record_unparseable(raw, source=source, reason=str(error))
    found, party = _find_recipient(session, reply.thread_ids, reply.senders)
    if party is None:
        logger.info("reply from %s via %s: %s", reply.senders, source, found.status)
        return found
    try:
        event = events.record_reply(
            session,
            party,
            occurred_at=_occurred_at(reply.written_at, party.email, now),
            message_id=reply.dedupe_id,
            subject=reply.subject,
            excerpt=reply.excerpt,
            auto_reply_reason=reply.auto_reply_reason,
        )
        if event is not None and reply.returns_on is not None:
            _note_absence(session, party, event.id, reply.returns_on, event.occurred_at)
        if event is not None and reply.auto_reply_reason is None:
            # A person answered: their sequences stop (S47); an auto-reply changes nothing.
            sequences.stop_on_reply(session, party)
        session.commit()
    except IntegrityError:
        # The same reply arrived by two doors at once; the other one stored it.
        session.rollback()
        event = None
    status = DUPLICATE if event is None else (AUTO_REPLY if reply.auto_reply_reason else MATCHED)
    logger.info(
        "reply to email %s from party %s via %s: %s", found.email_id, found.party_id, source, status
    )
    return ReplyOutcome(status, found.email_id, found.party_id)


def _note_absence(
    session: Session, party: Party, event_id: int, returns_on: date, written_at: datetime
) -> None:
    # The recipient's zone, when it is known already: their return is their working day's start.
    row = timezone_of(party.record, enqueue=False) if party.record else None
    absence = absences.note_auto_reply(
        session,
        party,
        event_id=event_id,
        returns_on=returns_on,
        written_at=written_at,
        zone=row.timezone if row is not None else None,
        hours=working_hours_from_config(current_app.config),
    )
    if absence is not None:
        # Their sequences wait until they are back (S47).
        sequences.pause_enrolments_until(session, party.address, absence.until)


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
    which stores nothing twice. A message whose ingesting fails (a database error, a bug) or
    never returns (the job killed) is tried again at the next polls, up to
    :data:`IMAP_MAX_ATTEMPTS` times, counted in Redis by the hash of its bytes; then it is noted
    as unparseable with the last error, flagged ``\\Seen``, and the mailbox moves on. A Redis
    lock keeps two pollers from reading the mailbox at once. Does nothing when
    ``ENGAGE_IMAP_URL`` is unset.

    :returns: how many messages were settled and flagged ``\\Seen`` (ingested, or given up on).
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
            if not _ingest_or_give_up(raw, uid):
                continue  # left unseen: the next poll tries again; the other messages go on
            _check(client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)"), "STORE")
            ingested += 1
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass  # the connection is going away either way
    return ingested


def _ingest_or_give_up(raw: bytes, uid: str) -> bool:
    """Ingest one message of the mailbox; ``True`` once it is settled and may be flagged seen.

    Redis keeps, per message (by the hash of its bytes), how often it was tried and how often
    that failed. A try that neither returned nor failed stopped the poll itself (the job timed
    out, the worker died): after :data:`IMAP_MAX_ATTEMPTS` of those the message is not tried
    again. After :data:`IMAP_MAX_ATTEMPTS` failures it is given up on. Giving up needs the
    database too: while that fails, the message stays unseen and is tried again, so a database
    that is down loses no reply.
    """
    redis = current_engage.redis
    key = f"engage:imap:attempts:{raw_digest(raw)}"
    with redis.pipeline() as pipe:
        pipe.hincrby(key, "tries", 1)
        pipe.hget(key, "failures")
        pipe.expire(key, IMAP_ATTEMPTS_TTL)
        tries, failures, _ok = pipe.execute()
    failures = int(failures or 0)
    stopped = tries - 1 - failures
    if stopped >= IMAP_MAX_ATTEMPTS:
        return _give_up(raw, uid, key, f"ingesting it stopped the poll {stopped} times")
    try:
        ingest(raw, source="imap")
    except BaseTimeoutException:
        raise  # the job's time is up: this try counts as one that stopped the poll
    except Exception as error:
        current_engage.session.rollback()
        failures = redis.hincrby(key, "failures", 1)
        logger.exception(
            "could not ingest message %s of the reply mailbox (attempt %d of %d)",
            uid,
            failures,
            IMAP_MAX_ATTEMPTS,
        )
        if failures < IMAP_MAX_ATTEMPTS:
            return False
        reason = f"ingesting it failed {failures} times, last with {type(error).__name__}: {error}"
        return _give_up(raw, uid, key, reason)
    redis.delete(key)
    return True


def _give_up(raw: bytes, uid: str, key: str, reason: str) -> bool:
    try:
        record_unparseable(raw, source="imap", reason=reason)
    except Exception:
        current_engage.session.rollback()
        logger.exception("could not note message %s of the reply mailbox as unparseable", uid)
        return False
    current_engage.redis.delete(key)
    logger.error("gave up on message %s of the reply mailbox: %s", uid, reason)
    return True
