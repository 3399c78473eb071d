"""Tracking events through Redis faults: how many of 150 are lost.

The host app runs under gunicorn with the README's settings for the tracking endpoints; 150
hits of a person's Chrome (100 opens of the pixel, 50 clicks) go to it over HTTP and reach
Redis. Then, before any worker has drained them, the fault: Redis flushed, Redis restarted
empty (no persistence), restarted from its append-only file (nothing lost there, but every
web process pushes its spool again: the worker must not store anything twice), or the web
server killed (SIGKILL, master and workers) with Redis
flushed before it is started again. Only then does an ``rq worker`` start; the benchmark waits
until no more events arrive and counts what the database holds: events lost, events stored
twice, and the seconds from the fault to the last one stored.

Each case runs on a redis-server of its own (``redis-server`` from Debian's package) and a
SQLite file in a temporary folder; nothing else is touched. Run it from a checkout:

    .venv/bin/python -m benchmarks.event_faults
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from benchmarks.common import database_url, drop_host_tables, mark_delivered, workdir, worker_env
from tests.support import (
    CHROME,
    PEOPLE,
    ROOT,
    RedisServer,
    free_port,
    make_host_app,
    rq_worker,
    seed_host,
    send,
)

BIN = Path(sys.executable).parent
GUNICORN = ["--workers", "2", "--worker-class", "gthread", "--threads", "8", "--log-level", "error"]
N = 150
#: How long after the fault the benchmark waits for events that do not come.
PATIENCE = 15.0


def serve(port: int, config: dict, env: dict[str, str]) -> subprocess.Popen:
    """gunicorn serving the host app with ``config``, in a process group of its own."""
    proc = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            *GUNICORN,
            "--bind",
            f"127.0.0.1:{port}",
            f"tests.hostapp:create_app({config!r})",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            get(port, "/")
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def get(port: int, path: str, connection: http.client.HTTPConnection | None = None) -> int:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"User-Agent": CHROME})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        if own:
            connection.close()


def kill(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_case(
    folder: Path, name: str, buffer_ms: int, fault: str, appendonly: bool
) -> dict[str, float]:
    """One case on its own Redis, database and spool; what was lost, doubled and how fast."""
    from engage.models import TrackingEvent
    from tests.hostapp import db

    case = folder / name
    redis = RedisServer(case / "redis", appendonly=appendonly)
    url = database_url(case)
    app = make_host_app(url, redis.url, ENGAGE_PUBLIC_URL="http://127.0.0.1")
    seed_host(app, {1: PEOPLE[1]}, {1: {"name": "Ada", "email": "ada@example.com", "owner_id": 1}})
    email_id = send(
        app,
        to="ada@example.com",
        cc="",
        bcc="",
        subject="Faults",
        html='<p>Hi, see <a href="https://example.com/offer">the offer</a></p>',
    )
    token = mark_delivered(app, email_id)
    redis.client.flushall()  # the delivery job is not wanted here
    config = {
        "ENGAGE_PUBLIC_URL": "http://127.0.0.1",
        "ENGAGE_EVENT_BUFFER_MS": buffer_ms,
        "ENGAGE_EVENT_SPOOL_DIR": str(case / "spool"),
    }
    env = worker_env(url, redis.url)
    port = free_port()
    web = serve(port, config, env)
    worker: subprocess.Popen | None = None
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(N):
            path = f"/crm/engage/t/c/{token}/0" if i % 3 == 2 else f"/crm/engage/t/o/{token}.gif"
            assert get(port, path, connection) in (200, 302)
        connection.close()
        deadline = time.monotonic() + 5
        while redis.client.llen("engage:events") < N and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = redis.client.llen("engage:events")

        if fault == "flush":
            redis.client.flushall()
        elif fault in ("empty restart", "AOF restart"):
            redis.restart()
        elif fault == "web killed, flush":
            kill(web, signal.SIGKILL)
            redis.client.flushall()
            web = serve(port, config, env)  # a new server on the same spool
        faulted = time.monotonic()

        worker = subprocess.Popen(
            rq_worker(redis.url, "-q"), cwd=ROOT, env=env, stderr=subprocess.DEVNULL
        )
        rows = distinct = 0
        last_change = time.monotonic()
        with app.app_context():
            while time.monotonic() - last_change < PATIENCE and distinct < N:
                db.session.rollback()
                now_rows, now_distinct = db.session.execute(
                    sa.select(sa.func.count(), sa.func.count(sa.distinct(TrackingEvent.dedupe_key)))
                ).one()
                if now_rows != rows:
                    rows, distinct, last_change = now_rows, now_distinct, time.monotonic()
                time.sleep(0.05)
            if distinct == N:
                time.sleep(2)  # anything stored twice would show up now
                db.session.rollback()
                rows = db.session.scalar(sa.select(sa.func.count(TrackingEvent.id)))
        return {
            "waiting": waiting,
            "lost": N - distinct,
            "twice": rows - distinct,
            "seconds": (last_change - faulted) if distinct else float("nan"),
        }
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=15)
        kill(web)
        drop_host_tables(app)
        redis.stop()


#: name, ENGAGE_EVENT_BUFFER_MS, fault, whether Redis keeps an append-only file.
CASES: list[tuple[str, int, str, bool]] = [
    ("flush-buffered", 20, "flush", False),
    ("flush-unbuffered", 0, "flush", False),
    ("restart-buffered", 20, "empty restart", False),
    ("aof-restart-buffered", 20, "AOF restart", True),
    ("killed-web-buffered", 20, "web killed, flush", False),
]


def main(report: Callable[[str], None] = print) -> None:
    with workdir() as folder:
        report(
            f"{N} hits (100 opens, 50 clicks) over HTTP to gunicorn {' '.join(GUNICORN)}, "
            "in Redis before the fault; then a worker"
        )
        failed = False
        for name, buffer_ms, fault, appendonly in CASES:
            result = run_case(folder, name, buffer_ms, fault, appendonly)
            failed |= bool(result["lost"] or result["twice"])
            report(
                f"{fault:<18} ENGAGE_EVENT_BUFFER_MS={buffer_ms:<3} in Redis {result['waiting']:>3}"
                f"   lost {result['lost']:>3} of {N}   stored twice {result['twice']:>3}"
                f"   all back {result['seconds']:5.2f} s after the fault"
            )
        report("MISSED: events lost or doubled" if failed else "OK: nothing lost, nothing doubled")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
