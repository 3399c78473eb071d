"""Sending: messages per second from an RQ worker to a local SMTP sink, against plain smtplib.

Both send the same messages (one copy per recipient, built by engage) to the same aiosmtpd
sink in the same run. The baseline is the floor cost of SMTP here: one connection, a loop of
``send_message``. The worker adds what a real delivery needs: a job per email, the database
reads and the per-copy commits that make a retried job never send twice. The issue asks for
the worker at 0.5x of the baseline or better, from the first message to the last (the
worker's start-up excluded). Two more runs, for comparison: RQ's forking worker, and the same
emails followed (a copy of its own per recipient, with tracked links and a pixel). Each run is
repeated ``ENGAGE_BENCH_ROUNDS`` times (3), each time right after a baseline of its own, and
the median of the ratios is shown, so that a load that comes and goes on the machine moves
both sides of a ratio alike.

    .venv/bin/python -m benchmarks.sending
    ENGAGE_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m benchmarks.sending
"""

from __future__ import annotations

import os
import smtplib
import statistics
import subprocess
import sys
import threading
import time

from aiosmtpd.controller import Controller

from benchmarks.common import database_url, drop_host_tables, redis_url, workdir, worker_env
from tests.support import PEOPLE, ROOT, SAM, free_port, make_host_app, rq_worker, seed_host

EMAILS = 40
RECIPIENTS = 5  # per email: 2 To, 2 Cc, 1 Bcc
#: Rounds of each run (``ENGAGE_BENCH_ROUNDS``); the ratios shown are their medians.
ROUNDS = int(os.environ.get("ENGAGE_BENCH_ROUNDS", "3"))
PUBLIC_URL = "https://crm.example.com"  # where followed copies' links and pixels point


class CountingSink:
    """An SMTP sink that notes when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        with self.lock:
            self.arrivals.append(time.perf_counter())
        return "250 OK"

    def reset(self) -> None:
        with self.lock:
            self.arrivals = []


def wait_for(sink: CountingSink, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.arrivals) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(sink.arrivals)} of {count} messages arrived")
        time.sleep(0.01)


def main() -> None:
    from engage.delivery import build_message
    from engage.emails import DraftInput, save_draft, submit
    from engage.models import Email, EmailStatus
    from engage.records import RecordRef
    from tests.hostapp import db

    total = EMAILS * RECIPIENTS
    sink = CountingSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    smtp_url = f"smtp://127.0.0.1:{port}"

    with workdir() as folder, redis_url(folder) as redis:
        url = database_url(folder)
        app = make_host_app(url, redis, ENGAGE_SMTP_URL=smtp_url, ENGAGE_PUBLIC_URL=PUBLIC_URL)
        seed_host(
            app,
            {1: PEOPLE[1]},
            {1: {"name": "Bench Co", "email": "bench@example.com", "owner_id": 1}},
        )
        with app.app_context():

            def make_emails(follow: bool = False) -> list[int]:
                ids = []
                for n in range(EMAILS):
                    draft = DraftInput(
                        to=f"a{n}@example.com, b{n}@example.com",
                        cc=f"c{n}@example.com, d{n}@example.com",
                        bcc=f"e{n}@example.com",
                        subject=f"Benchmark {n}",
                        regarding=RecordRef("customer", "1"),
                        follow=follow,
                        body="<div>Hello <strong>there</strong>, see "
                        '<a href="https://example.com/offer">our offer</a>.</div>' * 20,
                    )
                    email = save_draft(db.session, SAM, draft, None)
                    ids.append(email.id)
                return ids

            def baseline() -> float:
                """The same kind of messages through one smtplib connection, in msg/s."""
                ids = make_emails()
                messages = []
                for email_id in ids:
                    email = db.session.get(Email, email_id)
                    email.message_id = f"<bench-{email_id}@host.test>"
                    messages += [(build_message(email, p), p.address) for p in email.recipients]
                sink.reset()
                start = time.perf_counter()
                with smtplib.SMTP("127.0.0.1", port) as client:
                    for message, address in messages:
                        client.send_message(message, from_addr="sam@host.test", to_addrs=[address])
                wait_for(sink, total, 60)
                return total / (time.perf_counter() - start)

            def worker(worker_class: str, follow: bool) -> tuple[float, float]:
                """An ``rq worker --burst`` sending the same: msg/s over the whole run and from
                the first to the last message."""
                ids = make_emails(follow)
                for email_id in ids:
                    submit(db.session, SAM, db.session.get(Email, email_id))
                sink.reset()
                env = worker_env(url, redis, ENGAGE_SMTP_URL=smtp_url, ENGAGE_PUBLIC_URL=PUBLIC_URL)
                start = time.perf_counter()
                done = subprocess.run(
                    rq_worker(redis, "--burst", "-q", worker_class=f"engage.worker.{worker_class}"),
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if done.returncode:
                    raise SystemExit(done.stdout + done.stderr)
                wait_for(sink, total, 60)
                whole = time.perf_counter() - start
                steady = sink.arrivals[-1] - sink.arrivals[0]
                db.session.expire_all()
                statuses = {db.session.get(Email, i).status for i in ids}
                assert statuses == {EmailStatus.SENT}, statuses
                assert all(db.session.get(Email, i).followed is follow for i in ids)
                return total / whole, (total - 1) / steady

            # Each round measures the baseline right before the worker, and the ratio is taken
            # within the round: on a shared machine the load changes from minute to minute.
            runs = [
                ("EngageWorker", "EngageWorker", False),
                ("EngageForkingWorker", "EngageForkingWorker", False),
                ("EngageWorker, followed", "EngageWorker", True),
            ]
            rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name, *_ in runs}
            for _round in range(ROUNDS):
                for name, worker_class, follow in runs:
                    base = baseline()
                    whole, steady = worker(worker_class, follow)
                    rounds[name].append((base, whole, steady))

        controller.stop()
        print(
            f"database: {url.split(':', 1)[0]}; {EMAILS} emails x {RECIPIENTS} recipients "
            f"= {total} messages to a local aiosmtpd sink; {ROUNDS} rounds, each against a "
            "smtplib loop measured just before it (medians shown)"
        )
        print(f"{'':<26} {'smtplib loop':>13} {'whole run':>21} {'first to last message':>27}")
        for name, measured in rounds.items():
            base = statistics.median(m[0] for m in measured)
            whole = statistics.median(m[1] / m[0] for m in measured)
            steady = statistics.median(m[2] / m[0] for m in measured)
            rate = statistics.median(m[2] for m in measured)
            print(f"{name:<26} {base:8.1f} msg/s {whole:19.2f}x {rate:12.1f} msg/s {steady:6.2f}x")
        ratios = [m[2] / m[0] for m in rounds["EngageWorker"]]
        steady = statistics.median(ratios)
        ok = steady >= 0.5
        print(
            f"EngageWorker vs smtplib loop, first to last message: {steady:.2f}x "
            f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target: at least 0.5x) "
            f"{'OK' if ok else 'UNDER TARGET'}"
        )
        drop_host_tables(app)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
