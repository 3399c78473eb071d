"""The cron configuration of engage's periodic jobs, and a cron scheduler that outlives Redis.

Run one next to the workers (and only one: two would queue every job twice)::

    python -m engage.cron --url redis://127.0.0.1:6379/0

That is ``rq cron engage.cron --url …``, which still works, made to live through Redis outages:
while Redis is unreachable it logs it once and waits, then carries on (see :mod:`engage.outages`
and :func:`main`). ``rq cron engage.cron --connection-class engage.outages.PatientRedis`` waits
for Redis the same way.

The scheduler only puts jobs on the queue; an :class:`engage.worker.EngageWorker` runs them in
the host app. The cron scheduler does not load the host app, so ``ENGAGE_QUEUE`` (default
``engage``), ``ENGAGE_SWEEP_SECONDS`` (default 15) and ``ENGAGE_IMAP_POLL_SECONDS`` (default 60,
how often the reply mailbox is read) come from the environment
(:data:`engage.config.CRON_ENVIRONMENT`). The IMAP poll does nothing in an app without
``ENGAGE_IMAP_URL``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError
from rq import cron
from rq.exceptions import StopRequested

from . import jobs, queueing
from .config import cron_settings
from .outages import MAX_WAIT, Outages, wait_through_outages

SETTINGS = cron_settings(os.environ)
QUEUE = SETTINGS["ENGAGE_QUEUE"]

cron.register(
    jobs.sweep,
    QUEUE,
    interval=int(SETTINGS["ENGAGE_SWEEP_SECONDS"]),
    job_timeout=queueing.SWEEP.timeout,
)
cron.register(
    jobs.poll_imap,
    QUEUE,
    interval=int(SETTINGS["ENGAGE_IMAP_POLL_SECONDS"]),
    job_timeout=queueing.POLL_IMAP.timeout,
)

#: This configuration, by the name ``rq cron`` takes (``__name__`` is ``__main__`` under -m).
CONFIG = "engage.cron"


class _CronScheduler(cron.CronScheduler):
    """RQ's cron scheduler, which stops waiting for Redis once it is asked to stop."""

    outages: Outages | None = None

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        # Without this, a stop that comes while Redis is away would wait for Redis to come
        # back before the scheduler could say goodbye to it.
        if self.outages is not None:
            self.outages.stopping = True
        super()._request_stop(signum, frame)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m engage.cron``: RQ's cron scheduler on this configuration, outliving Redis.

    Its commands wait for an unreachable Redis (:func:`engage.outages.wait_through_outages`).
    Should Redis refuse its work in another way (a full disk refuses writes, a replica is
    read-only), the scheduler starts again after a pause instead of exiting. SIGTERM or Ctrl+C
    stops it, also in the middle of an outage. Returns the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m engage.cron",
        description="Put engage's periodic jobs on the queue; wait through Redis outages.",
    )
    parser.add_argument(
        "--url",
        "-u",
        default=os.environ.get("RQ_REDIS_URL") or "redis://127.0.0.1:6379/0",
        help="the Redis of the queue (default: $RQ_REDIS_URL, else redis://127.0.0.1:6379/0)",
    )
    parser.add_argument(
        "--logging-level",
        "-l",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        type=str.upper,
    )
    args = parser.parse_args(argv)

    connection = Redis.from_url(args.url)
    scheduler = _CronScheduler(connection=connection, logging_level=args.logging_level)
    outages = scheduler.outages = wait_through_outages(connection, scheduler.log)
    scheduler.load_config_from_file(CONFIG)
    pause = 1.0
    while True:
        started = time.monotonic()
        try:
            scheduler.start()  # returns when a signal stops it
            return 0
        except (StopRequested, KeyboardInterrupt):  # stopped before it had started
            return 0
        except RedisError as exc:
            if outages.stopping:
                scheduler.log.warning(
                    "CronScheduler %s: stopped while Redis is unreachable (%s)", scheduler.name, exc
                )
                return 0
            if time.monotonic() - started > 10 * MAX_WAIT:
                pause = 1.0
            scheduler.log.error(
                "CronScheduler %s: Redis refused its work (%s); starting again in %g s",
                scheduler.name,
                exc,
                pause,
            )
        try:
            time.sleep(pause)
        except (StopRequested, KeyboardInterrupt):
            return 0
        pause = min(pause * 2, MAX_WAIT)


if __name__ == "__main__":
    sys.exit(main())
