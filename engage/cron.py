"""The ``rq cron`` configuration of engage's periodic sweeps.

Run it next to the workers::

    rq cron engage.cron --url redis://127.0.0.1:6379/0

The scheduler only puts jobs on the queue; an :class:`engage.worker.EngageWorker` runs them in
the host app. ``ENGAGE_QUEUE`` (default ``engage``), ``ENGAGE_SWEEP_SECONDS`` (default 60) and
``ENGAGE_IMAP_POLL_SECONDS`` (default 60, how often the reply mailbox is read) are read from the
environment, since ``rq cron`` does not load the host app. The IMAP poll does nothing in an app
without ``ENGAGE_IMAP_URL``.
"""

from __future__ import annotations

import os

from rq import cron

from .jobs import sweep
from .replies import poll_imap

QUEUE = os.environ.get("ENGAGE_QUEUE", "engage")
SWEEP_SECONDS = int(os.environ.get("ENGAGE_SWEEP_SECONDS", "60"))
IMAP_POLL_SECONDS = int(os.environ.get("ENGAGE_IMAP_POLL_SECONDS", "60"))

cron.register(sweep, QUEUE, interval=SWEEP_SECONDS)
cron.register(poll_imap, QUEUE, interval=IMAP_POLL_SECONDS)
