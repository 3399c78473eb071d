"""What the benchmarks share: the database and Redis they run on, and timing helpers.

The host app, its people, SMTP ports and ``rq worker`` command lines are the tests' own
(tests/support.py); ``drop_host_tables`` and ``worker_env`` are passed on from there.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from flask import Flask

from tests.support import drop_host_tables, embedded_redis, empty_database, worker_env

__all__ = [
    "database_url",
    "describe",
    "drop_host_tables",
    "mark_delivered",
    "redis_url",
    "timed",
    "worker_env",
    "workdir",
]


def database_url(workdir: Path) -> str:
    """``ENGAGE_BENCH_DATABASE_URL`` (emptied first), else a SQLite file in ``workdir``."""
    return empty_database(os.environ.get("ENGAGE_BENCH_DATABASE_URL"), workdir / "bench.sqlite3")


@contextmanager
def redis_url(workdir: Path) -> Iterator[str]:
    """``ENGAGE_BENCH_REDIS_URL`` or ``REDIS_URL`` (flushed), else an embedded redis-server."""
    url = os.environ.get("ENGAGE_BENCH_REDIS_URL") or os.environ.get("REDIS_URL")
    if url:
        import redis

        redis.Redis.from_url(url).flushdb()
        yield url
        return
    with embedded_redis(workdir / "bench.rdb") as url:
        yield url


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as folder:
        yield Path(folder)


def mark_delivered(app: Flask, email_id: int, *, ago: timedelta = timedelta(hours=1)) -> str:
    """Mark a submitted email sent and its copies delivered ``ago``, without the SMTP part (so
    opens now are not prefetches); return its first recipient's tracking token."""
    from engage.models import DeliveryState, Email, EmailStatus, utcnow
    from tests.hostapp import db

    with app.app_context():
        email = db.session.get(Email, email_id)
        email.status = EmailStatus.SENT
        for party in email.recipients:
            party.delivery_state = DeliveryState.SENT
            party.delivered_at = utcnow() - ago
        db.session.commit()
        return email.recipients[0].token


def timed(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times; the seconds of each run."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def describe(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"
