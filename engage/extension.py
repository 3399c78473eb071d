"""The :class:`Engage` Flask extension: the one object a host creates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app, g
from werkzeug.local import LocalProxy

from . import models
from .config import DEFAULTS
from .records import EngageUser, RecordAdapter
from .storage import AttachmentStore, LocalFolderStore

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy
    from redis import Redis
    from rq import Queue
    from sqlalchemy.orm import Session

UserLoader = Callable[[], EngageUser | None]


def flask_login_user() -> EngageUser | None:
    """The default user loader: Flask-Login's ``current_user``, read through its attributes.

    It reads ``get_id()``, ``name`` (else ``email``), ``email``, ``engage_roles`` (an iterable of
    role names), and optionally ``engage_team`` and ``timezone``. A host whose user model is
    shaped differently passes its own ``current_user`` callable to :class:`Engage`.
    """
    try:
        from flask_login import current_user
    except ImportError as exc:  # pragma: no cover - depends on the host's installation
        raise RuntimeError(
            "engage needs to know the signed-in user: install Flask-Login or pass "
            "Engage(current_user=...) returning an engage.EngageUser."
        ) from exc
    if not current_user or not getattr(current_user, "is_authenticated", False):
        return None
    return user_from_attributes(current_user)


def user_from_attributes(user: Any) -> EngageUser:
    """Build an :class:`EngageUser` from a host user object's conventional attributes."""
    get_id = getattr(user, "get_id", None)
    ident = get_id() if callable(get_id) else user.id
    email = getattr(user, "email", "") or ""
    return EngageUser(
        id=str(ident),
        name=getattr(user, "name", None) or email,
        email=email,
        roles=frozenset(getattr(user, "engage_roles", ()) or ()),
        team=getattr(user, "engage_team", None),
        timezone=getattr(user, "timezone", None),
    )


class _State:
    """What engage keeps per application (the extension object may serve several apps)."""

    def __init__(self, engage: Engage, store: AttachmentStore) -> None:
        self.engage = engage
        self.store = store
        self.redis: Redis | None = None


class Engage:
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
    :param attachment_store: where attachment bytes go; defaults to a local folder
        (``ENGAGE_ATTACHMENT_DIR``).
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
        if not isinstance(records, RecordAdapter):
            raise TypeError(
                "records must implement engage.RecordAdapter (get, search, find_by_email)"
            )
        self.db = db
        self.records = records
        self._user_loader: UserLoader = current_user or flask_login_user
        self._attachment_store = attachment_store
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
            folder = app.config["ENGAGE_ATTACHMENT_DIR"] or (
                Path(app.instance_path) / "engage-attachments"
            )
            store = LocalFolderStore(folder)
        app.extensions["engage"] = _State(self, store)

        if "babel" not in app.extensions:
            from flask_babel import Babel

            Babel(app)

        from .fastpath import PixelFastPath
        from .views import blueprint

        app.register_blueprint(blueprint, url_prefix=app.config["ENGAGE_URL_PREFIX"])
        # The open pixel is answered below Flask (see engage.fastpath); the blueprint's route
        # stays for url_for and for apps that bypass app.wsgi_app.
        app.wsgi_app = PixelFastPath(app.wsgi_app, app)  # type: ignore[method-assign]

    # -- what the rest of engage uses ------------------------------------------------------

    @property
    def _state(self) -> _State:
        try:
            return current_app.extensions["engage"]
        except KeyError:
            raise RuntimeError("engage is not registered on the current app") from None

    def user_loader(self, loader: UserLoader) -> UserLoader:
        """Decorator to set the callable that returns the signed-in :class:`EngageUser`."""
        self._user_loader = loader
        return loader

    @property
    def user(self) -> EngageUser | None:
        """The signed-in user, loaded once per request."""
        if "engage_user" not in g:
            g.engage_user = self._user_loader()
        return g.engage_user

    @property
    def store(self) -> AttachmentStore:
        """The attachment store of the current app."""
        return self._state.store

    @property
    def redis(self) -> Redis:
        """A Redis client for ``ENGAGE_REDIS_URL``, one per app."""
        state = self._state
        if state.redis is None:
            from redis import Redis

            url = current_app.config["ENGAGE_REDIS_URL"] or "redis://127.0.0.1:6379/0"
            state.redis = Redis.from_url(url)
        return state.redis

    @property
    def session(self) -> Session:
        """The host's database session, which engage's queries and writes go through.

        It is Flask-SQLAlchemy's scoped session (``db.session``); it stands for the request's
        or job's :class:`~sqlalchemy.orm.Session` and is typed as one.
        """
        return cast("Session", self.db.session)

    @property
    def queue(self) -> Queue:
        """The RQ queue engage's jobs go to (``ENGAGE_QUEUE``)."""
        from rq import Queue

        return Queue(current_app.config["ENGAGE_QUEUE"], connection=self.redis)

    def create_all(self) -> None:
        """Create engage's tables on the host's default engine (for apps without migrations)."""
        models.metadata.create_all(self.db.engine)

    def drop_all(self) -> None:
        """Drop engage's tables; meant for tests."""
        models.metadata.drop_all(self.db.engine)


def _current_engage() -> Engage:
    try:
        return current_app.extensions["engage"].engage
    except KeyError:
        raise RuntimeError(
            "engage is not registered on the current app: call Engage.init_app(app)"
        ) from None


#: The :class:`Engage` of the current application.
current_engage: Engage = LocalProxy(_current_engage)  # type: ignore[assignment]
