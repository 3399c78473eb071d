"""The extension's contract with its host: registration, config, public names."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

import engage
from engage import Engage, Record, RecordRef, current_engage


class NoRecords:
    def get(self, ref):
        return None

    def search(self, text, *, limit=10):
        return []

    def find_by_email(self, address):
        return []


def make_app(tmp_path, **config) -> tuple[Flask, SQLAlchemy]:
    app = Flask("host", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite3'}", **config)
    db = SQLAlchemy()
    db.init_app(app)
    return app, db


def test_the_public_names_are_importable_from_engage():
    for name in (
        "Engage",
        "RecordAdapter",
        "Record",
        "RecordRef",
        "PostalAddress",
        "FollowPreference",
        "Role",
        "EngageUser",
        "current_engage",
    ):
        assert hasattr(engage, name), name


def test_registering_twice_on_one_app_is_refused(tmp_path):
    app, db = make_app(tmp_path)
    ext = Engage(app, db=db, records=NoRecords())
    with pytest.raises(RuntimeError, match="already registered"):
        ext.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        Engage(app, db=db, records=NoRecords())


def test_one_engage_can_serve_two_apps(tmp_path):
    db = SQLAlchemy()
    ext = Engage(db=db, records=NoRecords())
    first = Flask("host", instance_path=str(tmp_path / "a"))
    first.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db.init_app(first)
    second = Flask("other", instance_path=str(tmp_path / "b"))
    second.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db.init_app(second)
    ext.init_app(first)
    ext.init_app(second)
    with second.app_context():
        assert current_engage._get_current_object() is ext


def test_config_defaults_apply_and_the_host_can_override_them(tmp_path):
    app, db = make_app(tmp_path, ENGAGE_URL_PREFIX="/crm/mail", ENGAGE_MAX_BODY_KB=64)
    Engage(app, db=db, records=NoRecords())
    assert app.config["ENGAGE_URL_PREFIX"] == "/crm/mail"
    assert app.config["ENGAGE_MAX_BODY_KB"] == 64
    assert app.config["ENGAGE_QUEUE"] == "engage"
    assert app.config["ENGAGE_ENGAGEMENT_ENABLED"] is True
    rules = {r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("engage.")}
    assert "/crm/mail/timeline/<record_type>/<record_id>" in rules


def test_the_host_database_must_be_set_up_first(tmp_path):
    app = Flask("host")
    with pytest.raises(RuntimeError, match="db.init_app"):
        Engage(app, db=SQLAlchemy(), records=NoRecords())


def test_a_records_object_without_the_adapter_methods_is_refused(tmp_path):
    app, db = make_app(tmp_path)
    with pytest.raises(TypeError, match="RecordAdapter"):
        Engage(app, db=db, records=object())


def test_engage_tables_are_prefixed_and_created_on_the_host_database(tmp_path):
    app, db = make_app(tmp_path)
    ext = Engage(app, db=db, records=NoRecords())
    with app.app_context():
        ext.create_all()
        names = set(db.inspect(db.engine).get_table_names())
    assert {"engage_email", "engage_party", "engage_activity", "engage_attachment"} <= names
    assert all(n.startswith("engage_") for n in names)


def test_current_engage_outside_an_app_says_what_is_wrong():
    with pytest.raises(
        RuntimeError, match="(?i)working outside of application context|not registered"
    ):
        current_engage.records  # noqa: B018


def test_record_refs_round_trip_through_text():
    ref = RecordRef("contact", 42)
    assert ref.id == "42"
    assert RecordRef.parse(str(ref)) == ref
    with pytest.raises(ValueError):
        RecordRef.parse("contact")
    record = Record(ref=ref, name="Ada", url="/c/42")
    assert record.allows_follow and record.label == "Contact"


RAW_REPLY = (
    b"From: Ada <ada@example.com>\r\nTo: sam@host.test\r\nSubject: Re: hello\r\n"
    b"Message-ID: <r1@example.com>\r\nIn-Reply-To: <unknown@host.test>\r\n\r\nThanks!\r\n"
)


@pytest.mark.parametrize("csrf_first", [True, False], ids=["csrf-before", "csrf-after"])
def test_the_inbound_endpoint_passes_a_host_csrfprotect_set_up_before_or_after(
    tmp_path, csrf_first
):
    from flask_wtf import CSRFProtect

    app, db = make_app(tmp_path, SECRET_KEY="s", ENGAGE_INBOUND_TOKEN="inbound-token")
    csrf = CSRFProtect()
    if csrf_first:
        csrf.init_app(app)
    ext = Engage(app, db=db, records=NoRecords())
    if not csrf_first:
        csrf.init_app(app)
    with app.app_context():
        ext.create_all()
    client = app.test_client()
    answer = client.post(
        "/engage/inbound/replies",
        data=RAW_REPLY,
        headers={"Authorization": "Bearer inbound-token"},
        content_type="message/rfc822",
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["status"] == "unmatched"
    # Every other form still needs its token, from the host's CSRFProtect as from engage's.
    assert client.post("/engage/settings", data={}).status_code == 400
