"""engage of the current application: its database session, queue, Redis, records and user.

Everything below the web layer reaches the host's pieces through :data:`current_engage`. The
extension a host creates (:class:`engage.extension.Engage`) is an :class:`EngageCore` that also
knows how to register itself on an app; keeping the two apart lets the domain use the current
engage without importing the web layer that ``init_app`` registers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from flask import current_app, g
from werkzeug.local import LocalProxy

from . import models
from .mapping import Spec, optional_text, read, roles_of, text
from .records import EngageUser, RecordAdapter
from .storage import AttachmentStore

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy
    from redis import Redis
    from rq import Queue
    from sqlalchemy.orm import Session

UserLoader = Callable[[], EngageUser | None]


@dataclass(frozen=True)
class UserMapping:
    """How the host's user object maps to an :class:`EngageUser`: a user loader by declaration.

    Each field names where a value is on the user (an attribute, a dotted path or a callable,
    see :mod:`engage.mapping`). Called, it reads Flask-Login's ``current_user``; pass it as
    ``Engage(current_user=UserMapping(...))``::

        UserMapping(name="username", roles="role",
                    role_map={"admin": "admin", "manager": "sales_manager", "staff": "salesperson"})

    :param name: the display name used in the From header (default ``name``; the email when
        empty).
    :param email: the address emails are sent from (default ``email``).
    :param roles: the user's role value, or an iterable of them (default ``engage_roles``).
    :param role_map: the host's role values to engage's role names (``salesperson``,
        ``sales_manager``, ``admin``); a value may map to a list of them, and a value it lacks
        gives no role. Without it the values are engage's role names themselves.
    :param team: the sales team, which a sales manager sees (default ``engage_team``).
    :param timezone: an IANA zone name from the user's profile (default ``timezone``).

    The id is the user's ``get_id()`` (Flask-Login), else its ``id``.
    """

    name: Spec = "name"
    email: Spec = "email"
    roles: Spec = "engage_roles"
    role_map: Mapping[Any, str | Iterable[str]] | None = None
    team: Spec | None = "engage_team"
    timezone: Spec | None = "timezone"

    def __call__(self) -> EngageUser | None:
        """The signed-in user from Flask-Login's ``current_user``, or ``None``."""
        try:
            from flask_login import current_user
        except ImportError as exc:  # pragma: no cover - depends on the host's installation
            raise RuntimeError(
                "engage needs to know the signed-in user: install Flask-Login or pass "
                "Engage(current_user=...) returning an engage.EngageUser."
            ) from exc
        if not current_user or not getattr(current_user, "is_authenticated", False):
            return None
        return self.user(current_user)

    def user(self, user: Any) -> EngageUser:
        """The :class:`EngageUser` for a host user object."""
        get_id = getattr(user, "get_id", None)
        ident = get_id() if callable(get_id) else user.id
        email = text(read(user, self.email))
        return EngageUser(
            id=str(ident),
            name=text(read(user, self.name)) or email,
            email=email,
            roles=roles_of(read(user, self.roles), self.role_map),
            team=optional_text(read(user, self.team)),
            timezone=optional_text(read(user, self.timezone)),
        )


#: engage's default reading of a host user: ``name``, ``email``, ``engage_roles``, ….
DEFAULT_USER_MAPPING = UserMapping()


def flask_login_user() -> EngageUser | None:
    """The default user loader: Flask-Login's ``current_user``, read through its attributes.

    It reads ``get_id()``, ``name`` (else ``email``), ``email``, ``engage_roles`` (an iterable of
    role names), and optionally ``engage_team`` and ``timezone``. A host whose user model is
    shaped differently passes a :class:`UserMapping` (or a callable of its own) as
    ``Engage(current_user=...)``.
    """
    return DEFAULT_USER_MAPPING()


def user_from_attributes(user: Any) -> EngageUser:
    """Build an :class:`EngageUser` from a host user object's conventional attributes."""
    return DEFAULT_USER_MAPPING.user(user)


class _State:
    """What engage keeps per application (the extension object may serve several apps)."""

    def __init__(self, engage: EngageCore, store: AttachmentStore) -> None:
        self.engage = engage
        self.store = store
        self.redis: Redis | None = None


class EngageCore:
    """What engage needs of its host at run time; see :class:`engage.extension.Engage`."""

    def __init__(
        self,
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


def _current_engage() -> EngageCore:
    try:
        return current_app.extensions["engage"].engage
    except KeyError:
        raise RuntimeError(
            "engage is not registered on the current app: call Engage.init_app(app)"
        ) from None


#: The :class:`~engage.extension.Engage` of the current application.
current_engage: EngageCore = LocalProxy(_current_engage)  # type: ignore[assignment]
