"""Following on the wire: tokens, tracked links, and the queue of tracking events.

Each recipient of a followed email gets a token of their own (SPEC S13): random, and signed, so a
forged or mistyped token is recognised at the door without a database lookup (S15). Their copy
carries an open pixel and every web link rewritten to the click endpoint, which redirects only
to the URL stored with the message (no open redirect). Followed attachments (S17) reach them as
links to the attachment endpoint, which hands out only followed files of that recipient's email.

The endpoints (:mod:`engage.web.tracking`) never write to the database (DESIGN "Tracking"):
they note the event with :func:`note_event`, which pushes it onto a Redis list, and answer at
once. :func:`engage.events.persist_events`, an RQ job, drains the list in batches, labels each
event human or machine and stores it.

Events survive a Redis that forgets them (flushed, restarted empty, failed over). Nothing kept
in Redis alone can survive that, so each web process keeps a write-ahead spool of its own on
local disk (:mod:`engage.event_spool`): every event is appended there before it goes to Redis,
and stays until the worker acknowledges it, by id, on a Redis list that the process reads
(:func:`acknowledge`). The process's event thread notices a lost Redis (a marker key gone, a new
server ``run_id``) and pushes everything not yet acknowledged again; the worker stores each
event id once, so a repeat costs nothing but its trip. The request path gains one local
``write``, no database write and no network round trip. We chose this over Redis Streams with
consumer groups: a stream's pending entries and acknowledgements live in the same Redis that
was flushed, so a stream alone loses the same events, and the spool makes it unnecessary.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from . import queueing
from .context import current_engage
from .event_spool import EventSpool, has_orphans
from .models import EventKind

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline

#: The Redis list of events waiting to be stored, and the flag that a drain job is queued.
QUEUE_KEY = "engage:events"
PENDING_KEY = "engage:events:pending"
LOCK_KEY = "engage:events:lock"
#: A random value that lives as long as Redis remembers: gone (or another) after a flush or an
#: empty restart, which is how web processes learn that their spooled events must go again.
EPOCH_KEY = "engage:events:epoch"
#: The worker's acknowledgements for one spooling process: this prefix and the spool's name.
ACKED_KEY = "engage:events:acked:"
#: Seconds an acknowledgement list outlives its last write (its process may be gone).
ACKED_TTL = 86_400
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
    """Note one event for the worker: spooled on local disk, and pushed to Redis now or by the
    event thread within moments.

    With ``ENGAGE_EVENT_BUFFER_MS`` above zero (the default), events wait in a small in-process
    buffer that a background thread pushes to Redis in one round trip every few milliseconds,
    so a pixel request costs no network round trip of its own. Either way the event is first
    appended to this process's spool (one ``write`` to a local file), where it stays until the
    worker acknowledges it: see :class:`EventConveyor`. Nothing here raises for an unreachable
    Redis; the event waits and is pushed when Redis answers again.
    """
    conveyor = conveyor_of(app)
    event_id = os.urandom(12).hex()
    fields = {
        "id": event_id,
        "kind": kind.value,
        "token": token,
        "at": time.time(),
        "method": method,
        "ua": user_agent[:400],
        "ip": ip,
        **extra,
    }
    if conveyor.src is not None:
        fields["src"] = conveyor.src  # where the worker's acknowledgement goes
    conveyor.add(event_id, json.dumps(fields))


def push_events(app: Flask, events: list[str], *, observe: bool = False) -> bytes | None:
    """Append serialised events to the Redis list and make sure a drain job is queued.

    With ``observe``, the same round trip first reads (and if need be creates) the marker of
    :data:`EPOCH_KEY` as Redis had it just before the push, and returns it.
    """
    with app.app_context():
        redis = current_engage.redis
        pipe = redis.pipeline(transaction=False)
        if observe:
            pipe.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
            pipe.get(EPOCH_KEY)
        pipe.rpush(QUEUE_KEY, *events)
        pipe.set(PENDING_KEY, "1", nx=True, ex=30)
        *observed, _length, newly_pending = pipe.execute()
        if newly_pending:
            queueing.enqueue(queueing.PERSIST_EVENTS)
        return observed[1] if observe else None


def acknowledge(pipe: Pipeline, events: list[dict[str, Any]]) -> None:
    """Tell the processes that spooled ``events`` that the worker is done with them (stored,
    or never to be stored), on ``pipe``: each spooling process reads its own list."""
    by_source: dict[str, list[str]] = {}
    for event in events:
        source = event.get("src")
        if source:
            by_source.setdefault(str(source), []).append(str(event["id"]))
    for source, ids in by_source.items():
        pipe.rpush(ACKED_KEY + source, *ids)
        pipe.expire(ACKED_KEY + source, ACKED_TTL)


def spool_folder(app: Flask) -> Path | None:
    """The event spool's folder (``ENGAGE_EVENT_SPOOL_DIR``), or ``None`` when it is off."""
    setting = app.config["ENGAGE_EVENT_SPOOL_DIR"]
    if setting is None:
        return Path(app.instance_path) / "engage-events"
    return Path(setting) if setting else None


class EventConveyor:
    """How the events of one app in one process reach Redis, and reach it again if Redis
    forgets them (see :func:`note_event` and :mod:`engage.event_spool`).

    - :meth:`add` spools the event (local disk, no ``fsync``), then pushes it at once
      (``ENGAGE_EVENT_BUFFER_MS`` = 0) or leaves it to the buffer, which the thread pushes
      every few milliseconds.
    - Every ``ENGAGE_EVENT_SPOOL_SYNC_MS`` the thread keeps the spool (:meth:`keep`): ``fsync``
      what was appended, read the worker's acknowledgements and forget those events, adopt the
      spools of processes that are gone, and look whether Redis lost anything: the value of
      :data:`EPOCH_KEY` (gone after a flush or an empty restart) and the server's ``run_id``
      (new after any restart or failover). When either changed, every event not yet
      acknowledged is pushed again; events whose push failed are pushed again once Redis
      answers. A repeated event is stored once (the worker dedupes by event id).

    With the spool off (``ENGAGE_EVENT_SPOOL_DIR = False``) events that could not be pushed wait
    in memory (at most :attr:`CAP`, the oldest dropped first), and a flushed Redis loses what
    waited on it.
    """

    #: Past this many waiting events the thread is woken at once; past the cap (Redis
    #: unreachable for long, no spool) the oldest in memory are dropped.
    EAGER, CAP = 500, 200_000

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.every = max(float(app.config["ENGAGE_EVENT_SPOOL_SYNC_MS"]) / 1000, 0.01)
        self.lock = threading.Lock()
        self.keeping = threading.Lock()
        #: Waiting for the next push: ``(id, line, spooled)``.
        self.items: list[tuple[str, str, bool]] = []
        #: Spooled events whose push failed: pushed again from the spool.
        self.unpushed: set[str] = set()
        self.replay_all = False
        #: What tells a Redis that lost its data: the :data:`EPOCH_KEY` marker, learnt by the
        #: first push, and the server's ``run_id``, learnt by the first spool round.
        self.marker: bytes | None = None
        self.run_id: str | None = None
        self.pid = os.getpid()
        self.closed = False
        self._warned = 0.0
        with app.app_context():
            self.redis: Redis = current_engage.redis
        self.spool: EventSpool | None = None
        folder = spool_folder(app)
        if folder is not None:
            try:
                self.spool = EventSpool(folder)
            except OSError:
                app.logger.exception("engage: no event spool in %s; events rely on Redis", folder)
        self.src = self.spool.name if self.spool else None
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="engage-events", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    @property
    def interval(self) -> float:
        """Seconds events wait in the buffer (``ENGAGE_EVENT_BUFFER_MS``; 0: no buffer)."""
        return float(self.app.config["ENGAGE_EVENT_BUFFER_MS"]) / 1000

    # -- the request side ------------------------------------------------------------------

    def add(self, event_id: str, line: str) -> None:
        spooled = False
        if self.spool is not None:
            try:
                self.spool.append(event_id, line)
                spooled = True
            except OSError:
                self._warn("engage: the event spool refuses writes; events rely on Redis")
        if self.interval <= 0:
            self._push([(event_id, line, spooled)])
            return
        with self.lock:
            self.items.append((event_id, line, spooled))
            eager = len(self.items) >= self.EAGER
        if eager:
            self.wake.set()

    def _push(self, batch: list[tuple[str, str, bool]]) -> bool:
        # The first push of a spooling process also learns the marker, in the same round trip
        # and before its events land: no flush after them goes unnoticed.
        observe = self.spool is not None and self.marker is None
        try:
            marker = push_events(self.app, [line for _id, line, _spooled in batch], observe=observe)
        except Exception:  # noqa: BLE001 - Redis down: the events wait and go again later
            self._warn(f"engage: {len(batch)} tracking events wait for Redis")
            with self.lock:
                self.unpushed.update(event_id for event_id, _line, spooled in batch if spooled)
                self.items[:0] = [item for item in batch if not item[2]]
                if len(self.items) > self.CAP:
                    del self.items[: len(self.items) - self.CAP]
            return False
        if observe:
            self._learn(marker)
        return True

    def _learn(self, marker: bytes | None) -> bool:
        """Take note of the marker Redis has; whether it is another than the one known (Redis
        lost its data since). A push that saw another marker than a concurrent push (a flush
        between the two) has every waiting event pushed again at the next round."""
        with self.lock:
            changed = self.marker is not None and marker != self.marker
            if self.marker is None or changed:
                self.marker = marker
            if changed:
                self.replay_all = True
        return changed

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._warned > 60:
            self._warned = time.monotonic()
            self.app.logger.warning(message)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        next_keep = 0.0  # a first round at once: adopt what processes that are gone left
        while not self.closed:
            if time.monotonic() >= next_keep:
                try:
                    self.keep()
                except Exception:  # noqa: BLE001 - the thread must outlive any one round
                    self.app.logger.exception("engage: the event spool round failed")
                next_keep = time.monotonic() + self.every
            wait = next_keep - time.monotonic()
            if self.interval > 0:
                wait = min(wait, self.interval)
            self.wake.wait(max(wait, 0.0))
            self.wake.clear()
            if not self.closed:
                self.flush()

    def flush(self) -> None:
        """Push what the buffer holds."""
        with self.lock:
            batch, self.items = self.items, []
        if batch:
            self._push(batch)

    def keep(self) -> int:
        """One round of spool keeping (see the class); how many events were pushed again."""
        with self.keeping:
            return self._keep()

    def _keep(self) -> int:
        spool = self.spool
        if spool is None:
            return 0
        adopted = spool.adopt_orphans()
        if adopted:
            self.app.logger.warning(
                "engage: %d tracking events taken over from a process that ended", len(adopted)
            )
            for start in range(0, len(adopted), BATCH):
                self._push([(i, line, True) for i, line in adopted[start : start + BATCH]])
        spool.sync()
        if not spool.waiting:
            with self.lock:
                self.unpushed.clear()  # all acknowledged meanwhile
            return 0
        try:
            self._collect_acknowledgements()
            changed = self._observe_epoch()
        except Exception:  # noqa: BLE001 - Redis down: try again next round
            self._warn(f"engage: {spool.waiting} tracking events wait for Redis")
            return 0
        with self.lock:
            only = None if changed or self.replay_all else set(self.unpushed)
            self.unpushed.clear()
            self.replay_all = False
        if only is not None and not only:
            return 0
        if changed:
            self.app.logger.warning(
                "engage: Redis lost its data; pushing %d tracking events again", spool.waiting
            )
        return self._replay(only)

    def _replay(self, only: set[str] | None) -> int:
        assert self.spool is not None
        pushed = 0
        chunk: list[str] = []
        try:
            for line in self.spool.unacknowledged(only):
                chunk.append(line)
                if len(chunk) >= BATCH:
                    push_events(self.app, chunk)
                    pushed, chunk = pushed + len(chunk), []
            if chunk:
                push_events(self.app, chunk)
                pushed += len(chunk)
        except Exception:  # noqa: BLE001 - Redis down again: all of them next round
            self._warn("engage: tracking events wait for Redis")
            with self.lock:
                if only is None:
                    self.replay_all = True
                else:
                    self.unpushed |= only
        return pushed

    def _collect_acknowledgements(self) -> None:
        assert self.spool is not None and self.src is not None
        while True:
            ids = self.redis.lpop(ACKED_KEY + self.src, 10_000)
            if not ids:
                return
            self.spool.acknowledge(i.decode() if isinstance(i, bytes) else str(i) for i in ids)
            if len(ids) < 10_000:
                return

    def _observe_epoch(self) -> bool:
        """Read what tells whether Redis lost its data; whether it did since last time."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
        pipe.get(EPOCH_KEY)
        pipe.info("server")
        _created, marker, server = pipe.execute(raise_on_error=False)
        if isinstance(marker, Exception):
            raise marker
        # Some proxies answer no INFO: the marker alone then tells a flush or empty restart.
        run_id = server.get("run_id") if isinstance(server, dict) else None
        restarted = self.run_id is not None and run_id is not None and run_id != self.run_id
        self.run_id = run_id or self.run_id
        return self._learn(marker) or restarted

    def close(self, flush: bool = True) -> None:
        """Stop the thread; with ``flush``, push what the buffer holds and read the last
        acknowledgements first. Spooled events not yet acknowledged stay on disk for the next
        process (a restarted server) to adopt."""
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=10)
        atexit.unregister(self.close)
        if flush:
            self.flush()
        if self.spool is not None:
            if flush and self.spool.waiting:
                with contextlib.suppress(Exception):
                    self._collect_acknowledgements()
            self.spool.close()
        with _conveyors_lock:
            key = (id(self.app), self.pid)
            if _conveyors.get(key) is self:
                del _conveyors[key]


_conveyors: dict[tuple[int, int], EventConveyor] = {}
_conveyors_lock = threading.Lock()


def conveyor_of(app: Flask) -> EventConveyor:
    """The conveyor of ``app`` in this process, started on first use. One per app per process:
    a forked server worker starts its own, with a spool of its own."""
    key = (id(app), os.getpid())
    conveyor = _conveyors.get(key)
    if conveyor is None:
        with _conveyors_lock:
            conveyor = _conveyors.get(key)
            if conveyor is None:
                conveyor = _conveyors[key] = EventConveyor(app)
    return conveyor


def _forget_inherited_conveyors() -> None:
    # A forked child has none of its parent's threads; it lets go of the parent's spool files
    # (so the parent's lock ends with the parent) and starts its own conveyor when needed.
    for key, conveyor in list(_conveyors.items()):
        if conveyor.pid != os.getpid():
            if conveyor.spool is not None:
                conveyor.spool.forget()
            _conveyors.pop(key, None)


os.register_at_fork(after_in_child=_forget_inherited_conveyors)


def adopt_spooled_events(app: Flask) -> bool:
    """At a process's first request: when processes that are gone left events in the spool
    (a server restarted after a crash), start this process's conveyor, which pushes them again
    at once. ``True`` when it did."""
    folder = spool_folder(app)
    try:
        if folder is None or not folder.is_dir() or not has_orphans(folder):
            return False
    except OSError:
        return False
    conveyor_of(app)
    return True


def flush_buffered_events() -> None:
    """Push every buffered event of this process to Redis now (tests, shutdown hooks)."""
    for conveyor in list(_conveyors.values()):
        if conveyor.pid == os.getpid():
            conveyor.flush()


def keep_event_spools() -> int:
    """Run a round of spool keeping for every conveyor of this process now, as their threads
    do every ``ENGAGE_EVENT_SPOOL_SYNC_MS``; how many events were pushed again."""
    return sum(c.keep() for c in list(_conveyors.values()) if c.pid == os.getpid())


def close_conveyors(app: Flask | None = None, *, flush: bool = True) -> None:
    """Stop the conveyors of this process (of ``app`` only, when given): tests, shutdown hooks.
    What their spools still hold stays on disk for the next process."""
    for conveyor in list(_conveyors.values()):
        if conveyor.pid == os.getpid() and (app is None or conveyor.app is app):
            conveyor.close(flush=flush)


def requeue_waiting_events() -> bool:
    """Queue a drain job when events wait in Redis with none queued (a flushed Redis, a lost
    job); ``True`` when one was queued."""
    if not current_engage.redis.llen(QUEUE_KEY):
        return False
    queueing.enqueue(queueing.PERSIST_EVENTS)
    return True
