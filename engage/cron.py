"""The ``rq cron`` configuration of engage's periodic sweeps.

Run it next to the workers::

    rq cron engage.cron --url redis://127.0.0.1:6379/0

The scheduler only puts jobs on the queue; an :class:`engage.worker.EngageWorker` runs them in
the host app. ``ENGAGE_QUEUE`` (default ``engage``) and ``ENGAGE_SWEEP_SECONDS`` (default 60)
are read from the environment, since ``rq cron`` does not load the host app.
"""

from __future__ import annotations

import os

from rq import cron

from .jobs import sweep

QUEUE = os.environ.get("ENGAGE_QUEUE", "engage")
SWEEP_SECONDS = int(os.environ.get("ENGAGE_SWEEP_SECONDS", "60"))

cron.register(sweep, QUEUE, interval=SWEEP_SECONDS)
