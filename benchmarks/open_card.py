"""From a human open to its card: the pixel request until the card is in the assistant panel.

The host app is served over HTTP on loopback (a threaded werkzeug server), one ``rq worker``
persists events; for each of 100 followed emails the benchmark fetches the recipient's pixel
with a person's browser user agent, then polls the assistant partial as the sender until the
card for that email is in the response. Target (issue 6): p95 at most 5 s.

    .venv/bin/python -m benchmarks.open_card
"""

from __future__ import annotations

import http.cookiejar
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from werkzeug.serving import make_server

from benchmarks.common import database_url, drop_host_tables, redis_url, workdir, worker_env

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OPENS = 100
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def main() -> None:
    from engage.emails import DraftInput, save_draft, submit
    from engage.models import DeliveryState, EmailStatus, utcnow
    from engage.records import EngageUser, RecordRef
    from tests import hostapp
    from tests.hostapp import Customer, Person, db

    with workdir() as folder, redis_url(folder) as redis:
        url = database_url(folder)
        config = {
            "SQLALCHEMY_DATABASE_URI": url,
            "ENGAGE_REDIS_URL": redis,
            "ENGAGE_PUBLIC_URL": "http://127.0.0.1",
        }
        app = hostapp.create_app(config)
        sam = EngageUser(id="1", name="Sam", email="sam@host.test", roles={"salesperson"})
        tokens: list[tuple[str, str]] = []
        with app.app_context():
            db.session.add(
                Person(id=1, name="Sam", email="sam@host.test", role_names="salesperson")
            )
            db.session.flush()
            db.session.add(Customer(id=1, name="Ada Lovelace", email="ada@example.com", owner_id=1))
            db.session.commit()
            for n in range(OPENS):
                email = save_draft(
                    db.session,
                    sam,
                    DraftInput(
                        to=f"reader{n}@example.com",
                        subject=f"Offer {n:03d}",
                        body="<p>Hi</p>",
                        regarding=RecordRef("customer", "1"),
                    ),
                    None,
                )
                submit(db.session, sam, email)
                email.status = EmailStatus.SENT  # delivered an hour ago, without the SMTP part
                for party in email.recipients:
                    party.delivery_state = DeliveryState.SENT
                    party.delivered_at = utcnow() - timedelta(hours=1)
                db.session.commit()
                tokens.append((email.recipients[0].token, f"Offer {n:03d}"))
            import redis as redis_lib

            redis_lib.Redis.from_url(redis).flushdb()

        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        env = worker_env(url, redis, ENGAGE_PUBLIC_URL="http://127.0.0.1")
        worker = subprocess.Popen(
            [
                str(BIN / "rq"),
                "worker",
                "-q",
                "-w",
                "engage.worker.EngageWorker",
                "--url",
                redis,
                "engage",
            ],
            cwd=ROOT,
            env=env,
        )
        sender = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        sender.open(urllib.request.Request(f"{base}/login/1", method="POST"))
        recipient = urllib.request.build_opener()
        recipient.addheaders = [("User-Agent", CHROME)]
        time.sleep(3)  # let the worker load the app
        latencies = []
        try:
            for token, subject in tokens:
                started = time.perf_counter()
                recipient.open(f"{base}/crm/engage/t/o/{token}.gif").read()
                while time.perf_counter() - started < 30:
                    panel = sender.open(f"{base}/crm/engage/assistant?part=cards").read().decode()
                    if subject in panel:
                        latencies.append(time.perf_counter() - started)
                        break
                    time.sleep(0.02)
        finally:
            worker.terminate()
            worker.wait(timeout=15)
            server.shutdown()
        ordered = sorted(latencies)
        p95 = (
            ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] if ordered else 99
        )
        print(
            f"{len(latencies)}/{OPENS} open cards seen; pixel request to card in the panel: "
            f"p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s, max {max(latencies):.2f} s "
            f"(target p95 <= 5 s)"
        )
        ok = len(latencies) == OPENS and p95 <= 5
        drop_host_tables(app)
        print("OK" if ok else "MISSED A TARGET")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
