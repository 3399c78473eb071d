"""The worker, its scheduler and the cron scheduler live through Redis going away.

Each test runs its own redis-server on a free port, starts the processes the way an operator
does (``rq worker``, ``python -m engage.cron``, ``rq cron``), takes Redis away for a few seconds
and brings it back on the same port: empty, as after a crash without persistence, or with its
data, as after a restart of a Redis that persists. The times they take to recover are printed
(``pytest -s``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus

from engage.queueing import POLL_IMAP, SWEEP_HEARTBEAT_KEY
from tests import support
from tests.support import (
    ROOT,
    RQ,
    drop_host_tables,
    make_host_app,
    rq_worker,
    worker_env,
)

#: How long Redis stays away in these tests, in seconds.
OUTAGE = 6


class RedisServer(support.RedisServer):
    """The tests' private redis-server, which these tests also crash and stop with its data
    saved; :meth:`start` loads what :meth:`shutdown_saving` left, else it is empty."""

    def kill(self) -> None:
        """Crash it: what it held is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def shutdown_saving(self) -> None:
        """Stop it after it wrote its data to disk, for the next :meth:`start` to load."""
        assert self.proc is not None
        try:
            self.client().shutdown(save=True)
        except redis.ConnectionError:
            pass  # it closes the connection as it goes
        self.proc.wait(10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` is true; fails the test after ``timeout`` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")  # started
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
def host_app(database_url: str, redis_server: RedisServer):
    """The host app on the test's own Redis, its tables created (the workers use them)."""
    app = make_host_app(database_url, redis_server.url)
    yield app
    drop_host_tables(app)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start processes with their output in log files; stop them all at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def run(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        process.log_path = tmp_path / f"{name}.log"  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_of(process: subprocess.Popen[bytes]) -> str:
    return process.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def assert_alive(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        assert process.poll() is None, f"{process.args} exited:\n{log_of(process)}"


def seconds_until(
    conditions: dict[str, Callable[[], Any]], since: float, timeout: float
) -> dict[str, float]:
    """For each condition, the seconds from ``since`` until it first held."""
    seen: dict[str, float] = {}
    while len(seen) < len(conditions):
        for name, condition in conditions.items():
            if name not in seen and condition():
                seen[name] = time.monotonic() - since
        if time.monotonic() - since > timeout:
            pytest.fail(f"not within {timeout} s: {sorted(set(conditions) - set(seen))}")
        time.sleep(0.05)
    return seen


def report(seconds: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())


def finished(queue: Queue, job_id: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return Job.fetch(job_id, connection=queue.connection).get_status() == (
                JobStatus.FINISHED
            )
        except Exception:
            return False

    return check


def started_job(queue: Queue, job_id: str) -> Callable[[], bool]:
    return lambda: (
        Job.fetch(job_id, connection=queue.connection).get_status() == (JobStatus.STARTED)
    )


def cron_scheduler_pids(client: redis.Redis) -> set[int]:
    """The processes of the cron schedulers that sent a heartbeat to this Redis."""
    from rq import cron_scheduler_registry

    names = client.zrange(cron_scheduler_registry.get_registry_key(), 0, -1)
    return {int(name.decode().split(":")[-2]) for name in names}


def test_worker_scheduler_and_cron_carry_on_after_redis_comes_back_empty(
    host_app, database_url, redis_server, start
):
    env = worker_env(database_url, redis_server.url, ENGAGE_SWEEP_SECONDS="1")
    worker = start("worker", rq_worker(redis_server.url, "--with-scheduler"), env)
    cron = start("cron", [sys.executable, "-m", "engage.cron", "--url", redis_server.url], env)
    rq_cron = start(
        "rq-cron",
        [
            RQ,
            "cron",
            "engage.cron",
            "--connection-class",
            "engage.outages.PatientRedis",
            "--url",
            redis_server.url,
        ],
        env,
    )
    client = redis_server.client()
    queue = Queue("engage", connection=client)
    wait_for(lambda: client.get(SWEEP_HEARTBEAT_KEY), 30, "sweep before the outage")
    # A job that runs into the outage and ends while Redis is away.
    running = queue.enqueue("time.sleep", 3)
    wait_for(started_job(queue, running.id), 10, "start of the long job")

    redis_server.kill()
    time.sleep(OUTAGE)
    assert_alive(worker, cron, rq_cron)
    redis_server.start()
    back = time.monotonic()

    after = queue.enqueue(POLL_IMAP.path)
    scheduled = queue.enqueue_in(timedelta(seconds=2), POLL_IMAP.path)
    seconds = seconds_until(
        {
            "a job queued after the outage": finished(queue, after.id),
            "the sweep": lambda: client.get(SWEEP_HEARTBEAT_KEY),
            "a job scheduled 2 s ahead": finished(queue, scheduled.id),
        },
        since=back,
        timeout=15,
    )
    wait_for(lambda: Worker.count(queue=queue) == 1, 10, "worker registered again")
    wait_for(
        lambda: cron_scheduler_pids(client) == {cron.pid, rq_cron.pid},
        10,
        "heartbeat of both cron schedulers",
    )
    assert_alive(worker, cron, rq_cron)
    assert "is no longer in Redis" in log_of(worker)
    assert log_of(worker).count("Traceback") == 0, log_of(worker)
    print("\nafter Redis came back empty, it took", report(seconds))

    rq_cron.terminate()
    assert rq_cron.wait(10) == 0, log_of(rq_cron)

    # Stopped while Redis is away, the worker and engage's cron go at once and say why.
    redis_server.kill()
    time.sleep(1)
    stopping = time.monotonic()
    for process in (worker, cron):
        process.send_signal(signal.SIGTERM)
    assert cron.wait(10) == 0, log_of(cron)
    assert worker.wait(10) == 0, log_of(worker)
    print(f"stopped during an outage in {time.monotonic() - stopping:.1f} s")
    assert "stopped while Redis is unreachable" in log_of(cron)
    assert "Redis is unreachable, so it is not told that the worker stops" in log_of(worker)


def test_engage_cron_starts_again_when_redis_refuses_its_writes(redis_server, start):
    # Redis answers, but refuses writes (as it does with a full disk): not an outage to wait
    # through, so the scheduler fails, and engage's cron starts it again after a pause.
    env = {**os.environ, "ENGAGE_SWEEP_SECONDS": "1"}
    cron = start("cron", [sys.executable, "-m", "engage.cron", "--url", redis_server.url], env)
    client = redis_server.client()
    queue = Queue("engage", connection=client)
    wait_for(lambda: len(queue) > 0, 30, "sweep queued")

    client.config_set("min-replicas-to-write", 1)
    wait_for(lambda: "Redis refused its work" in log_of(cron), 10, "refusal in the log")
    queued = len(queue)
    client.config_set("min-replicas-to-write", 0)

    wait_for(lambda: len(queue) > queued, 10, "sweep queued after the refusals")
    assert_alive(cron)


@pytest.mark.parametrize(
    "worker_class", ["engage.worker.EngageWorker", "engage.worker.EngageForkingWorker"]
)
def test_a_job_that_ends_while_redis_is_away_is_recorded_when_it_is_back(
    worker_class, host_app, database_url, redis_server, start
):
    env = worker_env(database_url, redis_server.url)
    worker = start("worker", rq_worker(redis_server.url, worker_class=worker_class), env)
    queue = Queue("engage", connection=redis_server.client())
    job = queue.enqueue("time.sleep", 3)
    wait_for(started_job(queue, job.id), 30, "start of the job")

    redis_server.shutdown_saving()
    time.sleep(OUTAGE)  # the job ends meanwhile
    assert_alive(worker)
    redis_server.start()

    recorded = wait_for(finished(queue, job.id), 15, "job recorded as finished")
    after = queue.enqueue(POLL_IMAP.path)
    runs = wait_for(finished(queue, after.id), 15, "job queued after the outage")
    assert_alive(worker)
    # One line per process that met the outage (a forking worker's work horse is another one).
    waiting = re.findall(r"is unreachable .*; process (\d+) waits", log_of(worker))
    assert waiting and len(waiting) == len(set(waiting)), log_of(worker)
    print(
        f"\n{worker_class}: the job was recorded {recorded:.1f} s after Redis came back, "
        f"a new job ran in {runs:.1f} s"
    )


def scheduler_pids(client: redis.Redis) -> set[int]:
    """The processes of the RQ schedulers registered in this Redis."""
    return {int(client.hget(key, "pid")) for key in client.scan_iter("rq:scheduler:*")}


def test_a_scheduler_process_that_dies_is_started_again_when_the_worker_comes_round(
    host_app, database_url, redis_server, start
):
    env = worker_env(database_url, redis_server.url)
    worker = start("worker", rq_worker(redis_server.url, "--with-scheduler"), env)
    client = redis_server.client()
    queue = Queue("engage", connection=client)
    wait_for(lambda: scheduler_pids(client), 30, "scheduler process")
    (first,) = scheduler_pids(client)

    os.kill(first, signal.SIGKILL)
    queue.enqueue(POLL_IMAP.path)  # the worker goes round its loop after a job
    scheduled = queue.enqueue_in(timedelta(seconds=1), POLL_IMAP.path)

    runs = wait_for(finished(queue, scheduled.id), 10, "scheduled job after the scheduler died")
    assert_alive(worker)
    assert "the scheduler process exited (code -9); starting it again" in log_of(worker)
    assert scheduler_pids(client) - {first}
    print(f"\na job scheduled 1 s ahead ran {runs:.1f} s after the scheduler process was killed")
