"""Fault injection for delivery: workers killed mid-send, Redis restarted empty or down, the
relay down, poisoned copies.

Real parts only: ``rq worker`` processes (killed with SIGKILL), a private redis-server (stopped
and started again, empty), aiosmtpd relays and the suite's database. What each trial asserts:
no copy lost, no copy sent twice unless it is marked *in doubt*, and no email left "Sending"
once a worker runs again.

``ENGAGE_FAULT_TRIALS`` sets how many kill trials run (default 3, quick enough for CI); the
figures in the README come from a long run with ``ENGAGE_FAULT_TRIALS=20``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from engage import current_engage
from engage.i18n import read
from engage.jobs import sweep
from engage.models import DeliveryState, Email, EmailStatus
from tests.hostapp import db
from tests.support import (
    ROOT,
    RedisServer,
    compose_fields,
    free_port,
    make_host_app,
    redis_server,
    rq_worker,
    seed_host,
    send,
    sign_in,
    wait_for,
    worker_env,
)

TRIALS = int(os.environ.get("ENGAGE_FAULT_TRIALS", "3"))
RECIPIENTS = 12


# -- the parts ---------------------------------------------------------------------------------


class SlowRelay:
    """An SMTP relay that takes its time over each message and counts what it received."""

    def __init__(self, delay: float = 0.15, refuse_smtputf8: bool = False) -> None:
        self.delay = delay
        self.received: Counter[str] = Counter()
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.refuse_smtputf8 = refuse_smtputf8
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.delay)
        for address in envelope.rcpt_tos:
            self.received[address] += 1
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            enable_SMTPUTF8=not self.refuse_smtputf8,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class Workers:
    """Real ``rq worker`` processes for the test host app, which the test may kill."""

    def __init__(self, database_url: str, redis_url: str, folder: Path, **env: str) -> None:
        self.env = worker_env(database_url, redis_url, **env)
        self.redis_url = redis_url
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.folder / f"worker-{len(self.procs)}.log").open("wb")
        # A session of its own: killing it kills its scheduler process too, as a lost machine
        # would, and leaves nothing behind to take later tests' jobs.
        proc = subprocess.Popen(
            rq_worker(self.redis_url, "--with-scheduler"),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever is left of its session (a scheduler process waiting for a Redis that is
            # gone) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and start again empty."""
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def relay() -> Iterator[SlowRelay]:
    sink = SlowRelay()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def fault_app(database_url: str, private_redis: RedisServer, relay: SlowRelay) -> Any:
    app = make_host_app(
        database_url,
        private_redis.url,
        TESTING=True,
        ENGAGE_SMTP_URL=relay.url,
        ENGAGE_SMTP_TIMEOUT=5,
        ENGAGE_SMTP_RETRY_DELAYS=(30, 60, 300),
    )
    seed_host(app)
    return app


@pytest.fixture
def workers(database_url: str, private_redis: RedisServer, relay: SlowRelay, tmp_path: Path):
    pool = Workers(
        database_url,
        private_redis.url,
        tmp_path,
        ENGAGE_SMTP_URL=relay.url,
        ENGAGE_SMTP_TIMEOUT="5",
    )
    yield pool
    pool.stop_all()


def _many(n: int, tag: str) -> str:
    return ", ".join(f"r{i}-{tag}@example.com" for i in range(n))


def _email(app: Any, email_id: int) -> Email:
    with app.app_context():
        email = db.session.get_one(Email, email_id)
        _ = email.parties
        db.session.expunge(email)
        return email


def _sweep(app: Any) -> None:
    with app.app_context():
        sweep()


# -- a worker killed mid-send --------------------------------------------------------------------


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_worker_killed_mid_send_loses_nothing_and_sends_nothing_twice(
    fault_app, relay, workers, trial
):
    email_id = send(fault_app, to=_many(RECIPIENTS, str(trial)), cc="", bcc="", follow=False)
    first = workers.start()
    # Kill it somewhere in the middle of the email's copies, at a different point each trial.
    kill_after = 2 + trial % (RECIPIENTS - 4)
    wait_for(
        lambda: sum(relay.received.values()) >= kill_after, timeout=30, what="the first copies"
    )
    workers.kill(first)
    killed_at = time.monotonic()

    workers.start()

    # The sweep (rq cron in production) notices within its interval; run it as cron would.
    def settled() -> bool:
        _sweep(fault_app)
        return _email(fault_app, email_id).status is not EmailStatus.SENDING

    wait_for(settled, timeout=45, what="the email to settle after the kill")
    recovery = time.monotonic() - killed_at
    email = _email(fault_app, email_id)
    in_doubt = {p.address for p in email.recipients if p.delivery_state is DeliveryState.IN_DOUBT}
    for party in email.recipients:
        count = relay.received[party.address]
        if party.address in in_doubt:
            assert count <= 1, (party.address, count)
        else:
            assert party.delivery_state is DeliveryState.SENT, (party.address, party.delivery_state)
            assert count == 1, (party.address, count)
    duplicates = sum(max(0, relay.received[p.address] - 1) for p in email.recipients)
    print(
        f"\nkill trial {trial}: killed after {kill_after} copies, settled {recovery:.1f} s later, "
        f"{len(in_doubt)} in doubt, {duplicates} sent twice, "
        f"{sum(relay.received.values())} of {RECIPIENTS} received"
    )
    assert len(in_doubt) <= 1  # at most the one copy the relay was answering
    assert recovery < 30, f"the email was Sending {recovery:.1f} s after the worker was killed"


# -- Redis restarted empty ---------------------------------------------------------------------


def test_redis_restarted_empty_while_emails_wait_sends_each_once(
    fault_app, relay, workers, private_redis
):
    ids = [send(fault_app, to=_many(3, f"flush{n}"), cc="", bcc="", follow=False) for n in range(5)]
    private_redis.stop()  # the queued jobs are gone with it
    private_redis.start()
    workers.start()

    def all_sent() -> bool:
        _sweep(fault_app)
        return all(_email(fault_app, i).status is EmailStatus.SENT for i in ids)

    wait_for(all_sent, timeout=30, what="the emails after Redis came back empty")
    assert sum(relay.received.values()) == 15
    assert set(relay.received.values()) == {1}


# -- the queue down while a rep presses Send -----------------------------------------------------


def test_send_with_the_queue_down_is_kept_and_sent_once_when_it_is_back(
    fault_app, relay, workers, private_redis
):
    client = sign_in(fault_app.test_client(), 1)
    fields = compose_fields(client, to="ada@example.com", subject="Hello", body="Hi", action="send")
    panel = client.get("/crm/engage/compose?regarding=customer:1").get_data(as_text=True)
    key = panel.split('name="submission" value="', 1)[1].split('"', 1)[0]
    fields["submission"] = key
    private_redis.stop()
    first = client.post("/crm/engage/compose", data=fields, follow_redirects=True)
    assert first.status_code == 200
    assert "as soon as the queue is back" in first.get_data(as_text=True)
    again = client.post("/crm/engage/compose", data=fields, follow_redirects=True)
    assert again.status_code == 200  # the same form again: no second email
    with fault_app.app_context():
        emails = db.session.query(Email).all()
        assert len(emails) == 1 and emails[0].status is EmailStatus.SENDING
        email_id = emails[0].id
    private_redis.start()
    workers.start()

    def sent() -> bool:
        _sweep(fault_app)
        return _email(fault_app, email_id).status is EmailStatus.SENT

    wait_for(sent, timeout=30, what="the email once the queue is back")
    assert relay.received["ada@example.com"] == 1


# -- the relay down ------------------------------------------------------------------------------


def test_copies_waiting_for_the_relay_go_soon_after_it_is_back(fault_app, relay, workers):
    relay.stop()
    email_id = send(fault_app, to=_many(4, "down"), cc="", bcc="", follow=False)
    workers.start()
    wait_for(
        lambda: _email(fault_app, email_id).delivery_summary == "retrying",
        timeout=30,
        what="the copies to wait for the relay",
    )
    # The retry ladder says 30 s; the relay is back now, and the sweep's probe sees it.
    relay.start()
    back = time.monotonic()

    def sent() -> bool:
        _sweep(fault_app)
        return _email(fault_app, email_id).status is EmailStatus.SENT

    wait_for(sent, timeout=25, what="the copies after the relay came back")
    assert time.monotonic() - back < 25
    assert set(relay.received.values()) == {1} and len(relay.received) == 4


# -- poison --------------------------------------------------------------------------------------


def test_a_relay_without_smtputf8_fails_only_the_copy_that_needs_it(
    database_url, private_redis, tmp_path
):
    plain = SlowRelay(delay=0, refuse_smtputf8=True)
    plain.start()
    try:
        app = make_host_app(database_url, private_redis.url, ENGAGE_SMTP_URL=plain.url)
        seed_host(app)
        email_id = send(
            app, to="jürgen@müller.example", cc="grace@example.com", bcc="", follow=False
        )
        with app.app_context():
            from engage.delivery import deliver

            assert current_engage.queue.count >= 1
            deliver(email_id)
        email = _email(app, email_id)
        states = {p.address: p.delivery_state for p in email.recipients}
        assert states["grace@example.com"] is DeliveryState.SENT
        assert states["jürgen@müller.example"] is DeliveryState.FAILED
        assert plain.received == Counter({"grace@example.com": 1})
        assert email.status is EmailStatus.SENT and email.delivery_summary == "partly_failed"
    finally:
        plain.stop()


def test_a_job_that_keeps_failing_ends_its_email_failed_and_is_not_queued_forever(
    fault_app, relay, monkeypatch
):
    import engage.delivery

    email_id = send(fault_app, to="ada@example.com", cc="", bcc="", follow=False)

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("a bug in building messages")

    monkeypatch.setattr(engage.delivery._CopyWriter, "copy", broken)
    for attempt in range(3):
        with fault_app.app_context(), pytest.raises(RuntimeError):
            engage.delivery.deliver(email_id)
        if attempt < 2:
            assert _email(fault_app, email_id).status is EmailStatus.SENDING
    email = _email(fault_app, email_id)
    assert email.status is EmailStatus.FAILED
    (party,) = email.recipients
    assert "stopped after 3 errors" in read(party.delivery_error)
    with fault_app.app_context():
        current_engage.queue.empty()
        sweep()
        assert current_engage.queue.count == 0  # nothing left to queue
    assert relay.received == Counter()
