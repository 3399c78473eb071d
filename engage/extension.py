"""The :class:`Engage` Flask extension: the one object a host creates.

It sits on top of everything: :meth:`Engage.init_app` applies the config defaults and registers
the web layer (:mod:`engage.web`) on the host's app. The rest of engage reaches the host through
:data:`engage.context.current_engage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask

from .config import DEFAULTS
from .context import EngageCore, UserLoader, _State
from .database_store import DatabaseStore
from .records import RecordAdapter
from .storage import AttachmentStore, LocalFolderStore
from .web import register

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy


class Engage(EngageCore):
    """Email engagement for a Flask CRM.

    Create it with the host's Flask-SQLAlchemy object and record adapter, then call
    :meth:`init_app` (or pass ``app``)::

        engage = Engage(db=db, records=MyRecords())
        engage.init_app(app)

    :param app: the Flask app to set up at once, or ``None`` to call :meth:`init_app` later.
    :param db: the host's :class:`flask_sqlalchemy.SQLAlchemy`; engage's tables use its session
        and default engine.
    :param records: the host's :class:`engage.RecordAdapter`.
    :param current_user: a callable returning the signed-in :class:`engage.EngageUser` or
        ``None``; defaults to :func:`flask_login_user`.
    :param attachment_store: where attachment bytes go; when ``None``, the store that
        ``ENGAGE_ATTACHMENT_STORE`` names: a local folder (``ENGAGE_ATTACHMENT_DIR``, the
        default) or the host's database (:class:`engage.DatabaseStore`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy,
        records: RecordAdapter,
        current_user: UserLoader | None = None,
        attachment_store: AttachmentStore | None = None,
    ) -> None:
        super().__init__(
            db=db, records=records, current_user=current_user, attachment_store=attachment_store
        )
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register engage on ``app``: config defaults, the blueprint, translations.

        :raises RuntimeError: when engage is already registered on ``app``.
        """
        if "engage" in app.extensions:
            raise RuntimeError(
                "engage is already registered on this application; create one Engage per app "
                "and call init_app once."
            )
        if "sqlalchemy" not in app.extensions:
            raise RuntimeError(
                "engage uses the host's Flask-SQLAlchemy: call db.init_app(app) before "
                "engage.init_app(app)."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)

        store = self._attachment_store
        if store is None:
            store = _store_from_config(app)
        app.extensions["engage"] = _State(self, store)

        register(app)


#: The stores ``ENGAGE_ATTACHMENT_STORE`` names.
ATTACHMENT_STORES = ("folder", "database")


def _store_from_config(app: Flask) -> AttachmentStore:
    """The attachment store ``ENGAGE_ATTACHMENT_STORE`` asks for.

    :raises ValueError: for a name that is not one of :data:`ATTACHMENT_STORES`.
    """
    kind = str(app.config["ENGAGE_ATTACHMENT_STORE"] or "folder").strip().lower()
    if kind == "database":
        return DatabaseStore()
    if kind != "folder":
        raise ValueError(
            f"ENGAGE_ATTACHMENT_STORE={kind!r} is unknown: use one of {ATTACHMENT_STORES}, "
            "or pass your own store as Engage(attachment_store=...)"
        )
    folder = app.config["ENGAGE_ATTACHMENT_DIR"] or (Path(app.instance_path) / "engage-attachments")
    return LocalFolderStore(folder)
