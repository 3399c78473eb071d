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
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask.cli import ScriptInfo
from rq.worker import SimpleWorker, Worker


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


class EngageWorker(_InAppContext, SimpleWorker):
    """The recommended worker: runs each job in its own process, inside the host app."""


class EngageForkingWorker(_InAppContext, Worker):
    """RQ's classic worker: each job runs in a fresh child process, inside the host app."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._parent_pid = os.getpid()
        super().__init__(*args, **kwargs)
