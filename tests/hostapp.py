"""A second, minimal host app: proof that engage mounts through its documented API only.

It has its own Flask-SQLAlchemy database, its own user model with Flask-Login and its own
record model ("customer"), and mounts engage at ``/crm/engage``. Nothing here reaches into
engage beyond what ``engage`` exports.

The worker tests load it the way ``flask --app`` does: ``FLASK_APP="tests.hostapp:create_app()"``
with ``HOSTAPP_DATABASE_URL`` and ``ENGAGE_REDIS_URL`` in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from flask import (
    Flask,
    abort,
    has_request_context,
    redirect,
    render_template_string,
    request,
    url_for,
)
from flask_babel import Babel
from flask_login import LoginManager, UserMixin, login_required, login_user
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engage import Engage, FollowPreference, PostalAddress, Record, RecordRef


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Person(UserMixin, db.Model):  # type: ignore[name-defined]
    """The host's users; roles are a comma-separated column, exposed the way engage reads them."""

    __tablename__ = "host_person"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str] = mapped_column(sa.String(200))
    role_names: Mapped[str] = mapped_column(sa.String(100), default="")
    engage_team: Mapped[str | None] = mapped_column(sa.String(50))

    @property
    def engage_roles(self) -> list[str]:
        return [r for r in self.role_names.split(",") if r]


class Customer(db.Model):  # type: ignore[name-defined]
    """The host's only kind of CRM record."""

    __tablename__ = "host_customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    city: Mapped[str] = mapped_column(sa.String(100), default="")
    country: Mapped[str] = mapped_column(sa.String(2), default="")
    tracking_ok: Mapped[bool] = mapped_column(default=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("host_person.id"))
    language: Mapped[str | None] = mapped_column(sa.String(10))
    #: Set for customers that stand for a deal: whether it was won (engage's template figures).
    won: Mapped[bool | None] = mapped_column()
    order_number: Mapped[str | None] = mapped_column(sa.String(20))


class Customers:
    """The host's record adapter for engage."""

    def _record(self, c: Customer) -> Record:
        return Record(
            ref=RecordRef("customer", str(c.id)),
            name=c.name,
            first_name=c.name.split()[0],
            email=c.email,
            address=PostalAddress(city=c.city, country=c.country),
            follow_preference=(
                FollowPreference.ALLOW if c.tracking_ok else FollowPreference.DO_NOT_ALLOW
            ),
            owner_id=str(c.owner_id) if c.owner_id else None,
            url=f"/customers/{c.id}",  # no url_for: workers call this outside a request
            type_label="Customer",
            language=c.language,
            won=c.won,
            template_values={"order_number": c.order_number} if c.order_number else {},
        )

    def get(self, ref: RecordRef) -> Record | None:
        if ref.type != "customer" or not ref.id.isdigit():
            return None
        customer = db.session.get(Customer, int(ref.id))
        return self._record(customer) if customer else None

    def search(self, text: str, *, limit: int = 10) -> Sequence[Record]:
        pattern = f"%{text}%"
        rows = db.session.scalars(
            sa.select(Customer)
            .where(sa.or_(Customer.name.ilike(pattern), Customer.email.ilike(pattern)))
            .order_by(Customer.name)
            .limit(limit)
        )
        return [self._record(c) for c in rows]

    def find_by_email(self, address: str) -> Sequence[Record]:
        rows = db.session.scalars(
            sa.select(Customer).where(sa.func.lower(Customer.email) == address.lower())
        )
        return [self._record(c) for c in rows]


engage = Engage(db=db, records=Customers())

PAGE = """<!doctype html>
<html lang="en"><head><title>{{ customer.name }}</title>{{ engage_assets() }}</head>
<body><main><h1>{{ customer.name }}</h1>{{ engage_timeline(ref) }}</main></body></html>"""


def _browser_language() -> str | None:
    if not has_request_context():
        return None
    return request.accept_languages.best_match(["en", "de"])


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the host app; ``config`` overrides, then the environment fills in the rest."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="host-app-secret",
        SQLALCHEMY_DATABASE_URI=os.environ.get("HOSTAPP_DATABASE_URL", "sqlite://"),
        ENGAGE_URL_PREFIX="/crm/engage",
        ENGAGE_REDIS_URL=os.environ.get("ENGAGE_REDIS_URL"),
        ENGAGE_SMTP_URL=os.environ.get("ENGAGE_SMTP_URL", "smtp://127.0.0.1:25"),
    )
    # Where attachment bytes live, when a worker test sets it (e.g. a worker "on another
    # machine", with a folder of its own), and the public address followed copies point to.
    for key in ("ENGAGE_ATTACHMENT_STORE", "ENGAGE_ATTACHMENT_DIR", "ENGAGE_PUBLIC_URL"):
        if os.environ.get(key):
            app.config[key] = os.environ[key]
    app.config.update(config or {})

    db.init_app(app)
    # Like most hosts: the browser's language (Accept-Language), English without one.
    Babel(app, locale_selector=_browser_language)
    engage.init_app(app)
    login = LoginManager(app)

    @login.user_loader
    def load_user(user_id: str) -> Person | None:
        return db.session.get(Person, int(user_id))

    @app.get("/customers/<int:customer_id>")
    @login_required
    def customer_page(customer_id: int) -> str:
        customer = db.session.get(Customer, customer_id) or abort(404)
        return render_template_string(
            PAGE, customer=customer, ref=RecordRef("customer", str(customer_id))
        )

    @app.post("/login/<int:person_id>")
    def sign_in(person_id: int) -> Any:
        person = db.session.get(Person, person_id) or abort(404)
        login_user(person)
        return redirect(request.args.get("next") or url_for("customer_page", customer_id=1))

    with app.app_context():
        _share_sqlite(db.engine)
        db.create_all()
        engage.create_all()
    return app


def _share_sqlite(engine: sa.Engine) -> None:
    # A web process and worker processes share one SQLite file here, as README asks of such
    # hosts: write-ahead logging, and a writer that waits for its turn instead of failing.
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
