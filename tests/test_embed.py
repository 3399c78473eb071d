"""README "Embed engage in 10 minutes", run: the donor CRM in tests/embed_host/ with engage
mounted the way the walkthrough says, in at most 25 lines of glue.

- The glue: every line of the walkthrough's file blocks is in that file of the fixture host, in
  order; no other line of the host names engage; the README states the count, at most 25.
- Fast: the walkthrough's ``flask db`` commands on the checkout's engage, SQLite or PostgreSQL.
- Slow (``-m slow`` selects it, ``-m "not slow"`` leaves it out; about a minute): a wheel built
  from a clean export of the repository (no node_modules), installed into a fresh virtualenv,
  the host migrated with Flask-Migrate, served, with a worker, and driven in Chromium through
  compose, send, open and the assistant's card.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.browser_support import write_and_send
from tests.support import ROOT, free_port

HOST = ROOT / "tests" / "embed_host"
README = (ROOT / "README.md").read_text()
SECTION = README.split("## Embed engage in 10 minutes", 1)[1].split("\n## ", 1)[0]
#: ``(language, file, code)`` of each block of the walkthrough that adds lines to a file.
GLUE = re.findall(r"```(\w+) file=(\S+)\n(.*?)```", SECTION, re.S)
#: The walkthrough's shell lines.
SHELL = [
    line.strip()
    for block in re.findall(r"```sh\n(.*?)```", SECTION, re.S)
    for line in block.splitlines()
    if line.strip()
]
#: What names engage in a line of the host.
MENTIONS_ENGAGE = re.compile(
    r"\bengage(?!ment)|RecordType|UserMapping|ModelAdapter|configure_flask_migrate"
)


def code_lines(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("#", "{#"))
    ]


def glue_lines() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for _language, path, code in GLUE:
        found.setdefault(path, []).extend(code_lines(code))
    return found


def test_the_walkthroughs_glue_is_the_hosts_and_at_most_25_lines():
    glue = glue_lines()
    for path, lines in glue.items():
        host_lines = code_lines((HOST / path).read_text())
        position = 0
        for line in lines:
            assert line in host_lines[position:], f"{path}: {line!r} is not in the host (in order)"
            position = host_lines.index(line, position) + 1
    count = sum(len(lines) for lines in glue.values())
    assert count <= 25
    assert f"**{count} lines**" in SECTION, f"the README must say the glue is {count} lines"


def test_no_line_of_the_host_names_engage_but_the_walkthroughs():
    glue = glue_lines()
    hidden = []
    for path in sorted(HOST.joinpath("crm").rglob("*")):
        if path.suffix not in (".py", ".html"):
            continue
        relative = str(path.relative_to(HOST))
        for line in code_lines(path.read_text()):
            if MENTIONS_ENGAGE.search(line) and line not in glue.get(relative, []):
                hidden.append(f"{relative}: {line}")
    assert hidden == []
    # The host's migrations folder is as Flask-Migrate made it: its env.py is not touched.
    assert not MENTIONS_ENGAGE.search((HOST / "migrations" / "env.py").read_text())


def flask_commands() -> list[list[str]]:
    """The walkthrough's ``flask …`` lines, as argument lists."""
    commands = [shlex.split(line) for line in SHELL if line.startswith("flask ")]
    assert [c[:3] for c in commands] == [["flask", "db", "upgrade"], ["flask", "db", "migrate"]]
    return commands


def copy_host(tmp_path: Path) -> Path:
    target = tmp_path / "donor-crm"
    shutil.copytree(HOST, target, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    return target


def host_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "ENGAGE_")) and key not in ("PYTHONPATH", "REDIS_URL")
    }
    env.update(FLASK_APP="crm:create_app()", DATABASE_URL=database_url, SECRET_KEY="s3cret")
    env.update(extra)
    return env


def run(python: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [python, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return output


def revisions(host: Path) -> list[str]:
    """The files of the host's migrations/versions folder, but Python's bytecode cache (Alembic
    imports the revisions, and Python caches them unless PYTHONDONTWRITEBYTECODE is set)."""
    return sorted(
        p.name for p in host.joinpath("migrations/versions").glob("*") if p.name != "__pycache__"
    )


def migrate_as_the_walkthrough_says(python: str, host: Path, env: dict[str, str]) -> None:
    engage_versions_before = revisions(host)
    for command in flask_commands():
        output = run(python, command, host, env)
        if command[2] == "migrate":
            assert "No changes in schema detected" in output, output
    # `flask db migrate` found nothing, so it wrote no revision.
    assert revisions(host) == engage_versions_before
    heads = run(python, ["flask", "db", "heads"], host, env)
    assert f"{engage_head()} (engage) (head)" in heads and "crm_0001 (head)" in heads


def engage_head() -> str:
    """The newest of engage's own revisions: the one no other revision revises."""
    versions = ROOT / "engage" / "migrations" / "versions"
    revisions, revised = set(), set()
    for path in versions.glob("engage_*.py"):
        text = path.read_text()
        revisions.add(re.search(r'^revision = "([^"]+)"', text, re.M).group(1))
        if found := re.search(r'^down_revision = "([^"]+)"', text, re.M):
            revised.add(found.group(1))
    (head,) = revisions - revised
    return head


def test_the_walkthroughs_migrations_run_with_flask_migrate(tmp_path, database_url):
    from engage import models

    host = copy_host(tmp_path)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = host_env(database_url, PYTHONPATH=pythonpath)
    migrate_as_the_walkthrough_says(sys.executable, host, env)
    engine = sa.create_engine(database_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == set(models.metadata.tables) | {
        "users",
        "donors",
        "addresses",
        "alembic_version",
    }


# -- From a wheel, in the browser ----------------------------------------------------------------


def clean_export(target: Path) -> Path:
    """The repository's tracked files (as they are in the work tree), without node_modules."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    assert not (target / "node_modules").exists()
    return target


def build_packages(export: Path, dist: Path) -> tuple[Path, Path]:
    """An sdist, and a wheel built from that sdist (what ``python -m build`` does)."""
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(export)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return next(dist.glob("engage-*.tar.gz")), next(dist.glob("engage-*.whl"))


#: What every package of engage must carry: the front-end files, engage's revisions.
CARRIED = (
    "engage/static/engage/vendor/htmx.min.js",
    "engage/static/engage/vendor/trix.umd.min.js",
    "engage/static/engage/vendor/trix.css",
    "engage/migrations/versions/engage_0001_initial.py",
    "engage/migrations/script.py.mako",
    "engage/templates/engage/layout.html",
)


def fresh_venv(folder: Path, wheel: Path) -> str:
    """A new virtualenv with the wheel installed, its dependencies lent by this environment.

    The dependencies are those of this test run's environment (a ``.pth`` file names its
    folders), so nothing is downloaded; engage itself is only the wheel's: the checkout is not
    on the path, and the test asserts where ``engage`` is imported from.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = str(folder / "bin" / "python")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    lent = [
        p
        for p in sys.path
        if p
        and Path(p).is_dir()
        and Path(p).resolve() != ROOT
        and ("site-packages" in p or p in extra)
    ]
    Path(site, "_engage_test_dependencies.pth").write_text("\n".join(dict.fromkeys(lent)) + "\n")
    return python


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()}")


@pytest.mark.slow
@pytest.mark.browser
def test_a_wheel_from_a_clean_export_mounts_in_the_donor_crm_and_works_in_the_browser(
    tmp_path, database_url, redis_url, redis_client, start_smtp_sink, person
):
    export = clean_export(tmp_path / "export")
    sdist, wheel = build_packages(export, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as packed:
        assert set(CARRIED) <= set(packed.namelist())
    listing = subprocess.run(["tar", "tzf", str(sdist)], capture_output=True, text=True).stdout
    assert all(name in listing for name in CARRIED)

    python = fresh_venv(tmp_path / "venv", wheel)
    where = subprocess.run(
        [python, "-c", "import engage; print(engage.__file__)"],
        cwd=tmp_path,
        env=host_env(database_url),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where

    host = copy_host(tmp_path)
    sink = start_smtp_sink()
    port = free_port()
    env = host_env(
        database_url,
        REDIS_URL=redis_url,
        SMTP_URL=sink.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        FLASK_ENGAGE_MACHINE_OPEN_SECONDS="0",
        FLASK_ENGAGE_ASSISTANT_POLL_SECONDS="1",
    )
    migrate_as_the_walkthrough_says(python, host, env)
    run(python, ["flask", "donors", "seed"], host, env)

    processes = []
    try:
        web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
        processes.append(
            subprocess.Popen(
                [python, "-m", "flask", "run", "--port", str(port), "--no-reload"],
                cwd=host,
                env=env,
                stdout=web_log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "rq.cli",
                    "worker",
                    "--with-scheduler",
                    "-w",
                    "engage.worker.EngageWorker",
                    "--url",
                    redis_url,
                    "engage",
                ],
                cwd=host,
                env=env,
                stdout=worker_log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_for_port(port, processes[0], web_log)
        drive_the_browser(person, f"http://127.0.0.1:{port}", sink)
    except BaseException:
        for log in (tmp_path / "web.log", tmp_path / "worker.log"):
            if log.exists():
                print(f"--- {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def drive_the_browser(page, url: str, sink) -> None:
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    # Sign in through the host's own form (Flask-WTF, app-wide CSRFProtect).
    page.goto(url + "/login")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill("secret")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="My donors").wait_for()

    # Compose from Ada's timeline on the host's donor page, and send.
    page.get_by_role("link", name="Ada Lovelace").click()
    page.get_by_label("Create timeline record").click()
    page.get_by_role("link", name="Email", exact=True).click()
    page.locator("trix-editor").wait_for()
    write_and_send(
        page,
        to="Ada Lovelace <ada@example.org>",
        subject="Thank you for your gift",
        text="Your gift funds a new library.",
        timeout=30_000,
    )
    assert sink.messages, "the SMTP relay received nothing"

    # Ada opens it: her mail program shows the HTML and fetches its images.
    html = next(
        part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        for part in sink.messages[0].message.walk()
        if part.get_content_type() == "text/html"
    )
    mail = page.context.new_page()
    with mail.expect_response(lambda r: "/engage/" in r.url and r.status == 200):
        mail.set_content(html)
    mail.close()

    # The card on the host's dashboard, in the assistant panel.
    page.goto(url + "/")
    panel = page.locator("#engage-assistant")
    panel.locator(".engage-card", has_text="Ada Lovelace opened").wait_for(timeout=30_000)

    # engage's own pages in the host's layout, under the host's title.
    page.goto(url + "/engage/")
    assert page.title() == "Email engagement · Donor CRM"
    assert missing == [], missing
