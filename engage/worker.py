"""RQ workers that run engage's jobs inside the host application.

Start one with the RQ CLI, naming the host app the way ``flask --app`` does (``FLASK_APP``)::

    FLASK_APP="myapp:create_app()" rq worker --with-scheduler \\
        --worker-class engage.worker.EngageWorker --url redis://127.0.0.1:6379/0 engage

The app is loaded once, when the worker starts; every job then runs inside an application
context of it, so jobs reach the host's database, config and record adapter like a view does.

:class:`EngageWorker` runs jobs in its own process rather than forking a child per job. engage's
jobs are short, take ids, commit their own work and are safe to run twice, so the isolation a
fork buys is worth little to them, while its price is high: a fresh child must reconnect to the
database and recompile every SQL statement for each job. Measured with
``python -m benchmarks.sending``, the in-process worker sends four to six times as many messages
per second. Job timeouts still apply (RQ enforces them with a signal in either worker). Use
:class:`EngageForkingWorker` where a job must not be able to take the worker down with it.

Both live through Redis outages of any length (:class:`_OutlastsRedis`): while Redis is
unreachable they log it once and wait, then carry on, with their scheduler process.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from types import TracebackType
from typing import Any

from flask import Flask
from flask.cli import ScriptInfo
from redis.client import Pipeline
from rq import worker_registration
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import BaseWorker, SimpleWorker, Worker

from .outages import REDIS_DOWN, Outages, wait_through_outages


def load_host_app(import_path: str | None = None) -> Flask:
    """Load the host app as ``flask --app`` would: from ``import_path``, else ``FLASK_APP``,
    else ``wsgi.py`` or ``app.py`` in the current folder.
    """
    path = import_path or os.environ.get("FLASK_APP")
    return ScriptInfo(app_import_path=path).load_app()


class _InAppContext:
    """Mixin: load the host app at start-up and perform each job inside its app context."""

    flask_app: Flask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flask_app = load_host_app()

    def perform_job(self, *args: Any, **kwargs: Any) -> bool:
        with self.flask_app.app_context():
            self._forget_inherited_connections()
            return super().perform_job(*args, **kwargs)  # type: ignore[misc]

    def _forget_inherited_connections(self) -> None:
        # A forked work horse inherits the parent's pooled database connections; sharing a
        # socket between processes corrupts it, so the horse drops them without closing them.
        if os.getpid() == getattr(self, "_parent_pid", os.getpid()):
            return
        sqlalchemy = self.flask_app.extensions.get("sqlalchemy")
        if sqlalchemy is not None:
            for engine in sqlalchemy.engines.values():
                engine.dispose(close=False)


class _OutlastsRedis(BaseWorker):
    """Mixin: keep working through a Redis outage of any length instead of exiting.

    RQ's worker gives up on an unreachable Redis in many places: the work loop quits on any
    error outside the dequeue, the end of a job (its heartbeat, its result) raises out of the
    loop, a forking worker's heartbeats raise while it watches its work horse, and the scheduler
    process dies on its first error and is only started again by the maintenance run, every ten
    minutes. Rather than catch each of these, :meth:`bootstrap` gives the worker's connection a
    retry policy that waits for Redis (:mod:`engage.outages`): every one of those commands
    waits, the worker logs one line, and RQ's code carries on when Redis is back. The scheduler
    process rebuilds its connection from the same settings, so it waits too and never dies of an
    outage. The other overrides deal with what waiting changes, each said in its docstring.
    """

    outages: Outages | None = None
    #: Seconds a stopping worker gives its scheduler process before killing it.
    scheduler_stop_timeout = 10.0
    #: The longest an idle worker waits for a job before it goes round its loop again.
    idle_loop_seconds = 30
    #: The fewest seconds between two heartbeats the work loop sends on its own (its key lives
    #: for RQ's worker TTL, minutes).
    heartbeat_interval = 1.0
    _last_own_heartbeat = -math.inf
    _recoveries_seen = 0

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        """Make the connection wait through outages, before the work loop or the scheduler
        process (forked from here, with a copy of the connection's settings) uses it."""
        self.outages = wait_through_outages(self.connection, self.log)
        super().bootstrap(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        """At most :attr:`idle_loop_seconds` (RQ: its worker TTL less 15 s, 405 s by default).

        What the loop checks between two waits for a job (the scheduler process, the worker's
        registration after an outage, ``rq suspend``) then happens within half a minute."""
        return min(super().dequeue_timeout, self.idle_loop_seconds)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """At most every :attr:`heartbeat_interval` seconds when RQ's loop asks for one on its
        own. Also, each time round the work loop: put the worker back where monitoring finds it
        after an outage, and start the scheduler process again if it died."""
        if pipeline is None and timeout is None:
            # RQ's loop sends three of these per job, three round trips each: for engage's
            # short jobs that is a good part of a job's cost, for a key that lives for minutes.
            beat = time.monotonic()
            if beat - self._last_own_heartbeat >= self.heartbeat_interval:
                super().heartbeat(timeout, pipeline)
                self._last_own_heartbeat = beat
        else:
            super().heartbeat(timeout, pipeline)
        if pipeline is None and not self.is_horse:
            self._register_again_after_an_outage()
            self._keep_the_scheduler_alive()

    def _recoveries(self) -> int:
        return self.outages.recoveries if self.outages is not None else 0

    def _register_again_after_an_outage(self) -> None:
        # A Redis that restarted without its data forgot the worker: without this, `rq info`
        # and engage's settings page (Worker.count) would show no worker until it restarts.
        if self._recoveries() == self._recoveries_seen:
            return
        self._recoveries_seen = self._recoveries()
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping={**self.serialize(), "state": self.get_state()})
            pipeline.expire(self.key, self.worker_ttl + 60)
            worker_registration.register(self, pipeline)
            pipeline.execute()

    def _keep_the_scheduler_alive(self) -> None:
        # RQ looks at its scheduler process only in the maintenance run, every ten minutes.
        # An outage no longer kills it, but anything else might (a crash, the OOM killer).
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or process.is_alive():
            return
        self.log.warning(
            "Worker %s: the scheduler process exited (code %s); starting it again",
            self.name,
            process.exitcode,
        )
        assert self.scheduler is not None
        # Without the lock (another worker's scheduler took it), RQ's maintenance run tries
        # again later, as it does for a scheduler that never started.
        self.scheduler._process = None
        self.scheduler.acquire_locks(auto_start=True)

    def stop_scheduler(self) -> None:
        """Stop the scheduler process, killing it if it does not stop in time.

        RQ waits for it without a limit; a scheduler waiting for an unreachable Redis would
        hold up the worker's shutdown for as long as the outage lasts. It gets
        :attr:`scheduler_stop_timeout` seconds, or one while Redis is unreachable."""
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or not process.pid:
            return
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGTERM)
        # Without Redis it cannot release its lock anyway (the lock expires by itself).
        timeout = self.scheduler_stop_timeout if self._redis_answers() else 1.0
        process.join(timeout)
        if process.is_alive():
            self.log.warning(
                "Worker %s: the scheduler process did not stop within %g s; killing it",
                self.name,
                timeout,
            )
            process.kill()
            process.join()

    def handle_warm_shutdown_request(self) -> None:
        """From now on, a command that cannot reach Redis fails instead of waiting for it: a
        worker asked to stop must not wait for a Redis that may never come back."""
        if self.outages is not None:
            self.outages.stopping = True
        super().handle_warm_shutdown_request()

    def set_shutdown_requested_date(self) -> None:
        """Note the warm shutdown request in Redis if it can, else go on without.

        RQ calls this from the signal handler while a job runs: an error here would land in the
        job, and the date is only shown by monitoring."""
        try:
            super().set_shutdown_requested_date()
        except REDIS_DOWN as exc:
            self.log.warning("Worker %s: could not note the shutdown request: %s", self.name, exc)

    def teardown(self) -> None:
        """Leave quietly when Redis is unreachable at the end; the worker's key expires."""
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            self.log.warning(
                "Worker %s: Redis is unreachable, so it is not told that the worker stops: %s",
                self.name,
                exc,
            )

    def _finalize_success(
        self, job: Job, queue: Queue, execution: Execution, return_value: Any
    ) -> None:
        """Record the job's success, unless Redis lost the job while it ran (see below)."""
        if not self._lost_with_redis(job, execution):
            super()._finalize_success(job, queue, execution, return_value)

    def _finalize_failure(
        self,
        job: Job,
        queue: Queue,
        execution: Execution,
        exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None],
    ) -> None:
        """Record the job's failure, unless Redis lost the job while it ran (see below)."""
        if not self._lost_with_redis(job, execution):
            super()._finalize_failure(job, queue, execution, exc_info)
        else:
            self.handle_exception(job, *exc_info)

    def _lost_with_redis(self, job: Job, execution: Execution) -> bool:
        # A job that ends during an outage is recorded when Redis is back (the commands wait).
        # But a Redis that restarted without its data has lost the job: recording its result
        # would only leave a fragment of a job behind. Its effect is safe either way: engage's
        # jobs keep their own record in the database, and the sweep queues again what is due.
        if self.connection.exists(job.key):
            return False
        self.log.warning(
            "Worker %s: job %s is no longer in Redis (did Redis restart without its data?); "
            "its outcome is not recorded in RQ",
            self.name,
            job.id,
        )
        self.executions.pop(execution.id, None)
        return True

    def _redis_answers(self) -> bool:
        try:
            with contextlib.ExitStack() as stack:
                if self.outages is not None:
                    stack.enter_context(self.outages.without_waiting())
                return bool(self.connection.ping())
        except REDIS_DOWN:
            return False


class EngageWorker(_InAppContext, _OutlastsRedis, SimpleWorker):
    """The recommended worker: runs each job in its own process, inside the host app."""


class EngageForkingWorker(_InAppContext, _OutlastsRedis, Worker):
    """RQ's classic worker: each job runs in a fresh child process, inside the host app."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._parent_pid = os.getpid()
        super().__init__(*args, **kwargs)
