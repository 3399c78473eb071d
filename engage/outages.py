"""Living through Redis outages in engage's long-running processes.

The worker, its scheduler process and the cron scheduler talk to Redis all the time. When Redis
goes away (a restart, a failover, a network blip), redis-py raises ``ConnectionError`` after a
few quick retries, and RQ's loops give up on it: the worker quits, its scheduler process dies,
``rq cron`` exits.

:func:`wait_through_outages` gives a Redis client a retry policy that never gives up on an
unreachable Redis: a command that cannot reach it tries again at once (a Redis that restarted
closed the old connection, and the next one usually works), then after 1 s, 2 s, 4 s … and at
most every :data:`MAX_WAIT` seconds, until Redis answers. The process logs one line when Redis
becomes unreachable and one when it is back. RQ's code simply carries on where it stopped, so
its loops never see the outage.

Two things end the waiting, so that a process can always stop:

- a stop that arrives while a command waits (RQ's ``StopRequested``, ``KeyboardInterrupt`` or
  ``SystemExit``, raised by a signal handler) makes every command of the process fail at once
  from then on;
- :meth:`Outages.without_waiting` makes the commands inside it fail at once.

Only engage's processes use it. A web request must fail fast, so engage's own client in the host
app (``current_engage.redis``) keeps redis-py's defaults.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry
from rq.exceptions import StopRequested

T = TypeVar("T")

#: What an unreachable Redis looks like to redis-py (a Redis still loading its data after a
#: restart answers ``BusyLoadingError``, which is a ``ConnectionError``).
REDIS_DOWN = (ConnectionError, TimeoutError)
#: The longest wait between two attempts to reach Redis, in seconds: work resumes at most this
#: long after Redis is back, and an attempt every few seconds costs Redis nothing.
MAX_WAIT = 5.0
#: Seconds a new connection may take before the attempt counts as failed (a Redis behind a
#: broken network answers nothing at all, rather than refusing).
CONNECT_TIMEOUT = 5.0
#: What a signal handler raises into a process that is asked to stop.
_STOPS = (StopRequested, KeyboardInterrupt, SystemExit)


class Outages:
    """What one process knows about Redis being away; shared by all its connections."""

    def __init__(self, log: logging.Logger, where: str, max_wait: float = MAX_WAIT) -> None:
        self.log = log
        #: Which Redis, for the log.
        self.where = where
        self.max_wait = max_wait
        #: How many times a command got through after failing: goes up after every outage,
        #: however short, so a process can tell that Redis may have restarted (and lost data).
        self.recoveries = 0
        #: When Redis was found unreachable (``time.monotonic()``), while it still is.
        self.down_since: float | None = None
        #: Set once a stop arrived during an outage: nothing waits any more.
        self.stopping = False
        self._hurried = 0

    @property
    def may_wait(self) -> bool:
        return not self.stopping and not self._hurried

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Inside this block, a command that cannot reach Redis raises at once."""
        self._hurried += 1
        try:
            yield
        finally:
            self._hurried -= 1

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row: 0, 1, 2, 4 … max_wait."""
        if failures <= 1:
            return 0.0
        return min(self.max_wait, 2.0 ** (failures - 2))

    def unreachable(self, error: Exception) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.log.warning(
                "Redis at %s is unreachable (%s); process %d waits for it, trying again at "
                "least every %g s",
                self.where,
                error,
                os.getpid(),
                self.max_wait,
            )

    def reachable(self) -> None:
        self.recoveries += 1
        if self.down_since is not None:
            self.log.warning(
                "Redis at %s is back after %.1f s; process %d carries on",
                self.where,
                time.monotonic() - self.down_since,
                os.getpid(),
            )
            self.down_since = None


class WaitingRetry(Retry):
    """redis-py's retry policy, made to retry an unreachable Redis until it is back."""

    def __init__(self, outages: Outages) -> None:
        # No redis-py backoff: the delays are the Outages'. ``-1`` retries forever.
        super().__init__(NoBackoff(), -1, REDIS_DOWN)
        self.outages = outages

    def __deepcopy__(self, memo: dict[int, Any]) -> WaitingRetry:
        # redis-py gives each connection a deep copy of the policy; every copy must report to
        # the same Outages, so that the process logs an outage once, whichever connection met it.
        copy = WaitingRetry(self.outages)
        copy._supported_errors = self._supported_errors
        return copy

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures = 0
        try:
            while True:
                try:
                    result = do()
                except self._supported_errors as error:
                    if is_retryable is not None and not is_retryable(error):
                        raise
                    failures += 1
                    if with_failure_count:
                        fail(error, failures)
                    else:
                        fail(error)
                    if not self.outages.may_wait:
                        raise
                    if failures > 1:
                        self.outages.unreachable(error)
                    time.sleep(self.outages.delay(failures))
                    continue
                if failures:
                    self.outages.reachable()
                return result
        except _STOPS:
            if failures:
                self.outages.stopping = True
            raise


def wait_through_outages(client: Redis, log: logging.Logger) -> Outages:
    """Make every command of ``client`` wait for an unreachable Redis instead of raising.

    Applies to the client's existing connections and to every connection its pool opens later,
    in this process or in a child that rebuilds the pool from its settings (RQ's scheduler
    process does). Returns the :class:`Outages` that its connections report to.
    """
    settings = client.connection_pool.connection_kwargs
    where = settings.get("path") or (
        f"{settings.get('host', 'localhost')}:{settings.get('port', 6379)}/{settings.get('db', 0)}"
    )
    outages = Outages(log, str(where))
    settings["retry_on_error"] = list(REDIS_DOWN)
    if not settings.get("socket_connect_timeout"):
        settings["socket_connect_timeout"] = CONNECT_TIMEOUT
    client.set_retry(WaitingRetry(outages))
    return outages


class PatientRedis(Redis):
    """A Redis client whose commands wait through outages, for RQ's ``--connection-class``.

    ``rq cron engage.cron --connection-class engage.outages.PatientRedis`` is a cron scheduler
    that outlives an unreachable Redis, like ``python -m engage.cron``.
    """

    #: The logger outages are reported to: the cron scheduler's.
    log_name = "rq.cron"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outages = wait_through_outages(self, logging.getLogger(self.log_name))
