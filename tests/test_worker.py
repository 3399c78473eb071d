"""Workers and the cron scheduler started from the RQ CLI, the way an operator starts them."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from rq.job import Job, JobStatus

from engage import current_engage
from engage.jobs import sweep
from engage.queueing import SWEEP_HEARTBEAT_KEY, last_sweep
from tests.support import ROOT, RQ, drop_host_tables, make_host_app, rq_worker, worker_env


@pytest.fixture
def app(database_url, redis_url, redis_client):
    """The host app as an operator's config has it: no test settings, nobody in it."""
    app = make_host_app(database_url, redis_url)
    yield app
    drop_host_tables(app)


@pytest.mark.parametrize(
    "worker_class", ["engage.worker.EngageWorker", "engage.worker.EngageForkingWorker"]
)
def test_rq_worker_runs_engage_jobs_inside_the_host_app(
    worker_class, app, database_url, redis_url, redis_client
):
    with app.app_context():
        job = current_engage.queue.enqueue(sweep)
    done = subprocess.run(
        rq_worker(redis_url, "--burst", "--with-scheduler", worker_class=worker_class),
        cwd=ROOT,
        env=worker_env(database_url, redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    job = Job.fetch(job.id, connection=redis_client)
    assert job.get_status() == JobStatus.FINISHED, done.stderr
    with app.app_context():
        assert last_sweep() is not None
        assert last_sweep().isoformat() == job.return_value()


def test_rq_cron_puts_the_sweep_on_the_queue_and_a_worker_runs_it(
    app, database_url, redis_url, redis_client
):
    env = worker_env(database_url, redis_url, ENGAGE_SWEEP_SECONDS="1")
    cron = subprocess.Popen(
        [RQ, "cron", "engage.cron", "--url", redis_url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        rq_worker(redis_url, "--with-scheduler", worker_class="worker.EngageWorker"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not redis_client.get(SWEEP_HEARTBEAT_KEY):
            time.sleep(0.2)
        assert redis_client.get(SWEEP_HEARTBEAT_KEY), "no sweep ran within 30 s"
    finally:
        for proc in (cron, worker):
            proc.terminate()
        for proc in (cron, worker):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_missing_host_app_stops_the_worker_with_flasks_own_message(redis_url, tmp_path):
    done = subprocess.run(
        rq_worker(redis_url, "--burst"),
        cwd=tmp_path,
        env={**os.environ, "FLASK_APP": "no_such_module"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no_such_module" in done.stderr + done.stdout
