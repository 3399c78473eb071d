"""Following on the wire: tokens, tracked links, and the queue of tracking events.

Each recipient of a followed email gets a token of their own (SPEC S13): random, and signed, so a
forged or mistyped token is recognised at the door without a database lookup (S15). Their copy
carries an open pixel and every web link rewritten to the click endpoint, which redirects only
to the URL stored with the message (no open redirect). Followed attachments (S17) reach them as
links to the attachment endpoint, which hands out only followed files of that recipient's email.

The endpoints (:mod:`engage.web.tracking`) never write to the database (DESIGN "Tracking"):
they note the event with :func:`note_event`, which pushes it onto a Redis list, and answer at
once. :func:`persist_events`, an RQ job, drains the list in batches,
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
from typing import Any

from flask import Flask, current_app

from . import queueing
from .context import current_engage
from .models import EventKind

#: The Redis list of events waiting to be stored, and the flag that a drain job is queued.
QUEUE_KEY = "engage:events"
PENDING_KEY = "engage:events:pending"
LOCK_KEY = "engage:events:lock"
BATCH = 2000

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


def note_event(
    app: Flask,
    kind: EventKind,
    token: str,
    *,
    method: str,
    user_agent: str,
    ip: str | None,
    **extra: Any,
) -> None:
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
            "method": method,
            "ua": user_agent[:400],
            "ip": ip,
            **extra,
        }
    )
    if float(app.config["ENGAGE_EVENT_BUFFER_MS"]) <= 0:
        push_events(app, [event])
    else:
        buffer_of(app).add(event)


def push_events(app: Flask, events: list[str]) -> None:
    """Append serialised events to the Redis list and make sure a drain job is queued."""
    with app.app_context():
        redis = current_engage.redis
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(QUEUE_KEY, *events)
        pipe.set(PENDING_KEY, "1", nx=True, ex=30)
        _length, newly_pending = pipe.execute()
        if newly_pending:
            queueing.enqueue(queueing.PERSIST_EVENTS)


class EventBuffer:
    """Events of one app in one process, on their way to Redis (see :func:`note_event`)."""

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


_buffers: dict[tuple[int, int], EventBuffer] = {}
_buffers_lock = threading.Lock()


def buffer_of(app: Flask) -> EventBuffer:
    # One buffer (and thread) per app per process: a forked server worker starts its own.
    key = (id(app), os.getpid())
    buffer = _buffers.get(key)
    if buffer is None:
        with _buffers_lock:
            buffer = _buffers.get(key)
            if buffer is None:
                buffer = _buffers[key] = EventBuffer(app)
    return buffer


def flush_buffered_events() -> None:
    """Push every buffered event of this process to Redis now (tests, shutdown hooks)."""
    for buffer in list(_buffers.values()):
        if buffer.pid == os.getpid():
            buffer.flush()


def requeue_waiting_events() -> bool:
    """Queue a drain job when events wait in Redis with none queued (a flushed Redis, a lost
    job); ``True`` when one was queued."""
    if not current_engage.redis.llen(QUEUE_KEY):
        return False
    queueing.enqueue(queueing.PERSIST_EVENTS)
    return True
