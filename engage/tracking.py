"""Following on the wire: tokens, tracked links, the pixel and click endpoints, the event queue.

Each recipient of a followed email gets a token of their own (SPEC S13): random, and signed, so a
forged or mistyped token is recognised at the door without a database lookup (S15). Their copy
carries an open pixel and every web link rewritten to the click endpoint, which redirects only
to the URL stored with the message (no open redirect). Followed attachments (S17) reach them as
links to the attachment endpoint, which hands out only followed files of that recipient's email.

The endpoints never write to the database (DESIGN "Tracking"): they push the event onto a
Redis list and answer at once. :func:`persist_events`, an RQ job, drains the list in batches,
labels each event human or machine and stores it.
"""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, abort, current_app, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from .extension import current_engage
from .models import Attachment, EventKind, Link, Party

#: The Redis list of events waiting to be stored, and the flag that a drain job is queued.
QUEUE_KEY = "engage:events"
PENDING_KEY = "engage:events:pending"
LOCK_KEY = "engage:events:lock"
BATCH = 2000

#: A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
}

_HREF = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)(")', re.IGNORECASE)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{16}$")


# -- tokens ------------------------------------------------------------------------------------


def _key() -> bytes:
    secret = current_app.config["SECRET_KEY"]
    if not secret:
        raise RuntimeError("engage needs the app's SECRET_KEY to sign tracking tokens")
    return _derive_key(secret.encode() if isinstance(secret, str) else secret)


@functools.lru_cache(maxsize=8)
def _derive_key(secret: bytes) -> bytes:
    # A key of its own for tokens, so a token never doubles as anything else signed with
    # the app's secret. Cached: the pixel checks a token on every request.
    return hashlib.sha256(b"engage-tracking:" + secret).digest()


def signature(key: bytes, body: str) -> str:
    """The signature part of a token whose random part is ``body``, under ``key``."""
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _sign(body: str) -> str:
    return signature(_key(), body)


def new_token() -> str:
    """A fresh recipient token: 128 random bits and a signature over them."""
    body = secrets.token_urlsafe(16)
    return f"{body}.{_sign(body)}"


def token_is_genuine(token: str, secret: str | bytes | None = None) -> bool:
    """Whether ``token`` was made by :func:`new_token` with the app's secret.

    :param secret: the secret to check against; by default the current app's ``SECRET_KEY``
        (the pixel's fast path, outside any app context, passes it in).
    """
    if not _TOKEN.match(token or ""):
        return False
    if secret is None:
        key = _key()
    elif not secret:
        return False
    else:
        key = _derive_key(secret.encode() if isinstance(secret, str) else secret)
    body, _dot, mac = token.partition(".")
    return hmac.compare_digest(mac, signature(key, body))


# -- links in the message ------------------------------------------------------------------------


def _is_web(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def web_links(body_html: str) -> list[str]:
    """The web links of a (sanitised) body, in order: the ones a followed copy rewrites."""
    return [
        html.unescape(m.group(2))
        for m in _HREF.finditer(body_html)
        if _is_web(html.unescape(m.group(2)))
    ]


def base_url() -> str:
    """Where recipients reach engage's tracking endpoints: ``ENGAGE_PUBLIC_URL`` + the prefix."""
    public = current_app.config["ENGAGE_PUBLIC_URL"]
    if not public:
        raise RuntimeError("following needs ENGAGE_PUBLIC_URL")
    return public.rstrip("/") + current_app.config["ENGAGE_URL_PREFIX"].rstrip("/")


def pixel_url(token: str) -> str:
    """The open pixel of one recipient."""
    return f"{base_url()}/t/o/{token}.gif"


def click_url(token: str, position: int) -> str:
    """The tracked form of link number ``position`` for one recipient."""
    return f"{base_url()}/t/c/{token}/{position}"


def attachment_url(token: str, attachment_id: int) -> str:
    """The tracked link to a followed attachment for one recipient."""
    return f"{base_url()}/t/a/{token}/{attachment_id}"


def tracked_html(body_html: str, token: str) -> str:
    """The body as one recipient's copy carries it: web links rewritten, a pixel at the end."""
    position = 0

    def rewrite(match: re.Match[str]) -> str:
        nonlocal position
        if not _is_web(html.unescape(match.group(2))):
            return match.group(0)  # mailto: and the like stay as written
        url = click_url(token, position)
        position += 1
        return f"{match.group(1)}{html.escape(url)}{match.group(3)}"

    rewritten = _HREF.sub(rewrite, body_html)
    pixel = (
        f'<img src="{html.escape(pixel_url(token))}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0">'
    )
    return rewritten + pixel


# -- the event queue -------------------------------------------------------------------------------


def _client_ip() -> str | None:
    # Behind a proxy, the host app is expected to apply ProxyFix; engage trusts remote_addr.
    return request.remote_addr


def enqueue_event(kind: EventKind, token: str, **extra: Any) -> None:
    """Note one event for the worker: pushed to Redis now, or by the buffer within moments.

    With ``ENGAGE_EVENT_BUFFER_MS`` above zero (the default), events wait in a small in-process
    buffer that a background thread pushes to Redis in one round trip every few milliseconds,
    so a pixel request costs no network round trip of its own. The buffer is flushed when the
    process exits; a crash can lose at most the last few milliseconds of events.
    """
    event = json.dumps(
        {
            "id": os.urandom(12).hex(),
            "kind": kind.value,
            "token": token,
            "at": time.time(),
            "method": request.method,
            "ua": request.headers.get("User-Agent", "")[:400],
            "ip": _client_ip(),
            **extra,
        }
    )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if float(app.config["ENGAGE_EVENT_BUFFER_MS"]) <= 0:
        push_events(app, [event])
    else:
        _buffer_of(app).add(event)


def push_events(app: Flask, events: list[str]) -> None:
    """Append serialised events to the Redis list and make sure a drain job is queued."""
    with app.app_context():
        redis = current_engage.redis
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(QUEUE_KEY, *events)
        pipe.set(PENDING_KEY, "1", nx=True, ex=30)
        _length, newly_pending = pipe.execute()
        if newly_pending:
            current_engage.queue.enqueue(persist_events, job_timeout=600, result_ttl=60)


class _EventBuffer:
    """Events of one app in one process, on their way to Redis (see :func:`enqueue_event`)."""

    #: Past this many waiting events the thread is woken at once, and past the cap (Redis
    #: unreachable for long) the oldest are dropped rather than filling the memory.
    EAGER, CAP = 500, 200_000

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.interval = float(app.config["ENGAGE_EVENT_BUFFER_MS"]) / 1000
        self.lock = threading.Lock()
        self.items: list[str] = []
        self.wake = threading.Event()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="engage-events", daemon=True)
        self.thread.start()
        atexit.register(self.flush)

    def add(self, event: str) -> None:
        with self.lock:
            self.items.append(event)
            if len(self.items) > self.CAP:
                del self.items[: len(self.items) - self.CAP]
            eager = len(self.items) >= self.EAGER
        if eager:
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self.items = self.items, []
        if not batch:
            return
        try:
            push_events(self.app, batch)
        except Exception:  # noqa: BLE001 - Redis down: keep the events and try again later
            current_app_logger = self.app.logger
            current_app_logger.warning("engage: %d tracking events wait for Redis", len(batch))
            with self.lock:
                self.items[:0] = batch


_buffers: dict[tuple[int, int], _EventBuffer] = {}
_buffers_lock = threading.Lock()


def _buffer_of(app: Flask) -> _EventBuffer:
    # One buffer (and thread) per app per process: a forked server worker starts its own.
    key = (id(app), os.getpid())
    buffer = _buffers.get(key)
    if buffer is None:
        with _buffers_lock:
            buffer = _buffers.get(key)
            if buffer is None:
                buffer = _buffers[key] = _EventBuffer(app)
    return buffer


def flush_buffered_events() -> None:
    """Push every buffered event of this process to Redis now (tests, shutdown hooks)."""
    for buffer in list(_buffers.values()):
        if buffer.pid == os.getpid():
            buffer.flush()


def persist_events() -> int:
    """The drain job: store every queued event, in batches. Returns how many were stored.

    One drain runs at a time (a Redis lock). The pending flag is cleared before draining, so
    an event pushed while this job runs queues another job rather than waiting for the sweep.
    Events are removed from the list only after their batch is committed; an event replayed
    after a crash is stored once, thanks to its id.
    """
    redis = current_engage.redis
    lock = redis.lock(LOCK_KEY, timeout=600)
    if not lock.acquire(blocking=False):
        return 0
    stored = 0
    try:
        redis.delete(PENDING_KEY)
        while True:
            raw = redis.lrange(QUEUE_KEY, 0, BATCH - 1)
            if not raw:
                break
            stored += _store_batch([json.loads(item) for item in raw])
            redis.ltrim(QUEUE_KEY, len(raw), -1)
    finally:
        lock.release()
    return stored


def _store_batch(events: list[dict[str, Any]]) -> int:
    from .events import Hit, record_interactions
    from .models import TrackingEvent

    session = current_engage.session
    tokens = {e["token"] for e in events}
    parties = {p.token: p for p in session.scalars(sa.select(Party).where(Party.token.in_(tokens)))}
    keys = [f"hit:{e['id']}" for e in events]
    seen = set(
        session.scalars(
            sa.select(TrackingEvent.dedupe_key).where(TrackingEvent.dedupe_key.in_(keys))
        )
    )
    links: dict[tuple[int, int | None], Link] = {
        (link.email_id, link.position): link
        for link in session.scalars(
            sa.select(Link).where(Link.email_id.in_({p.email_id for p in parties.values()}))
        )
    }
    # An attachment open names its file; it counts only for a file of that recipient's email.
    wanted = {
        e["attachment_id"]
        for e in events
        if e["kind"] == EventKind.ATTACHMENT_OPEN.value and isinstance(e.get("attachment_id"), int)
    }
    files: dict[int, int] = {}
    if wanted:
        query = sa.select(Attachment.id, Attachment.email_id).where(Attachment.id.in_(wanted))
        files = {file_id: email_id for file_id, email_id in session.execute(query)}
    hits = []
    for event, key in zip(events, keys, strict=True):
        party = parties.get(event["token"])
        if party is None or key in seen:
            continue  # a token of a deleted email, or an event already stored before a crash
        if event["kind"] == EventKind.ATTACHMENT_OPEN.value and (
            files.get(event.get("attachment_id", 0)) != party.email_id
        ):
            continue  # not a file of this recipient's email (or gone): nothing to record
        seen.add(key)
        hits.append(
            Hit(
                party=party,
                kind=EventKind(event["kind"]),
                occurred_at=datetime.fromtimestamp(event["at"], UTC),
                method=event.get("method", "GET"),
                user_agent=event.get("ua", ""),
                ip=event.get("ip"),
                link=links.get((party.email_id, event.get("position"))),
                attachment_id=event.get("attachment_id"),
                dedupe_key=key,
            )
        )
    stored = record_interactions(session, hits)
    session.commit()
    return stored


# -- the endpoints ---------------------------------------------------------------------------------


def pixel(token: str) -> Response:
    """The open pixel: always the GIF; an event only for a genuine token."""
    if token_is_genuine(token):
        enqueue_event(EventKind.OPEN, token)
    return Response(PIXEL, mimetype="image/gif", headers=_NO_STORE)


def click(token: str, position: int) -> BaseResponse:
    """A tracked link: redirect to the URL stored with the message, and note the click."""
    if not token_is_genuine(token):
        abort(404)
    url = current_engage.session.scalar(
        sa.select(Link.url)
        .join(Party, Party.email_id == Link.email_id)
        .where(Party.token == token, Link.position == position)
    )
    if url is None:
        abort(404)
    enqueue_event(EventKind.CLICK, token, position=position)
    response = redirect(url, code=302)
    response.headers.update(_NO_STORE)
    return response


def attachment(token: str, attachment_id: int) -> Response:
    """A followed attachment: the file as a download, and an attachment open for the worker.

    Only a followed file of the email this recipient's token belongs to is handed out; anything
    else is 404. Like the pixel and the click, nothing is written to the database here.
    """
    from .attachments import file_response

    if not token_is_genuine(token):
        abort(404)
    found = current_engage.session.scalar(
        sa.select(Attachment)
        .join(Party, Party.email_id == Attachment.email_id)
        .where(
            Party.token == token,
            Attachment.id == attachment_id,
            Attachment.followed.is_(True),
        )
    )
    if found is None:
        abort(404)
    response = file_response(found)
    enqueue_event(EventKind.ATTACHMENT_OPEN, token, attachment_id=found.id)
    response.headers.update(_NO_STORE)
    return response
