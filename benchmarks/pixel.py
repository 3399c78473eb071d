"""The open pixel under load: engage's endpoint against a bare Flask route, same server settings.

Both apps run under gunicorn with the settings below (the ones the README recommends for the
tracking endpoints); Debian's ``wrk`` loads each for 10 s at 64 connections on loopback. The
engage run has one ``rq worker`` persisting events during the load; afterwards the benchmark
waits until every event wrk got an answer for is in the database. The engage run keeps its
event spool (see README "Tracking events survive Redis") on the temporary folder's disk.

Targets (issue 4): at least 0.8x the bare route's requests per second, p99 at most 25 ms, and
every event persisted within 2 s after the load ends.

    apt-get install wrk   # once
    .venv/bin/python -m benchmarks.pixel
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    database_url,
    drop_host_tables,
    mark_delivered,
    redis_url,
    workdir,
    worker_env,
)
from tests.support import CHROME, PEOPLE, ROOT, free_port, make_host_app, rq_worker, seed_host, send

BIN = Path(sys.executable).parent
#: The gunicorn settings of both runs: 2 worker processes with 8 threads each (keep-alive).
GUNICORN = [
    "--workers",
    "2",
    "--worker-class",
    "gthread",
    "--threads",
    "8",
    "--keep-alive",
    "5",
    "--log-level",
    "warning",
]
CONNECTIONS, SECONDS = 64, 10


def serve(app: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), *GUNICORN, "--bind", f"127.0.0.1:{port}", app], cwd=ROOT, env=env
    )
    deadline = time.monotonic() + 30
    import urllib.request

    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError as exc:
            if getattr(exc, "code", None):
                break  # an HTTP answer (404): the server is up
            time.sleep(0.2)
    return proc, port


def load(url: str) -> dict[str, float]:
    out = subprocess.run(
        # A person's browser: a pixel fetched with no user agent at all is a machine's (S14),
        # and the worker's path for people's opens (cards, figures) is the one to measure.
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{SECONDS}s",
            "--latency",
            "-H",
            f"User-Agent: {CHROME}",
        ]
        + [url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
    }


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    from engage.models import Email, TrackingEvent
    from tests.hostapp import db

    with workdir() as folder, redis_url(folder) as redis:
        url = database_url(folder)
        app = make_host_app(url, redis, ENGAGE_PUBLIC_URL="http://127.0.0.1")
        seed_host(
            app, {1: PEOPLE[1]}, {1: {"name": "Ada", "email": "ada@example.com", "owner_id": 1}}
        )
        email_id = send(app, to="ada@example.com", cc="", bcc="", subject="Pixel", html="<p>Hi</p>")
        token = mark_delivered(app, email_id)  # an hour ago, without the SMTP part
        import redis as redis_lib

        redis_lib.Redis.from_url(redis).flushdb()  # the delivery job is not wanted here

        env = worker_env(url, redis, ENGAGE_PUBLIC_URL="http://127.0.0.1")
        bare_proc, bare_port = serve("benchmarks.bare_pixel:app", env)
        try:
            bare = load(f"http://127.0.0.1:{bare_port}/t/o/{token}.gif")
        finally:
            stop(bare_proc)

        # The worker runs at a lower priority than the web server, as the README recommends:
        # answering the pixel comes first, storing its events can trail by a moment.
        worker = subprocess.Popen(
            ["nice", "-n", "15", *rq_worker(redis, "-q")],
            cwd=ROOT,
            env=env,
        )
        # Each web process spools its events (engage's default), here in the temporary folder.
        spool = {"ENGAGE_EVENT_SPOOL_DIR": str(folder / "event-spool")}
        engage_proc, engage_port = serve(f"tests.hostapp:create_app({spool!r})", env)
        try:
            result = load(f"http://127.0.0.1:{engage_port}/crm/engage/t/o/{token}.gif")
            ended = time.monotonic()
            sent = result["requests"] - result["errors"]
            persisted = 0
            with app.app_context():
                while time.monotonic() - ended < 30:
                    db.session.rollback()
                    persisted = db.session.query(TrackingEvent).count()
                    if persisted >= sent:
                        break
                    time.sleep(0.05)
                lag = time.monotonic() - ended
                opens = db.session.get(Email, email_id).recipients[0].opens
        finally:
            stop(engage_proc)
            stop(worker)

        ratio = result["rps"] / bare["rps"]
        print(
            f"database: {url.split(':', 1)[0]}; gunicorn {' '.join(GUNICORN)}; "
            f"wrk -c{CONNECTIONS} -d{SECONDS}s on loopback"
        )
        print(f"bare Flask GIF route:  {bare['rps']:9.1f} req/s   p99 {bare['p99_ms']:6.2f} ms")
        print(f"engage open pixel:     {result['rps']:9.1f} req/s   p99 {result['p99_ms']:6.2f} ms")
        print(f"ratio engage / bare:   {ratio:.2f}x   (target: at least 0.8x)")
        print(
            f"events sent {sent}, persisted {persisted} ({opens} counted as human opens), "
            f"all persisted {lag:.2f} s after the load ended (target: within 2 s)"
        )
        ok = ratio >= 0.8 and result["p99_ms"] <= 25 and persisted == sent and lag <= 2
        print("OK" if ok else "MISSED A TARGET")
        drop_host_tables(app)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
