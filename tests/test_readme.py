"""The README's promises: its complete host-app example runs, its config table is complete."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from engage.config import DEFAULTS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def load_example(tmp_path: Path):
    section = README.split("### A complete example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "readme_host_app.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("readme_host_app", path)
    module = importlib.util.module_from_spec(spec)
    # Annotations are resolved by module name, so the module must be importable by it.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_readme_example_is_a_working_host_app(tmp_path, database_url, redis_url):
    example = load_example(tmp_path)
    app = example.create_app(
        {"SQLALCHEMY_DATABASE_URI": database_url, "ENGAGE_REDIS_URL": redis_url}
    )
    try:
        client = app.test_client()
        assert client.get("/contacts/1").status_code == 401
        client.post("/sign-in/1")
        page = client.get("/contacts/1").get_data(as_text=True)
        assert 'data-engage-timeline-url="/crm/engage/timeline/contact/1"' in page
        timeline = client.get("/crm/engage/timeline/contact/1", headers={"HX-Request": "true"})
        assert timeline.status_code == 200
        assert "No activities yet." in timeline.get_data(as_text=True)
    finally:
        with app.app_context():
            example.db.session.remove()
            example.engage.drop_all()
            example.db.drop_all()


def test_every_config_key_is_in_the_readme_table():
    for key in DEFAULTS:
        assert re.search(rf"^\| `{key}` \|", README, re.M), key


def test_the_readme_starts_with_the_two_commands():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    assert "./run demo" in first_block and "./run tests" in first_block


def test_every_jinja_global_engage_registers_is_in_the_readme_table():
    from flask import Flask
    from flask_babel import Babel
    from flask_sqlalchemy import SQLAlchemy

    from engage import Engage

    class NoRecords:
        def get(self, ref):
            return None

        def search(self, text, *, limit=10):
            return []

        def find_by_email(self, address):
            return []

    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI="sqlite://")
    Babel(app)  # the host's Flask-Babel (engage sets one up otherwise) has globals of its own
    before = set(app.jinja_env.globals)
    Engage(app, db=SQLAlchemy(app), records=NoRecords())
    added = set(app.jinja_env.globals) - before
    table = README.split("### Jinja globals", 1)[1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z_]+)\(", table, re.M))
    documented |= set(re.findall(r", `([A-Za-z_]+)\(", table))
    assert added <= documented, sorted(added - documented)
