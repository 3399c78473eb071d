"""Sending: from a queued email to one SMTP copy per recipient (DESIGN "Sending").

Each To, Cc and Bcc recipient gets a copy of their own (so each can later get their own
tracking tokens, SPEC S13). Every copy carries the To and Cc headers as written and never a Bcc
header; the envelope names only that copy's recipient. All copies share one Message-ID, so a
reply to any of them threads back to the email.

Attachments (SPEC S16, S17): files that are not followed travel in every copy as MIME parts,
so the message becomes multipart/mixed around its multipart/alternative body. Followed files
never do: each followed copy ends with a short list of links to them, through the attachment
endpoint with that recipient's token, so their opens are seen recipient by recipient. A copy
that is not followed never carries such a link; its followed files go as MIME parts.

The job, :func:`deliver`, is idempotent, and its bookkeeping is in the database, copy by copy:
each copy's attempt is committed before it is handed to the relay and its answer right after,
so a job that dies leaves every copy either done, untried, or *in doubt* (attempted, no answer
known), and the next job knows which. ``ENGAGE_IN_DOUBT`` decides what becomes of those (by
default they are shown to the rep with a Resend button, never resent blindly). A short Redis
lock, renewed while the job runs, keeps two jobs for one email from running side by side. Transient
failures (4xx, connection trouble) are retried with backoff; permanent ones (5xx) mark that
recipient failed with the server's own words.
"""

from __future__ import annotations

import contextlib
import functools
import html
import os
import secrets
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import errors as email_errors
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.policy import Policy
from email.utils import format_datetime
from typing import cast
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import LockError, RedisError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from . import mime, queueing, template_performance
from .content import format_address, header_safe, html_to_text
from .context import current_engage
from .i18n import format_size, language, stored
from .i18n import gettext as _
from .models import (
    Attachment,
    DeliveryState,
    Email,
    EmailStatus,
    Party,
    PartyRole,
    utcnow,
)
from .opt_out import opt_out_line_enabled, with_opt_out_line
from .recipients import recipient_preference
from .records import FollowPreference
from .timeline import move_email_activities
from .tracking import attachment_url, tracked_html


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to reach the relay, read from ``ENGAGE_SMTP_URL``."""

    host: str
    port: int
    security: str  # "plain", "starttls" or "ssl"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    ca_file: str | None = None

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 30.0, ca_file: str | None = None
    ) -> SmtpSettings:
        """Read ``smtp://``, ``smtp+starttls://`` or ``smtps://`` URLs, with ``user:pass@``.

        :raises ValueError: for another scheme or a URL without a host.
        """
        parts = urlsplit(url)
        security = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "ssl"}.get(parts.scheme)
        if security is None or not parts.hostname:
            raise ValueError(
                f"ENGAGE_SMTP_URL must look like smtp://host:port, smtp+starttls://… or "
                f"smtps://…, not {url!r}"
            )
        default_port = {"plain": 25, "starttls": 587, "ssl": 465}[security]
        return cls(
            host=parts.hostname,
            port=parts.port or default_port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
            ca_file=ca_file,
        )

    def connect(self) -> smtplib.SMTP:
        """An open, authenticated SMTP session."""
        if self.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=_tls_context(self.ca_file)
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                client.starttls(context=_tls_context(self.ca_file))
        if self.username:
            client.login(self.username, self.password or "")
        return client


@functools.cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    # Loading the system's CA certificates takes tens of milliseconds: do it once per process.
    # The relay's certificate is always verified, against ca_file when one is configured.
    return ssl.create_default_context(cafile=ca_file)


def build_message(
    email: Email, recipient: Party, files: Mapping[int, bytes] | None = None
) -> EmailMessage:
    """The copy of ``email`` that goes to ``recipient``: headers as written, no Bcc header.

    :param files: attachment bytes by attachment id, read once for all copies; a file not in
        it is read from the attachment store.
    """
    message = EmailMessage()
    _set_headers(message, email)
    _set_body(message, email, recipient, files)
    return message


def _set_headers(message: EmailMessage, email: Email) -> None:
    """The headers every copy of ``email`` carries alike."""
    sender = email.parties_in(PartyRole.FROM)[0]
    message["From"] = _header_address(sender)
    to = email.parties_in(PartyRole.TO)
    cc = email.parties_in(PartyRole.CC)
    if to:
        message["To"] = ", ".join(_header_address(p) for p in to)
    if cc:
        message["Cc"] = ", ".join(_header_address(p) for p in cc)
    if not to and not cc:
        # Only Bcc recipients: say so without naming anyone, as mail clients do.
        message["To"] = "undisclosed-recipients:;"
    message["Subject"] = header_safe(email.subject)
    message["Date"] = format_datetime(email.submitted_at or utcnow())
    message["Message-ID"] = email.message_id
    if email.in_reply_to:
        # A later email of a sequence, in the thread of the first (S46).
        message["In-Reply-To"] = email.in_reply_to
        message["References"] = email.in_reply_to
    message["X-Engage-Email"] = str(email.id)


class _Bodies:
    """Each recipient's own text and HTML of one email: as written, or followed (S13).

    What every followed copy shares (the links rewritten, the text made from the HTML, the
    organisation's opt-out switch) is worked out once, with a stand-in for the recipient's
    token that each copy then replaces.
    """

    def __init__(self, email: Email) -> None:
        self.email = email
        self.stand_in = f"engage{secrets.token_hex(16)}"
        self.tracked: tuple[str, str] | None = None
        self.opt_out_line: bool | None = None

    def of(self, recipient: Party) -> tuple[str, str]:
        """``recipient``'s text (never empty) and HTML."""
        email = self.email
        if not _followed_copy(email, recipient):
            return email.text_body or " ", email.html_body
        # This recipient's own copy: links through the click endpoint, an open pixel (S13).
        token = recipient.token
        assert token is not None
        if self.tracked is None:
            tracked = tracked_html(email.html_body, self.stand_in)
            self.tracked = (tracked, html_to_text(tracked))
        body_html, body_text = (part.replace(self.stand_in, token) for part in self.tracked)
        linked = [a for a in email.attachments if a.followed]
        if linked:
            links = [(a, attachment_url(token, a.id)) for a in linked]
            with language(block_language(email, recipient)):
                body_html += _links_html(links)
                body_text = f"{body_text}\n\n{_links_text(links)}"
        # The recipient's own choice (S43), after the rewriting: its link is never tracked.
        if self.opt_out_line is None:
            self.opt_out_line = opt_out_line_enabled()
        body_html, body_text = with_opt_out_line(
            email, recipient, body_html, body_text, enabled=self.opt_out_line
        )
        return body_text or " ", body_html


def _followed_copy(email: Email, recipient: Party) -> bool:
    return bool(email.followed and recipient.token)


def _set_body(
    message: EmailMessage, email: Email, recipient: Party, files: Mapping[int, bytes] | None
) -> None:
    """``recipient``'s own body of ``email``: its parts and the headers that describe them."""
    body_text, body_html = _Bodies(email).of(recipient)
    message.set_content(body_text)
    if body_html:
        message.add_alternative(_html_document(body_html), subtype="html")
    for attachment in mime_attachments(email, followed_copy=_followed_copy(email, recipient)):
        data = files.get(attachment.id) if files else None
        maintype, _slash, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            read_attachment(attachment) if data is None else data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )


def mime_attachments(email: Email, *, followed_copy: bool) -> list[Attachment]:
    """The files a copy carries as MIME parts: all of them, but followed ones in a followed copy."""
    return [a for a in email.attachments if not (followed_copy and a.followed)]


def read_attachment(attachment: Attachment) -> bytes:
    """The bytes of an attachment, from the attachment store.

    :raises Unbuildable: when the store no longer has them.
    """
    try:
        with current_engage.store.open(attachment.storage_key) as stream:
            return stream.read()
    except (KeyError, FileNotFoundError) as exc:
        raise Unbuildable(
            stored("delivery.missing_attachment", filename=attachment.filename)
        ) from exc


def block_language(email: Email, recipient: Party) -> str | None:
    """The language of what engage adds to ``recipient``'s copy: the recipient's own when the
    CRM knows it, else the sender's when they wrote it, else ``None`` (the app's default)."""
    if recipient.record is not None:
        record = current_engage.records.get(recipient.record)
        if record is not None and record.language:
            return record.language
    return email.language


def _links_html(links: list[tuple[Attachment, str]]) -> str:
    items = "".join(
        f'<li><a href="{html.escape(url)}">{html.escape(a.filename)}</a> '
        f"({html.escape(format_size(a.size))})</li>"
        for a, url in links
    )
    title = html.escape(_("Attachments"))
    return f'<div class="engage-attachments"><p><strong>{title}</strong></p><ul>{items}</ul></div>'


def _links_text(links: list[tuple[Attachment, str]]) -> str:
    lines = [f"{_('Attachments')}:"]
    lines += [f"- {a.filename} ({format_size(a.size)}): {url}" for a, url in links]
    return "\n".join(lines)


def _header_address(party: Party) -> str:
    # Names may come from the host's records and users, which engage does not check: a line
    # break there must not stop the copy from being built.
    return format_address(header_safe(party.name), party.address)


def _html_document(body: str) -> str:
    return f'<!doctype html>\n<html><head><meta charset="utf-8"></head><body>{body}</body></html>\n'


class _Transient(Exception):
    """A failure worth trying again later."""


class Unbuildable(Exception):
    """A copy that cannot be turned into a message, now or ever; ``str(exc)`` says why."""


class _CopyWriter:
    """The bytes of each copy of one email.

    The headers every copy shares are built and flattened once per policy, and so is each
    attached file; each copy's body is written by :mod:`engage.mime` after them. The result
    is the message :func:`build_message` describes (its MIME boundaries drawn anew), for a
    fraction of the work per copy.
    """

    def __init__(self, email: Email, files: Mapping[int, bytes]) -> None:
        self.email = email
        self.files = dict(files)
        self.heads: dict[Policy, bytes] = {}
        self.file_parts: dict[tuple[int, Policy], bytes] = {}
        self.bodies = _Bodies(email)

    def copy(self, party: Party, policy: Policy) -> bytes:
        """The bytes of ``party``'s copy.

        :raises Unbuildable: when the message cannot be built (a header the MIME layer refuses,
            a file gone from the store): retrying would fail the same way, so the copy fails now.
        """
        try:
            return self._head(policy) + self._body(party, policy)
        except Unbuildable:
            raise
        except (ValueError, TypeError, LookupError, UnicodeError, email_errors.MessageError) as exc:
            raise Unbuildable(stored("delivery.unbuildable", detail=str(exc)[:500])) from exc

    def _head(self, policy: Policy) -> bytes:
        head = self.heads.get(policy)
        if head is None:
            headers = EmailMessage(policy=mime.BUILD_POLICY)
            _set_headers(headers, self.email)
            # Header lines, then the empty line that ends them: the body's own header lines
            # go before that line.
            blank = policy.linesep.encode("ascii")
            head = headers.as_bytes(policy=policy).removesuffix(blank)
            self.heads[policy] = head
        return head

    def _body(self, party: Party, policy: Policy) -> bytes:
        linesep = policy.linesep.encode("ascii")
        body_text, body_html = self.bodies.of(party)
        part = mime.text_part(body_text, "plain", linesep)
        if body_html:
            html_part = mime.text_part(_html_document(body_html), "html", linesep)
            part = mime.multipart("alternative", [part, html_part], linesep)
        followed_copy = _followed_copy(self.email, party)
        files = [
            self._file(a, policy) for a in mime_attachments(self.email, followed_copy=followed_copy)
        ]
        if files:
            part = mime.multipart("mixed", [part, *files], linesep)
        return mime.message_body(part, linesep)

    def _file(self, attachment: Attachment, policy: Policy) -> bytes:
        key = (attachment.id, policy)
        part = self.file_parts.get(key)
        if part is None:
            data = self.files.get(attachment.id)
            if data is None:
                data = self.files[attachment.id] = read_attachment(attachment)
            part = mime.file_part(
                data,
                attachment.content_type,
                attachment.filename,
                policy,
            )
            self.file_parts[key] = part
        return part


def _cannot_build(party: Party, exc: Unbuildable) -> None:
    party.delivery_state = DeliveryState.FAILED
    party.delivery_error = str(exc)
    party.delivery_attempts += 1


def retry_delays() -> list[float]:
    """Seconds to wait before each retry; the length is the number of retries."""
    return [float(s) for s in current_app.config["ENGAGE_SMTP_RETRY_DELAYS"]]


def deliver(email_id: int) -> str:
    """The delivery job: send every copy of the email not yet accepted.

    Returns what happened, for the job's result: ``sent``, ``partly_failed``, ``failed``,
    ``in_doubt``, ``retrying``, ``busy`` (another job holds the email) or ``nothing to do``.
    """
    with _email_lock(email_id) as held:
        if not held:
            return "busy"
        try:
            return _deliver(email_id)
        except Exception as exc:
            # A job that keeps failing for a reason of its own (bad data, a bug) must not be
            # queued again forever by the sweep: after a few tries the email fails with the
            # reason. A failure that leaves the database unreachable cannot be written down,
            # and then the email stays sending, as it should until the database is back.
            _count_job_error(email_id, exc)
            raise


#: How many times a delivery job may fail with an unexpected error before its email fails.
JOB_ERRORS_ALLOWED = 3


def _count_job_error(email_id: int, exc: Exception) -> None:
    session = current_engage.session
    session.rollback()
    try:
        key = f"engage:deliver:errors:{email_id}"
        errors = int(current_engage.redis.incr(key))
        current_engage.redis.expire(key, 24 * 3600)
    except RedisError:
        return
    if errors < JOB_ERRORS_ALLOWED:
        return
    with contextlib.suppress(Exception):
        email = session.get(Email, email_id)
        if email is None or email.status is not EmailStatus.SENDING:
            return
        detail = f"{type(exc).__name__}: {exc}"[:500]
        reason = stored("delivery.stopped", num=errors, detail=detail)
        for party in email.recipients:
            if party.delivery_state in (DeliveryState.PENDING, DeliveryState.RETRYING):
                party.delivery_state = DeliveryState.FAILED
                party.delivery_error = reason
                party.attempt_id = None
        _settle(email)


#: Seconds the email's lock lives without renewal: a dead worker holds it no longer than this.
LOCK_SECONDS = 10


@contextlib.contextmanager
def _email_lock(email_id: int) -> Iterator[bool]:
    """Keep other jobs off this email while this one sends; yields whether it is ours.

    The lock is short and renewed by a thread while the job runs, so a worker killed mid-send
    stops holding it within :data:`LOCK_SECONDS`. It only saves work: each copy is claimed in
    the database before it is sent (see :meth:`_Ledger.claim`), so two jobs that both ran (Redis lost
    the lock) still send no copy twice. Without Redis the job goes on unlocked, for that reason.
    """
    try:
        lock = current_engage.redis.lock(
            _lock_key(email_id), timeout=LOCK_SECONDS, thread_local=False
        )
        if not lock.acquire(blocking=False):
            yield False
            return
        # Running now: no longer waiting in the queue (see sweep_sending).
        current_engage.redis.delete(_queued_key(email_id))
    except RedisError:
        yield True
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LOCK_SECONDS / 3):
            with contextlib.suppress(RedisError, LockError):
                lock.reacquire()

    renewer = threading.Thread(target=renew, name=f"engage-lock-{email_id}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(RedisError, LockError):
            lock.release()


def _deliver(email_id: int) -> str:
    session = current_engage.session
    # The email, its parties and its files in one query: the job reads them all.
    email = session.get(Email, email_id, options=_WITH_PARTIES_AND_FILES)
    if email is None or email.status is not EmailStatus.SENDING:
        return "nothing to do"
    _settle_lost_attempts(email)
    pending = [
        p
        for p in email.recipients
        if p.delivery_state in (DeliveryState.PENDING, DeliveryState.RETRYING)
        and p.attempt_id is None
    ]
    if not pending:
        return _settle(email)
    settings = SmtpSettings.from_url(
        current_app.config["ENGAGE_SMTP_URL"],
        timeout=float(current_app.config["ENGAGE_SMTP_TIMEOUT"]),
        ca_file=current_app.config["ENGAGE_SMTP_CA_FILE"],
    )
    with _kept_after_commit(), _copy_ledger() as ledger:
        unreachable = _send_copies(email, pending, settings, ledger)
        if unreachable:
            _wait_for_the_relay(email.id)
        # The last copy's answer is stored with the email's outcome: one commit for both.
        outcome = _settle(email, ledger)
        ledger.settled()
        return outcome


_WITH_PARTIES_AND_FILES = (joinedload(Email.parties), joinedload(Email.attachments))


@contextlib.contextmanager
def _kept_after_commit() -> Iterator[None]:
    """Commit per copy without reloading the email and its parties after each commit.

    The job holds the email (its lock, and each copy's claim), so what it loaded stays true;
    expiring it at every commit would cost a SELECT per copy for nothing.
    """
    session = current_engage.db.session()  # the Session behind Flask-SQLAlchemy's scope
    before = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = before


#: What becomes of a copy whose attempt was recorded but whose answer never was (the worker
#: died between handing it over and the relay's answer): ``at_most_once`` marks it *in doubt*
#: for the rep to resend, ``at_least_once`` sends it again.
IN_DOUBT_POLICIES = ("at_most_once", "at_least_once")


def _settle_lost_attempts(email: Email) -> None:
    """Decide, by ``ENGAGE_IN_DOUBT``, the copies a dead job attempted without an answer.

    The caller holds the email's lock, so no live job is waiting for those answers.
    """
    lost = [
        p
        for p in email.recipients
        if p.attempt_id is not None
        and p.delivery_state in (DeliveryState.PENDING, DeliveryState.RETRYING)
    ]
    if not lost:
        return
    policy = current_app.config["ENGAGE_IN_DOUBT"]
    if policy not in IN_DOUBT_POLICIES:
        raise ValueError(f"ENGAGE_IN_DOUBT must be one of {IN_DOUBT_POLICIES}, not {policy!r}")
    for party in lost:
        party.attempt_id = None
        if policy == "at_most_once":
            party.delivery_state = DeliveryState.IN_DOUBT
            party.delivery_error = stored("delivery.in_doubt")
    current_engage.session.commit()


def _send_copies(
    email: Email, pending: list[Party], settings: SmtpSettings, ledger: _Ledger
) -> bool:
    """Send each pending copy, writing down its attempt before and its answer right after.

    Each claim is committed before its copy is handed over, and each answer with the next
    claim or the email's outcome (see :class:`_Ledger`), so at any moment at most one copy is
    attempted without a known answer. Returns whether the relay could not be reached (some
    copies wait for it).
    """
    unreachable = False
    sender = email.parties_in(PartyRole.FROM)[0].address
    if email.followed:
        _withdraw_refused_follows(pending)
    try:
        # Files that travel as MIME parts are read from the store once, not once per copy.
        files = {
            a.id: read_attachment(a) for a in mime_attachments(email, followed_copy=email.followed)
        }
    except Unbuildable as exc:
        for party in pending:
            _cannot_build(party, exc)
        current_engage.session.commit()
        return False
    # Unfollowed, every copy carries the same headers and body (the envelope alone names its
    # recipient), so each form of the message is built and flattened once.
    shared: dict[bool, bytes] = {}
    writer = _CopyWriter(email, files)
    client: smtplib.SMTP | None = None
    try:
        for party in pending:
            # Addresses beyond ASCII need the relay's SMTPUTF8 extension, for this copy only.
            smtputf8 = not (sender.isascii() and party.address.isascii())
            policy = SMTPUTF8_POLICY if smtputf8 else SMTP_POLICY
            try:
                if email.followed and party.token:
                    data = writer.copy(party, policy)
                else:
                    if smtputf8 not in shared:
                        shared[smtputf8] = writer.copy(party, policy)
                    data = shared[smtputf8]
            except Unbuildable as exc:
                ledger.answer(party, DeliveryState.FAILED, str(exc))
                continue
            if client is None:
                try:
                    client = _open(settings)
                except _Transient as exc:
                    # Nothing can be handed over: the copy waits for its next try.
                    unreachable = unreachable or _connection_lost(exc)
                    if ledger.claim(party):
                        ledger.answer(party, DeliveryState.RETRYING, str(exc))
                    continue
            claimed = ledger.claim_soon(party)
            outcome: tuple[DeliveryState, str | None] | None
            try:
                outcome = _hand_over(client, data, party.address, sender, smtputf8, claimed)
            except _Transient as exc:
                outcome = (DeliveryState.RETRYING, str(exc)) if claimed() else None
                if _connection_lost(exc):
                    client = None  # the connection is gone: open a new one for the next
                    unreachable = True
            if outcome is not None:  # else another job claimed the copy first
                ledger.answer(party, *outcome)
    finally:
        if client is not None:
            _keep(settings, client)
    return unreachable


#: The Redis set of emails whose copies wait because the relay could not be reached.
RELAY_WAITING_KEY = "engage:relay:waiting"
#: Seconds the sweep's probe of the relay may take.
PROBE_TIMEOUT = 5.0


def _wait_for_the_relay(email_id: int) -> None:
    # Best effort: without it (Redis down or flushed) the retries follow their delays.
    with contextlib.suppress(RedisError):
        current_engage.redis.sadd(RELAY_WAITING_KEY, email_id)


def release_when_the_relay_is_back(now: datetime) -> int:
    """When copies wait for an unreachable relay, ask the relay (connect, NOOP, QUIT); once it
    answers, every waiting email is due at once instead of at its next retry delay.

    Called by the periodic sweep, so waiting copies go within a sweep interval of the relay's
    return. Returns how many emails were released.
    """
    redis = current_engage.redis
    waiting = [int(raw) for raw in redis.smembers(RELAY_WAITING_KEY)]
    if not waiting:
        return 0
    config = current_app.config
    settings = SmtpSettings.from_url(
        config["ENGAGE_SMTP_URL"],
        timeout=min(PROBE_TIMEOUT, float(config["ENGAGE_SMTP_TIMEOUT"])),
        ca_file=config["ENGAGE_SMTP_CA_FILE"],
    )
    try:
        client = settings.connect()
        client.noop()
        client.quit()
    except (OSError, smtplib.SMTPException):
        return 0
    session = current_engage.session
    due = session.scalars(
        sa.select(Email).where(Email.id.in_(waiting), Email.status == EmailStatus.SENDING)
    ).all()
    for email in due:
        email.next_attempt_at = now
    session.commit()
    for email in due:
        enqueue_delivery(email)
    redis.srem(RELAY_WAITING_KEY, *waiting)
    return len(due)


#: The table behind :class:`Party`, for the per-copy statements below.
_PARTIES = cast(sa.Table, Party.__table__)

#: A copy's claim: a conditional UPDATE that only one job can win. Built once, so each copy
#: pays for running it, not for composing and compiling it.
_CLAIM = (
    sa.update(_PARTIES)
    .where(
        _PARTIES.c.id == sa.bindparam("claim_id"),
        _PARTIES.c.attempt_id.is_(None),
        _PARTIES.c.delivery_state.in_((DeliveryState.PENDING, DeliveryState.RETRYING)),
    )
    .values(
        attempt_id=sa.bindparam("claim_attempt", type_=_PARTIES.c.attempt_id.type),
        attempted_at=sa.bindparam("claim_at", type_=_PARTIES.c.attempted_at.type),
    )
)

#: A copy's answer, written on the same terms as its claim.
_ANSWER = (
    sa.update(_PARTIES)
    .where(_PARTIES.c.id == sa.bindparam("answer_id"))
    .values(
        delivery_state=sa.bindparam("answer_state", type_=_PARTIES.c.delivery_state.type),
        delivery_error=sa.bindparam("answer_error", type_=_PARTIES.c.delivery_error.type),
        delivery_attempts=sa.bindparam("answer_attempts", type_=_PARTIES.c.delivery_attempts.type),
        delivered_at=sa.bindparam("answer_delivered", type_=_PARTIES.c.delivered_at.type),
        attempt_id=None,
    )
)


#: Within a transaction on PostgreSQL: its commit returns without waiting for the disk.
_ASYNC_COMMIT = sa.text("SET LOCAL synchronous_commit TO OFF")

#: A claim that also writes the answer of the copy before (PostgreSQL): one round trip and one
#: commit for both, as data-modifying WITH runs whether or not the outer statement matches.
_CLAIM_AFTER_ANSWER = _CLAIM.add_cte(_ANSWER.cte("answer"))


class _Ledger:
    """The copies' claims and answers, on a connection of the job's own where each statement
    commits by itself.

    A claim is stored before its copy is handed to the relay, and an answer as soon as the
    relay gave it or, on PostgreSQL, with the next copy's claim or the email's outcome (one
    commit for both), so at any moment at most one copy is attempted without a known answer.
    """

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        # On PostgreSQL, where each commit waits for the disk, an answer goes with the next
        # claim and claims are stored ahead (see claim_soon).
        self.postgresql = connection.dialect.name == "postgresql"
        self.pending: dict[str, object] | None = None

    def claim(self, party: Party) -> bool:
        """Write down that ``party``'s copy is about to be sent; ``False`` when another job
        claimed it first."""
        attempt = self._store_claim(party.id)
        if attempt is not None:
            set_committed_value(party, "attempt_id", attempt)
        return attempt is not None

    def claim_soon(self, party: Party) -> Callable[[], bool]:
        """Start writing down ``party``'s claim; the function returned waits until it is stored
        and says whether it is ours (as :meth:`claim`).

        On PostgreSQL, where a claim waits for the disk, a thread of the worker's own stores it
        while the job goes on with what needs no claim (the envelope); elsewhere it is stored
        at once.
        """
        if not self.postgresql:
            ours = self.claim(party)
            return lambda: ours
        stored_claim = _claimer().submit(self._store_claim, party.id)

        def claimed() -> bool:
            attempt = stored_claim.result()
            if attempt is not None:
                set_committed_value(party, "attempt_id", attempt)
            return attempt is not None

        return claimed

    def _store_claim(self, party_id: int) -> str | None:
        attempt = secrets.token_hex(8)
        params: dict[str, object] = {
            "claim_id": party_id,
            "claim_attempt": attempt,
            "claim_at": utcnow(),
        }
        statement = _CLAIM
        if self.pending is not None:
            statement, params = _CLAIM_AFTER_ANSWER, {**params, **self.pending}
            self.pending = None
        return attempt if self.connection.execute(statement, params).rowcount else None

    def answer(self, party: Party, state: DeliveryState, error: str | None) -> None:
        """Note the relay's answer for ``party``'s copy, and set it on ``party`` as stored."""
        values = {
            "delivery_state": state,
            "delivery_error": error,
            "delivery_attempts": party.delivery_attempts + 1,
            "delivered_at": utcnow() if state is DeliveryState.SENT else party.delivered_at,
            "attempt_id": None,
        }
        for key, value in values.items():
            set_committed_value(party, key, value)
        params = {
            "answer_id": party.id,
            "answer_state": state,
            "answer_error": error,
            "answer_attempts": values["delivery_attempts"],
            "answer_delivered": values["delivered_at"],
        }
        if self.postgresql:
            self.flush()
            self.pending = params
        else:
            self.connection.execute(_ANSWER, params)

    def store_in(self, session: Session) -> None:
        """Store an answer still waiting in ``session``'s transaction, whose commit need not
        wait for the disk (PostgreSQL): a claim no later than that answer is durable, so the
        copy cannot be lost, only left in doubt by a database crash in that instant."""
        if self.pending is not None:
            session.execute(_ANSWER, self.pending)
            session.execute(_ASYNC_COMMIT)

    def settled(self) -> None:
        """The transaction :meth:`store_in` used has committed: nothing is left to store."""
        self.pending = None

    def flush(self) -> None:
        """Store an answer still waiting for the next claim."""
        if self.pending is not None:
            params, self.pending = self.pending, None
            self.connection.execute(_ANSWER, params)


#: The thread that stores claims ahead (see :meth:`_Ledger.claim_soon`), by process.
_claimers: dict[int, ThreadPoolExecutor] = {}


def _claimer() -> ThreadPoolExecutor:
    # By process: a forked work horse cannot use its parent's thread.
    claimer = _claimers.get(os.getpid())
    if claimer is None:
        claimer = _claimers[os.getpid()] = ThreadPoolExecutor(1, "engage-claims")
    return claimer


@contextlib.contextmanager
def _copy_ledger() -> Iterator[_Ledger]:
    """The job's :class:`_Ledger`; an answer it still holds on the way out (the job did not
    settle the email) is stored then.

    The session's own transaction ends first, so no snapshot it read can be older than the
    ledger's writes when it writes again (SQLite would refuse that).
    """
    session = current_engage.session
    session.commit()
    with session.get_bind(Party.__mapper__).engine.connect() as connection:
        ledger = _Ledger(connection.execution_options(isolation_level="AUTOCOMMIT"))
        try:
            yield ledger
        except BaseException:
            if ledger.pending is not None:
                # The session's transaction may hold the row that answer writes: end it first.
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    session.rollback()
            raise
        finally:
            ledger.flush()


def _withdraw_refused_follows(pending: list[Party]) -> None:
    """Ask the host again, at delivery time, whether each recipient allows following (S9).

    A recipient may switch to *do not allow* after the email was sent or scheduled: their copy
    then goes out unfollowed, and the email's page says so. The answer is the strictest of
    every record the adapter has for the address, as when the email was written.
    """
    refused = [
        party
        for party in pending
        if party.token is not None
        and recipient_preference(party.address, party.record).preference
        is FollowPreference.DO_NOT_ALLOW
    ]
    for party in refused:
        party.token = None
        party.follow_refused = True
    if refused:
        # Settled before anything is sent: a copy that goes out unfollowed is never followed
        # later, even if this job dies, and no write is held open while the relay answers.
        current_engage.session.commit()


#: Relay connections kept open between the jobs of a worker, by process, thread and settings.
_kept: dict[tuple[int, int, SmtpSettings], tuple[smtplib.SMTP, float]] = {}
#: A kept connection idle longer than this is closed rather than used.
KEEP_IDLE_SECONDS = 30.0


def _keep(settings: SmtpSettings, client: smtplib.SMTP) -> None:
    """Keep the connection for the next job of this worker: a job per email would otherwise
    pay a connection and a greeting each time."""
    key = (os.getpid(), threading.get_ident(), settings)
    previous = _kept.pop(key, None)
    if previous is not None and previous[0] is not client:
        _close(previous[0])
    _kept[key] = (client, time.monotonic())


def _close(client: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        client.quit()


def _kept_connection(settings: SmtpSettings) -> smtplib.SMTP | None:
    kept = _kept.pop((os.getpid(), threading.get_ident(), settings), None)
    if kept is None:
        return None
    client, since = kept
    # Asked (NOOP) before each job uses it: a relay that closed or restarted meanwhile is found
    # out here, before any copy is handed over, and a new connection is opened instead.
    if time.monotonic() - since < KEEP_IDLE_SECONDS:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            if client.noop()[0] == 250:
                return client
    _close(client)
    return None


def _open(settings: SmtpSettings) -> smtplib.SMTP:
    if (client := _kept_connection(settings)) is not None:
        return client
    try:
        return settings.connect()
    except smtplib.SMTPResponseException as exc:
        raise _Transient(_server_words(exc.smtp_code, exc.smtp_error)) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise _Transient(_connection_words(settings, exc)) from exc


def _hand_over(
    client: smtplib.SMTP,
    data: bytes,
    address: str,
    sender: str,
    smtputf8: bool,
    claimed: Callable[[], bool],
) -> tuple[DeliveryState, str | None] | None:
    """Send one copy once its claim is stored: the relay's answer as the copy's new state and,
    if it failed, why; ``None`` when another job claimed the copy first.

    The claim may still be on its way to the database (see :meth:`_Ledger.claim_soon`) while the
    relay reads the envelope (MAIL FROM, RCPT TO), which hands nothing over; DATA waits for it.

    :raises _Transient: when it is worth trying again later (the claim has landed by then).
    """
    try:
        refusal = _envelope(client, address, sender, smtputf8, len(data))
    except BaseException:
        claimed()
        raise
    if not claimed():
        _reset(client)
        return None
    if refusal is not None:
        return refusal
    words: bytes | str
    try:
        code, words = client.data(data)
    except smtplib.SMTPDataError as exc:  # DATA itself refused
        code, words = exc.smtp_code, exc.smtp_error
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise _broke(exc) from exc
    if code != 250:
        _after_refusal(client, code)
        return _refusal(code, words)
    return DeliveryState.SENT, None


def _envelope(
    client: smtplib.SMTP, address: str, sender: str, smtputf8: bool, size: int
) -> tuple[DeliveryState, str | None] | None:
    """MAIL FROM and RCPT TO for one copy, as :meth:`smtplib.SMTP.sendmail` sends them:
    ``None`` when the relay takes both, else the copy's failure.

    :raises _Transient: for a 4xx answer or a broken connection.
    """
    words: bytes | str
    try:
        client.ehlo_or_helo_if_needed()
        options = []
        if client.does_esmtp and client.has_extn("size"):
            options.append(f"size={size}")
        if smtputf8:
            if not client.has_extn("smtputf8"):
                # The relay cannot carry an address beyond ASCII: that will not change by
                # retrying, and it concerns this copy only.
                return DeliveryState.FAILED, stored("delivery.no_smtputf8")
            options.append("SMTPUTF8")
        code, words = client.mail(sender, options)
        if code == 250:
            code, words = client.rcpt(address)
            if code in (250, 251):
                return None
    except smtplib.SMTPResponseException as exc:  # the greeting refused
        code, words = exc.smtp_code, exc.smtp_error
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise _broke(exc) from exc
    _after_refusal(client, code)
    return _refusal(code, words)


def _after_refusal(client: smtplib.SMTP, code: int) -> None:
    # 421: the relay is closing the connection; otherwise the next copy starts afresh.
    if code == 421:
        client.close()
    else:
        _reset(client)


def _reset(client: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        client.rset()


def _broke(exc: BaseException) -> _Transient:
    return _Transient(stored("delivery.broke", detail=str(exc)[:500]))


def _connection_lost(exc: _Transient) -> bool:
    return isinstance(exc.__cause__, (OSError, smtplib.SMTPServerDisconnected))


def _refusal(code: int, words: bytes | str) -> tuple[DeliveryState, str]:
    reason = _server_words(code, words)
    if 400 <= code < 500:
        raise _Transient(reason)
    return DeliveryState.FAILED, reason


def _server_words(code: int, words: bytes | str) -> str:
    text = words.decode("utf-8", "replace") if isinstance(words, bytes) else str(words)
    return stored("delivery.server", answer=f"{code} {text}".strip()[:500])


def _connection_words(settings: SmtpSettings, exc: BaseException) -> str:
    server = f"{settings.host}:{settings.port}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return stored("delivery.timeout", server=server)
    if isinstance(exc, ConnectionRefusedError):
        return stored("delivery.refused_connection", server=server)
    return stored("delivery.unreachable", server=server, detail=str(exc)[:500])


def _settle(email: Email, ledger: _Ledger | None = None) -> str:
    """Decide what follows an attempt: a retry later, or the email's final status.

    An answer ``ledger`` still holds is stored in the same transaction. On PostgreSQL that
    commit does not wait for the disk: were the database server to crash in that instant, the
    outcome is decided again by the next job and the last copy counts as attempted without an
    answer (in doubt), never as untried; every claim is durable before its copy is handed over.
    """
    session = current_engage.session
    if ledger is not None:
        ledger.store_in(session)
    retrying = [p for p in email.recipients if p.delivery_state is DeliveryState.RETRYING]
    if retrying:
        attempts = max(p.delivery_attempts for p in retrying)
        delays = retry_delays()
        if attempts <= len(delays):
            delay = delays[attempts - 1]
            email.next_attempt_at = utcnow() + timedelta(seconds=delay)
            session.commit()
            queueing.enqueue_in(timedelta(seconds=delay), queueing.DELIVER, email.id)
            return "retrying"
        for party in retrying:
            party.delivery_state = DeliveryState.FAILED
            party.delivery_error = stored(
                "delivery.gave_up", error=party.delivery_error or "", num=party.delivery_attempts
            )
    everyone_failed = all(p.delivery_state is DeliveryState.FAILED for p in email.recipients)
    email.status = EmailStatus.FAILED if everyone_failed else EmailStatus.SENT
    email.next_attempt_at = None
    email.sent_at = email.sent_at or utcnow()
    move_email_activities(session, email)
    if email.status is EmailStatus.SENT:
        template_performance.count_sent(session, email)
    # Read before the commit expires what it reads.
    summary = email.delivery_summary
    session.commit()
    return summary


def sweep_sending(now: datetime) -> int:
    """Queue again the emails still sending that no job holds and none waits for.

    An email is left alone while its delivery job runs (its lock is held) or waits in the
    queue (its queued mark, set by :func:`enqueue_delivery`, is there), and while a retry is
    scheduled for later. Anything else sending has lost its job (a worker killed mid-send, a
    flushed or restarted Redis) and is queued at once; the job is idempotent. Returns how many
    were queued.
    """
    candidates = current_engage.session.scalars(
        sa.select(Email).where(
            Email.status == EmailStatus.SENDING,
            sa.or_(Email.next_attempt_at.is_(None), Email.next_attempt_at <= now),
        )
    ).all()
    if not candidates:
        return 0
    pipe = current_engage.redis.pipeline(transaction=False)
    for email in candidates:
        pipe.exists(_lock_key(email.id), _queued_key(email.id))
    busy = pipe.execute()
    lost = [email for email, held in zip(candidates, busy, strict=True) if not held]
    for email in lost:
        enqueue_delivery(email)
    return len(lost)


def enqueue_delivery(email: Email) -> bool:
    """Put the email's delivery on the queue (after the caller committed it as sending).

    Returns ``False`` when the queue cannot be reached: the email stays *sending* in the
    database and the sweep queues it once the queue is back.
    """
    try:
        current_engage.redis.set(_queued_key(email.id), "1", ex=QUEUED_MARK_SECONDS)
    except RedisError:
        return False
    return queueing.enqueue(queueing.DELIVER, email.id) is not None


#: How long an email counts as waiting in the queue after it was put there (see sweep_sending).
QUEUED_MARK_SECONDS = 600


def _queued_key(email_id: int) -> str:
    return f"engage:deliver:queued:{email_id}"


def _lock_key(email_id: int) -> str:
    return f"engage:deliver:{email_id}"


def _scheduled_job_id(email: Email) -> str:
    # One job id per email and due time: rescheduling makes a new job, and the old one can be
    # found (and cancelled) by its id.
    stamp = int(email.scheduled_at.timestamp()) if email.scheduled_at else 0
    return f"engage-send-{email.id}-{stamp}"


def schedule_delivery(email: Email) -> bool:
    """Put the email's delivery on RQ's scheduler for its ``scheduled_at`` (already committed).

    Returns ``False`` when the queue cannot be reached (the sweep queues it when it is due).
    """
    assert email.scheduled_at is not None
    return None is not queueing.enqueue_at(
        email.scheduled_at,
        queueing.SEND_SCHEDULED,
        email.id,
        email.scheduled_at.isoformat(),
        job_id=_scheduled_job_id(email),
    )


def cancel_scheduled_job(email: Email) -> None:
    """Best effort: take the email's current scheduled job off the queue (it would do nothing)."""
    queueing.cancel(_scheduled_job_id(email))


def prepare_resend(email: Email) -> bool:
    """Make the failed and in-doubt copies of a sent or failed email due again; the caller
    commits.

    Returns ``False`` when no copy failed or is in doubt, so there is nothing to resend.
    """
    failed = [
        p
        for p in email.recipients
        if p.delivery_state in (DeliveryState.FAILED, DeliveryState.IN_DOUBT)
    ]
    if not failed:
        return False
    for party in failed:
        party.delivery_state = DeliveryState.PENDING
        party.delivery_error = None
        party.delivery_attempts = 0
    email.status = EmailStatus.SENDING
    email.next_attempt_at = None
    return True
