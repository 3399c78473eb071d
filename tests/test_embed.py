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

from tests.browser_support import chromium_path  # noqa: F401  (the browser fixture needs it)
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


def migrate_as_the_walkthrough_says(python: str, host: Path, env: dict[str, str]) -> None:
    engage_versions_before = sorted(p.name for p in host.joinpath("migrations/versions").glob("*"))
    for command in flask_commands():
        output = run(python, command, host, env)
        if command[2] == "migrate":
            assert "No changes in schema detected" in output, output
    # `flask db migrate` found nothing, so it wrote no revision.
    assert sorted(p.name for p in host.joinpath("migrations/versions").glob("*")) == (
        engage_versions_before
    )
    heads = run(python, ["flask", "db", "heads"], host, env)
    assert "engage_0001 (engage) (head)" in heads and "crm_0001 (head)" in heads


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
    assert tables == set(models.metadata.tables) | {"users", "donors", "addresses", "alembic_version"}
