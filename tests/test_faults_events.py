"""Faults: tracking events are not lost when Redis forgets them ("Delivery that survives
anything", class "tracking events").

People open and click a followed email through the real door (the host app's WSGI app: the
pixel's fast path, the click route); then, before the worker drains, the Redis between them is
flushed, or restarted empty, or the web process itself dies. Whatever recovers (the web
process's event thread pushing its spool again, a restarted web process adopting the spool of
the one that died) must bring every event back, and the worker must store each exactly once.

Each test has a redis-server of its own: FLUSHALL and restarts never touch a shared Redis.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage.models import EventKind, TrackingEvent
from engage.tracking import QUEUE_KEY, close_conveyors, conveyor_of
from tests.hostapp import db
from tests.support import (
    CHROME,
    ROOT,
    RedisServer,
    age_delivery,
    drain,
    drop_host_tables,
    free_port,
    load,
    make_host_app,
    redis_server,
    rq_worker,
    run_delivery,
    seed_host,
    send_followed,
    worker_env,
)

#: Hits per test: the figure of the issue (150 of 150 lost before the spool).
N = 150
#: Every third hit is a click, the others are opens.
CLICKS = N // 3
OPENS = N - CLICKS
PUBLIC_URL = "https://crm.example.com"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def fault_app(database_url, private_redis, smtp_sink, tmp_path):
    """The host app on the private Redis, with a spool that is kept every 50 ms."""
    app = make_host_app(
        database_url,
        private_redis.url,
        TESTING=True,
        ENGAGE_EVENT_BUFFER_MS=0,
        ENGAGE_EVENT_SPOOL_DIR=str(tmp_path / "spool"),
        ENGAGE_EVENT_SPOOL_SYNC_MS=50,
        ENGAGE_SMTP_URL=smtp_sink.url,
        ENGAGE_PUBLIC_URL=PUBLIC_URL,
    )
    seed_host(app)
    yield app
    close_conveyors(app, flush=False)
    drop_host_tables(app)


def ada(app, email_id: int):
    return next(p for p in load(app, email_id).recipients if p.address == "ada@example.com")


def followed(app, redis: RedisServer) -> tuple[int, str]:
    """Send Ada a followed email, delivered two minutes ago: its id and her token. The queue is
    emptied (the delivery job is done by hand), so only tracking events are in Redis after."""
    email_id = send_followed(app)
    run_delivery(app, email_id)
    age_delivery(app, email_id)
    redis.client.flushall()
    return email_id, ada(app, email_id).token


def paths(token: str, prefix: str = "/crm/engage") -> list[str]:
    """The N requests a person's mail program and browser make: opens, and clicks on both
    links (every third request)."""
    return [
        f"{prefix}/t/c/{token}/{i % 2}" if i % 3 == 2 else f"{prefix}/t/o/{token}.gif"
        for i in range(N)
    ]


def hit(app, token: str) -> None:
    """The N requests through the app's WSGI door, as a person's Chrome."""
    client = app.test_client()
    for path in paths(token):
        response = client.get(
            path, headers={"User-Agent": CHROME}, environ_base={"REMOTE_ADDR": "203.0.113.9"}
        )
        assert response.status_code in (200, 302)


def wait_for(check: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def queued(redis: RedisServer) -> int:
    return redis.client.llen(QUEUE_KEY)


def stored(app) -> dict[str, int]:
    """What the database holds: events by kind, distinct event ids, Ada's human opens."""
    with app.app_context():
        kinds = dict(
            db.session.execute(
                sa.select(TrackingEvent.kind, sa.func.count()).group_by(TrackingEvent.kind)
            ).all()
        )
        distinct = db.session.scalar(
            sa.select(sa.func.count(sa.distinct(TrackingEvent.dedupe_key)))
        )
        return {
            "opens": kinds.get(EventKind.OPEN, 0),
            "clicks": kinds.get(EventKind.CLICK, 0),
            "distinct": distinct or 0,
        }


def assert_all_stored_once(app) -> None:
    found = stored(app)
    lost = N - found["distinct"]
    assert found == {"opens": OPENS, "clicks": CLICKS, "distinct": N}, f"{lost} of {N} lost"


def spooled_events(folder: Path) -> int:
    """Events in the spool files of ``folder``."""
    return sum(len(p.read_bytes().splitlines()) for p in folder.glob("*.events"))


@pytest.mark.parametrize("buffer_ms", [0, 20], ids=["unbuffered", "buffered"])
def test_a_redis_flushed_before_the_worker_drains_loses_no_event(
    buffer_ms, fault_app, private_redis, tmp_path
):
    fault_app.config["ENGAGE_EVENT_BUFFER_MS"] = buffer_ms
    email_id, token = followed(fault_app, private_redis)
    hit(fault_app, token)
    assert wait_for(lambda: queued(private_redis) == N)  # buffered: within moments
    assert stored(fault_app)["distinct"] == 0  # nothing written on the request path

    private_redis.client.flushall()  # the fault: everything waiting in Redis is gone

    # The web process's event thread notices and pushes its spool again.
    assert wait_for(lambda: queued(private_redis) >= N), "the spool was not pushed again"
    assert drain(fault_app) == N
    assert_all_stored_once(fault_app)
    assert ada(fault_app, email_id).opens == OPENS  # each a person's open, counted once

    # The worker acknowledged them: the spool lets them go, and a later flush brings nothing.
    spool = conveyor_of(fault_app).spool
    assert wait_for(lambda: spool.waiting == 0)
    assert wait_for(lambda: spooled_events(tmp_path / "spool") == 0)
    private_redis.client.flushall()
    time.sleep(0.3)
    assert queued(private_redis) == 0
    assert drain(fault_app) == 0
    assert_all_stored_once(fault_app)


def test_redis_restarted_empty_and_down_for_a_while_loses_no_event(
    fault_app, private_redis, tmp_path
):
    _email_id, token = followed(fault_app, private_redis)
    requests = paths(token)
    client = fault_app.test_client()
    for path in requests[: N // 2]:
        client.get(path, headers={"User-Agent": CHROME})
    assert queued(private_redis) == N // 2

    private_redis.stop()  # Redis goes down; people keep opening and clicking meanwhile
    for path in requests[N // 2 :]:
        response = client.get(path, headers={"User-Agent": CHROME})
        assert response.status_code in (200, 302)  # answered all the same
    private_redis.start()  # back on the same port, empty (no persistence): the 75 are gone

    assert wait_for(lambda: queued(private_redis) >= N), "the spool was not pushed again"
    assert drain(fault_app) == N
    assert_all_stored_once(fault_app)
    assert wait_for(lambda: spooled_events(tmp_path / "spool") == 0)


def test_a_flush_while_the_worker_stores_a_batch_loses_no_event(
    fault_app, private_redis, database_url, smtp_sink, tmp_path, monkeypatch
):
    """Two web processes (two apps here, each with its own spool); Redis is flushed while the
    worker stores a batch of both, one of them pushes its spool again and takes new hits before
    the worker takes its batch off the list. The list is not the one it read any more: taking
    the batch's length off its head would throw the new hits away."""
    import engage.events

    other = make_host_app(
        database_url,
        private_redis.url,
        TESTING=True,
        ENGAGE_EVENT_BUFFER_MS=0,
        ENGAGE_EVENT_SPOOL_DIR=str(tmp_path / "other-spool"),
        ENGAGE_PUBLIC_URL=PUBLIC_URL,
    )
    for app in (fault_app, other):  # each spool is kept by hand below, not by its thread
        app.config["ENGAGE_EVENT_SPOOL_SYNC_MS"] = 600_000
    _email_id, token = followed(fault_app, private_redis)
    requests = paths(token)
    first, second = fault_app.test_client(), other.test_client()
    for i, path in enumerate(requests[:-10]):
        (first if i % 2 else second).get(path, headers={"User-Agent": CHROME})
    assert queued(private_redis) == N - 10

    store_batch = engage.events._store_batch

    def store_while_redis_forgets(events):
        stored = store_batch(events)
        if len(events) == N - 10:
            private_redis.client.flushall()
            conveyor_of(fault_app).keep()  # its waiting events go again
            for path in requests[-10:]:  # and ten new hits follow them
                first.get(path, headers={"User-Agent": CHROME})
        return stored

    monkeypatch.setattr(engage.events, "_store_batch", store_while_redis_forgets)
    drain(fault_app)
    conveyor_of(other).keep()  # acknowledged already: nothing to push again
    drain(fault_app)
    assert_all_stored_once(fault_app)
    close_conveyors(other, flush=False)


# -- a web process that dies and is started again -------------------------------------------

SERVER = """
import json, signal, sys
from werkzeug.serving import make_server
from tests.hostapp import create_app

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a graceful stop, as gunicorn's

server = make_server("127.0.0.1", int(sys.argv[1]), create_app(json.loads(sys.argv[2])),
                     threaded=True)
print("ready", flush=True)
server.serve_forever()
"""


def start_web(port: int, config: dict, database_url: str, redis_url: str) -> subprocess.Popen:
    """The host app served by werkzeug in a process of its own."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), json.dumps(config)],
        cwd=ROOT,
        env=worker_env(database_url, redis_url),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"User-Agent": CHROME})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize(
    "fault",
    ["pushed-then-flushed", "still-in-the-buffer"],
)
def test_a_web_process_that_dies_leaves_its_events_to_the_next_one(
    fault, fault_app, private_redis, database_url, tmp_path
):
    """The first web process is killed (SIGKILL: no exit handler runs). With its events in
    Redis and Redis then flushed, or with its events still in its in-memory buffer, they are
    only in its spool; the process started after it adopts that spool at its first request."""
    _email_id, token = followed(fault_app, private_redis)
    folder = tmp_path / "web-spool"
    config = {
        "ENGAGE_PUBLIC_URL": PUBLIC_URL,
        "ENGAGE_EVENT_SPOOL_DIR": str(folder),
        # The first process never gets round to pushing its spool again before it dies.
        "ENGAGE_EVENT_SPOOL_SYNC_MS": 600_000,
        "ENGAGE_EVENT_BUFFER_MS": 20 if fault == "pushed-then-flushed" else 600_000,
    }
    port = free_port()
    first = start_web(port, config, database_url, private_redis.url)
    try:
        assert all(get(port, path) in (200, 302) for path in paths(token))
        if fault == "pushed-then-flushed":
            assert wait_for(lambda: queued(private_redis) == N)
            private_redis.client.flushall()
        assert queued(private_redis) == 0
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert spooled_events(folder) == N

    config["ENGAGE_EVENT_SPOOL_SYNC_MS"] = 50
    second = start_web(port, config, database_url, private_redis.url)
    try:
        assert get(port, "/") == 404  # any first request will do
        assert wait_for(lambda: queued(private_redis) >= N), "the spool was not adopted"
        done = subprocess.run(
            rq_worker(private_redis.url, "--burst"),
            cwd=ROOT,
            env=worker_env(database_url, private_redis.url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert_all_stored_once(fault_app)
        # The worker's acknowledgements reach the second process, which lets the events go.
        assert wait_for(lambda: spooled_events(folder) == 0)
        assert not [p for p in folder.glob("*.events") if str(first.pid) in p.name]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)
    # A clean exit with nothing left to keep leaves no file behind.
    assert not [p for p in folder.iterdir() if str(second.pid) in p.name]
    assert os.listdir(folder) == [] or spooled_events(folder) == 0
