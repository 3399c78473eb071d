"""Entry for the RQ CLI when running engage from a checkout of this repository.

``rq worker -w worker.EngageWorker`` and ``rq worker -w engage.worker.EngageWorker`` are the same
worker; see :mod:`engage.worker` for how it finds the host app (``FLASK_APP``).
"""

from engage.worker import EngageForkingWorker, EngageWorker, load_host_app

__all__ = ["EngageForkingWorker", "EngageWorker", "load_host_app"]
