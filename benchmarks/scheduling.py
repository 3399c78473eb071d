"""Scheduled delivery: lag from an email's due time to its acceptance by the SMTP sink.

First 50 emails scheduled a few seconds ahead, sent by one worker; then 1,000 emails due at
the same moment, sent by two workers. Targets (issue 5): p95 lag at most 2 s for the first,
all 1,000 accepted within 60 s of their due time for the second.

    .venv/bin/python -m benchmarks.scheduling
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta

from aiosmtpd.controller import Controller

from benchmarks.common import database_url, drop_host_tables, redis_url, workdir, worker_env
from tests.support import PEOPLE, ROOT, SAM, free_port, make_host_app, rq_worker, seed_host


class ArrivalSink:
    """An SMTP sink noting when each recipient's copy arrived (wall-clock time)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        with self.lock:
            for address in envelope.rcpt_tos:
                self.arrivals[address] = time.time()
        return "250 OK"


def wait_for(sink: ArrivalSink, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.arrivals) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    from engage.emails import DraftInput, save_draft, submit
    from engage.models import utcnow
    from tests.hostapp import db

    sink = ArrivalSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    smtp_url = f"smtp://127.0.0.1:{port}"
    ok = True
    with workdir() as folder, redis_url(folder) as redis:
        url = database_url(folder)
        app = make_host_app(url, redis, ENGAGE_SMTP_URL=smtp_url)
        env = worker_env(url, redis, ENGAGE_SMTP_URL=smtp_url)
        seed_host(app, {1: PEOPLE[1]}, {})

        def schedule(prefix: str, count: int, due_in: float, spread: float) -> dict[str, float]:
            dues = {}
            with app.app_context():
                base = utcnow() + timedelta(seconds=due_in)
                for n in range(count):
                    due = base + timedelta(seconds=spread * n / max(count, 1))
                    address = f"{prefix}{n}@example.com"
                    email = save_draft(
                        db.session,
                        SAM,
                        DraftInput(to=address, subject=f"Scheduled {n}", body="<p>Hello</p>"),
                        None,
                    )
                    submit(db.session, SAM, email, send_at=due)
                    dues[address] = due.timestamp()
            return dues

        def workers(count: int) -> list[subprocess.Popen]:
            return [
                subprocess.Popen(
                    rq_worker(redis, "-q", "--with-scheduler"),
                    cwd=ROOT,
                    env=env,
                )
                for _ in range(count)
            ]

        def stop(procs: list[subprocess.Popen]) -> None:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)

        # Phase 1: 50 emails due over a few seconds, one worker.
        procs = workers(1)
        time.sleep(3)  # let the worker load the app before the first email is due
        dues = schedule("a", 50, due_in=5, spread=3)
        wait_for(sink, 50, 60)
        stop(procs)
        lags = [sink.arrivals[a] - d for a, d in dues.items() if a in sink.arrivals]
        p50, p95, worst = statistics.median(lags), percentile(lags, 0.95), max(lags)
        print(
            f"50 emails, 1 worker: lag p50 {p50:.2f} s, p95 {p95:.2f} s, max {worst:.2f} s "
            f"({len(lags)}/50 arrived; target p95 <= 2 s)"
        )
        ok &= len(lags) == 50 and p95 <= 2

        # Phase 2: 1,000 emails due at the same moment, two workers.
        sink.arrivals.clear()
        started = time.monotonic()
        dues = schedule("b", 1000, due_in=40, spread=0)
        made = time.monotonic() - started
        procs = workers(2)
        due = next(iter(dues.values()))
        wait_for(sink, 1000, max(5.0, due - time.time() + 90))
        stop(procs)
        arrived = [sink.arrivals[a] for a in dues if a in sink.arrivals]
        last = max(arrived) - due if arrived else float("inf")
        print(
            f"1,000 emails due at once (scheduled in {made:.1f} s), 2 workers: "
            f"{len(arrived)}/1000 accepted, the last {last:.1f} s after the due time "
            f"(target: all within 60 s)"
        )
        ok &= len(arrived) == 1000 and last <= 60
        drop_host_tables(app)
    controller.stop()
    print("OK" if ok else "MISSED A TARGET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
