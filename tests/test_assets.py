"""The front-end files engage serves are committed, and are the locked npm packages' own.

engage/static/engage/vendor/ is in git so that every package a host installs carries htmx and
Trix without npm (README "Front-end files"). These tests make sure the committed copies are
byte for byte the files of the versions package-lock.json pins, so a copy can never drift from
the lock file, and that engage says so at start-up when the files are missing anyway.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import subprocess

import pytest

from tests.support import ROOT

VENDOR = ROOT / "engage" / "static" / "engage" / "vendor"
NODE_MODULES = ROOT / "node_modules"


def vendored_files() -> list[tuple[str, str]]:
    """``(source in node_modules, name under vendor/)`` as scripts/copy-vendor.mjs lists them."""
    script = (ROOT / "scripts" / "copy-vendor.mjs").read_text()
    return re.findall(r'\["([^"]+)", "([^"]+)"\]', script)


def locked_versions() -> dict[str, str]:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return {
        path.removeprefix("node_modules/"): entry["version"]
        for path, entry in lock["packages"].items()
        if path.startswith("node_modules/")
    }


def git_blob(path: str) -> str:
    """The id of the blob git has for ``path`` in its index (what the next commit holds)."""
    line = subprocess.run(
        ["git", "ls-files", "--stage", "--", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert line, f"{path} is not in git: commit it (README 'Front-end files')"
    return line.split()[1]


def test_copy_vendor_lists_htmx_and_trix():
    names = [target for _source, target in vendored_files()]
    assert names == ["htmx.min.js", "trix.umd.min.js", "trix.css"]


def test_the_lock_file_pins_htmx_2():
    # npm's `latest` tag of htmx.org is 4.x; engage is written for 2.x (DESIGN.md).
    assert locked_versions()["htmx.org"].startswith("2.")


@pytest.mark.parametrize(("source", "target"), vendored_files())
def test_each_vendored_file_is_committed_and_is_the_locked_packages_file(source, target):
    package = source.split("/dist/")[0]
    installed = NODE_MODULES / package / "package.json"
    if not installed.exists():
        pytest.fail("node_modules is missing: run `npm ci` (./run install does)")
    version = json.loads(installed.read_text())["version"]
    assert version == locked_versions()[package], (
        f"node_modules has {package} {version}, the lock file another: run `npm ci`"
    )
    upstream = (NODE_MODULES / source).read_bytes()
    assert (VENDOR / target).read_bytes() == upstream, (
        f"{target} differs from {package} {version}: run `npm run vendor` and commit it"
    )
    upstream_blob = subprocess.run(
        ["git", "hash-object", str(NODE_MODULES / source)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert git_blob(f"engage/static/engage/vendor/{target}") == upstream_blob, (
        f"the committed {target} is not {package} {version}'s: commit the copy"
    )


def test_the_package_data_globs_take_the_vendored_files():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["engage"]
    assert "static/**/*" in globs


class NoRecords:
    def get(self, ref):
        return None

    def search(self, text, *, limit=10):
        return []

    def find_by_email(self, address):
        return []


def bare_app():
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from engage import Engage

    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI="sqlite://")
    db = SQLAlchemy(app)
    Engage(app, db=db, records=NoRecords())
    return app


def test_init_app_says_once_in_the_log_when_the_files_are_missing(monkeypatch, tmp_path, caplog):
    web_blueprint = importlib.import_module("engage.web.blueprint")

    monkeypatch.setattr(web_blueprint, "STATIC", tmp_path)
    monkeypatch.setattr(web_blueprint, "_REPORTED_MISSING", set())
    with caplog.at_level(logging.WARNING):
        bare_app()
        bare_app()
    warnings = [r for r in caplog.records if "front-end files are missing" in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "htmx.min.js" in message and "trix.css" in message
    assert "npm ci && npm run vendor" in message


def test_init_app_is_quiet_when_the_files_are_there(caplog):
    with caplog.at_level(logging.WARNING):
        bare_app()
    assert not [r for r in caplog.records if "front-end files" in r.getMessage()]
