"""The ``rq cron`` configuration of engage's periodic jobs.

Run it next to the workers::

    rq cron engage.cron --url redis://127.0.0.1:6379/0

The scheduler only puts jobs on the queue; an :class:`engage.worker.EngageWorker` runs them in
the host app. ``rq cron`` does not load the host app, so ``ENGAGE_QUEUE`` (default ``engage``),
``ENGAGE_SWEEP_SECONDS`` (default 15) and ``ENGAGE_IMAP_POLL_SECONDS`` (default 60, how often the
reply mailbox is read) come from the environment (:data:`engage.config.CRON_ENVIRONMENT`). The
IMAP poll does nothing in an app without ``ENGAGE_IMAP_URL``.
"""

from __future__ import annotations

import os

from rq import cron

from . import jobs, queueing
from .config import cron_settings

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
