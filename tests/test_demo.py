"""The demo CRM as a host of engage: its adapter, seed data, pages, mailbox and runner."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engage import FollowPreference, PostalAddress, RecordAdapter, RecordRef
from engage.demo import create_app
from engage.demo.mailbox import framed_html, start_smtp_sink
from engage.demo.models import Contact, Lead, MailMessage, Opportunity, User, db
from engage.demo.records import DemoRecords
from engage.demo.seed import USERS
from tests.support import DEMO_TEST_CLIENT, csrf_token, demo_config

# US states of the seeded addresses, and the zone each lies in.
US_STATE_ZONES = {
    "NY": "America/New_York",
    "MA": "America/New_York",
    "IL": "America/Chicago",
    "CO": "America/Denver",
    "CA": "America/Los_Angeles",
}


@pytest.fixture
def app(demo_tables, tmp_path: Path, database_url: str) -> Iterator[Flask]:
    """A fresh, seeded demo app with its own data folder, on SQLite or PostgreSQL."""
    app = create_app(demo_config(tmp_path, database_url, **DEMO_TEST_CLIENT))
    if demo_tables:
        demo_tables.built("demo_tables", app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
    if demo_tables:
        demo_tables.leave("demo_tables", app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def user_named(name: str) -> User:
    return db.session.scalars(sa.select(User).where(User.name == name)).one()


def contact_named(last_name: str) -> Contact:
    return db.session.scalars(sa.select(Contact).where(Contact.last_name == last_name)).one()


def sign_in(client: FlaskClient, name: str = "Mia Berg") -> User:
    user = user_named(name)
    response = client.post("/sign-in", data={"user_id": user.id})
    assert response.status_code == 302
    return user


# -- the record adapter -------------------------------------------------------------------


def test_the_adapter_satisfies_engages_protocol() -> None:
    assert isinstance(DemoRecords(), RecordAdapter)


def test_get_returns_a_contact_with_everything_engage_needs(app: Flask) -> None:
    contact = contact_named("Müller")
    record = DemoRecords().get(RecordRef("contact", str(contact.id)))

    assert record is not None
    assert record.name == "Jürgen Müller"
    assert record.first_name == "Jürgen"
    assert record.email == "j.mueller@isar-maschinenbau.example.de"
    assert record.address == PostalAddress(
        street="Marienplatz 8", city="München", postal_code="80331", region="Bayern", country="DE"
    )
    assert record.follow_preference is FollowPreference.ALLOW
    assert record.owner_id == str(user_named("Mia Berg").id)
    assert record.url == f"/contacts/{contact.id}"
    assert record.type_label == "Contact"
    assert record.language == "de"
    assert record.phone
    assert record.won is None


def test_get_reports_a_refusing_contact_as_do_not_allow(app: Flask) -> None:
    contact = contact_named("Schröder")
    record = DemoRecords().get(RecordRef("contact", str(contact.id)))
    assert record is not None
    assert record.follow_preference is FollowPreference.DO_NOT_ALLOW
    assert not record.allows_follow


def test_get_tells_whether_an_opportunity_was_won(app: Flask) -> None:
    records = DemoRecords()
    for opportunity in db.session.scalars(sa.select(Opportunity)):
        record = records.get(RecordRef("opportunity", str(opportunity.id)))
        assert record is not None
        assert record.won is opportunity.won
        assert record.url == f"/opportunities/{opportunity.id}"


def test_get_answers_none_for_unknown_types_and_ids(app: Flask) -> None:
    records = DemoRecords()
    assert records.get(RecordRef("contact", "999999")) is None
    assert records.get(RecordRef("contact", "not-a-number")) is None
    assert records.get(RecordRef("invoice", "1")) is None


def test_get_builds_record_urls_outside_a_request_too(app: Flask) -> None:
    # The RQ worker has an app context but no request.
    lead = db.session.scalars(sa.select(Lead).order_by(Lead.id)).first()
    assert lead is not None
    record = DemoRecords().get(RecordRef("lead", str(lead.id)))
    assert record is not None
    assert record.url == f"/leads/{lead.id}"


def test_search_finds_people_by_name_regardless_of_case_and_umlauts(app: Flask) -> None:
    found = DemoRecords().search("MÜLLER")
    assert [r.name for r in found] == ["Jürgen Müller"]


def test_search_finds_by_email_and_across_record_types(app: Flask) -> None:
    records = DemoRecords()
    assert [r.ref.type for r in records.search("tim@webworks")] == ["lead"]
    found = records.search("isar")
    types = {r.ref.type for r in found}
    assert {"account", "contact", "opportunity"} <= types


def test_search_puts_names_starting_with_the_text_first_and_honours_the_limit(
    app: Flask,
) -> None:
    records = DemoRecords()
    found = records.search("lu")
    assert found[0].name.casefold().startswith("lu")
    assert len(records.search("a", limit=3)) == 3
    assert records.search("   ") == []


def test_find_by_email_ignores_case(app: Flask) -> None:
    found = DemoRecords().find_by_email("Ada.Lovelace@Hudson-Freight.example.com")
    assert [(r.ref.type, r.name) for r in found] == [("contact", "Ada Lovelace")]
    assert DemoRecords().find_by_email("nobody@example.com") == []


def test_find_by_email_finds_an_accounts_mailbox(app: Flask) -> None:
    found = DemoRecords().find_by_email("info@hudson-freight.example.com")
    assert [(r.ref.type, r.name) for r in found] == [("account", "Hudson Freight")]


# -- seed data ------------------------------------------------------------------------------


def people_addresses() -> list[PostalAddress]:
    people = [*db.session.scalars(sa.select(Contact)), *db.session.scalars(sa.select(Lead))]
    return [p.address for p in people if p.address is not None]


def test_seed_has_addresses_in_at_least_six_countries(app: Flask) -> None:
    countries = {address.country for address in people_addresses()}
    assert len(countries) >= 6
    assert {"US", "DE", "GB", "FR", "JP", "AU", "BR", "IN"} <= countries


def test_seed_has_us_recipients_in_four_time_zones(app: Flask) -> None:
    zones = {US_STATE_ZONES[a.region] for a in people_addresses() if a.country == "US"}
    assert zones == {
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
    }
    for zone in zones:
        ZoneInfo(zone)  # each is a real IANA zone


def test_seed_has_an_umlaut_city_and_people_who_refuse_following(app: Flask) -> None:
    assert "München" in {a.city for a in people_addresses()}
    refusing = db.session.scalars(
        sa.select(Contact).where(Contact.follow_preference == "do_not_allow")
    ).all()
    assert len(refusing) >= 2


def test_seed_has_the_roles_and_teams_engage_distinguishes(app: Flask) -> None:
    users = db.session.scalars(sa.select(User)).all()
    north_reps = [u for u in users if u.role == "salesperson" and u.team == "Team North"]
    other_reps = [u for u in users if u.role == "salesperson" and u.team != "Team North"]
    assert len(north_reps) >= 2
    assert other_reps
    assert any(u.role == "sales_manager" and u.team == "Team North" for u in users)
    assert any(u.role == "admin" for u in users)
    nobody = [u for u in users if u.role == "none"]
    assert nobody and nobody[0].engage_roles == []
    assert user_named("Lena Vogel").engage_roles == ["sales_manager"]
    assert user_named("Lena Vogel").engage_team == "Team North"


def test_seed_has_won_and_open_opportunities_owned_by_several_reps(app: Flask) -> None:
    opportunities = db.session.scalars(sa.select(Opportunity)).all()
    assert any(o.won for o in opportunities)
    assert any(not o.won for o in opportunities)
    assert len({o.owner_id for o in opportunities}) >= 3


def test_seed_is_deterministic_and_runs_once(tmp_path: Path) -> None:
    def snapshot(folder: Path) -> list[tuple[Any, ...]]:
        app = create_app({"ENGAGE_DEMO_DATA_DIR": str(folder), "TESTING": True})
        with app.app_context():
            rows = db.session.scalars(sa.select(Contact).order_by(Contact.id)).all()
            return [(c.id, c.name, c.email, c.city, c.owner_id) for c in rows]

    first = snapshot(tmp_path / "one")
    assert snapshot(tmp_path / "two") == first
    # A second start on the same data keeps what is there instead of seeding again.
    assert snapshot(tmp_path / "one") == first


def test_the_secret_key_is_kept_in_the_data_folder(tmp_path: Path) -> None:
    first = create_app({"ENGAGE_DEMO_DATA_DIR": str(tmp_path)}).config["SECRET_KEY"]
    second = create_app({"ENGAGE_DEMO_DATA_DIR": str(tmp_path)}).config["SECRET_KEY"]
    assert first == second == (tmp_path / "secret_key").read_text()


def test_settings_come_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGAGE_DEMO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ENGAGE_REDIS_URL", "redis://127.0.0.1:6399/3")
    monkeypatch.setenv("ENGAGE_SMTP_URL", "smtp://127.0.0.1:2525")
    app = create_app({"ENGAGE_SMTP_URL": "smtp://127.0.0.1:2626"})
    assert app.config["ENGAGE_DEMO_DATA_DIR"] == str(tmp_path)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert app.config["ENGAGE_REDIS_URL"] == "redis://127.0.0.1:6399/3"
    assert app.config["ENGAGE_SMTP_URL"] == "smtp://127.0.0.1:2626"  # the mapping wins
    assert app.config["ENGAGE_URL_PREFIX"] == "/engage"
    assert app.config["ENGAGE_SERVICE_WORKER_SCOPE"] == "/"


# -- signing in and the pages -------------------------------------------------------------


def test_signed_out_visitors_are_sent_to_the_sign_in_page(client: FlaskClient) -> None:
    for path in ("/", "/contacts/1", "/contacts/1/edit", "/mailbox", "/mailbox/1"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.location.startswith("/sign-in")


def test_the_sign_in_page_offers_every_demo_user_with_their_role(client: FlaskClient) -> None:
    page = client.get("/sign-in").get_data(as_text=True)
    for _key, name, *_rest in USERS:
        assert name in page
    assert "Sales manager" in page
    assert "No role" in page


def test_picking_a_user_signs_them_in_and_returns_to_the_page_asked_for(
    client: FlaskClient,
) -> None:
    user = user_named("Noah Fischer")
    response = client.post("/sign-in?next=/mailbox", data={"user_id": user.id})
    assert response.status_code == 302
    assert response.location == "/mailbox"
    home = client.get("/").get_data(as_text=True)
    assert "Noah Fischer" in home
    assert "Hudson Freight" in home  # one of his accounts


def test_sign_in_refuses_to_redirect_off_site(client: FlaskClient) -> None:
    user = user_named("Noah Fischer")
    response = client.post("/sign-in?next=https://evil.example/", data={"user_id": user.id})
    assert response.location == "/"


def test_signing_in_as_an_unknown_user_fails_with_a_message(client: FlaskClient) -> None:
    response = client.post("/sign-in", data={"user_id": 999999})
    assert response.status_code == 400
    assert "does not exist" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_sign_out_ends_the_session(client: FlaskClient) -> None:
    sign_in(client)
    assert client.post("/sign-out").status_code == 302
    assert client.get("/").status_code == 302


def test_the_sign_in_form_is_protected_against_csrf(tmp_path: Path) -> None:
    app = create_app({"ENGAGE_DEMO_DATA_DIR": str(tmp_path), "TESTING": True})
    response = app.test_client().post("/sign-in", data={"user_id": 1})
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)


def test_each_record_page_shows_its_details_and_engages_timeline(
    app: Flask, client: FlaskClient
) -> None:
    sign_in(client)
    contact = contact_named("Müller")
    opportunity = db.session.scalars(
        sa.select(Opportunity).where(Opportunity.name == "Lakeshore cold-chain sensors")
    ).one()
    pages = {
        f"/contacts/{contact.id}": ["Jürgen Müller", "München", "Germany", "Allow"],
        f"/accounts/{contact.account_id}": ["Isar Maschinenbau GmbH", "Jürgen Müller"],
        f"/opportunities/{opportunity.id}": ["Lakeshore cold-chain sensors", "$48,000.00"],
    }
    lead = db.session.scalars(sa.select(Lead).where(Lead.last_name == "Zuse")).one()
    pages[f"/leads/{lead.id}"] = ["Konrad Zuse", "Rechenwerk GmbH", "Köln"]
    for path, texts in pages.items():
        response = client.get(path)
        assert response.status_code == 200, path
        page = response.get_data(as_text=True)
        for text in texts:
            assert text in page, (path, text)
        kind, ident = path.strip("/").split("/")
        record_type = kind[:-1].replace("opportunitie", "opportunity")
        assert f'data-engage-timeline-url="/engage/timeline/{record_type}/{ident}"' in page
        assert '<html lang="en">' in page
        assert "<main" in page and "<nav" in page
        assert "/engage/manifest.webmanifest" in page


def test_an_unknown_record_is_not_found(client: FlaskClient) -> None:
    sign_in(client)
    assert client.get("/contacts/999999").status_code == 404
    assert client.get("/leads/999999/edit").status_code == 404


def test_editing_a_contacts_address_and_follow_preference_saves_both(
    app: Flask, client: FlaskClient
) -> None:
    sign_in(client)
    contact = contact_named("Lovelace")
    response = client.post(
        f"/contacts/{contact.id}/edit",
        data={
            "street": "Leopoldstraße 1",
            "postal_code": "80802",
            "city": "München",
            "region": "Bayern",
            "country": "de",
            "follow_preference": "do_not_allow",
        },
    )
    assert response.status_code == 302
    assert response.location == f"/contacts/{contact.id}"

    record = DemoRecords().get(RecordRef("contact", str(contact.id)))
    assert record is not None
    assert record.address == PostalAddress(
        street="Leopoldstraße 1",
        city="München",
        postal_code="80802",
        region="Bayern",
        country="DE",
    )
    assert record.follow_preference is FollowPreference.DO_NOT_ALLOW
    page = client.get(response.location).get_data(as_text=True)
    assert "Saved the address" in page
    assert "Do not allow" in page


def _edit_zuses_address(client: FlaskClient, country: str) -> tuple[Lead, Any]:
    """Konrad Zuse's lead saved with an address in Köln and ``country`` as typed."""
    sign_in(client)
    lead = db.session.scalars(sa.select(Lead).where(Lead.last_name == "Zuse")).one()
    response = client.post(
        f"/leads/{lead.id}/edit",
        data={
            "street": "Neue Straße 5",
            "postal_code": "50667",
            "city": "Köln",
            "region": "",
            "country": country,
            "follow_preference": "allow",
        },
    )
    return lead, response


@pytest.mark.parametrize("written", ["Germany", "Deutschland", "deu"])
def test_a_country_given_by_its_name_is_kept_as_its_code(
    app: Flask, client: FlaskClient, written: str
) -> None:
    lead, response = _edit_zuses_address(client, written)
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Lead, lead.id).country == "DE"


def test_a_bad_country_shows_an_error_next_to_the_field_and_keeps_the_input(
    app: Flask, client: FlaskClient
) -> None:
    lead, response = _edit_zuses_address(client, "Atlantis!")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Enter a two-letter country code" in page
    assert 'aria-invalid="true"' in page
    assert re.search(r'id="country"[^>]*value="ATLANTIS!"', page)
    assert 'value="Neue Straße 5"' in page
    db.session.expire_all()
    assert db.session.get(Lead, lead.id).street == "Domkloster 4"  # nothing saved


def test_an_unknown_follow_preference_is_refused(app: Flask, client: FlaskClient) -> None:
    sign_in(client)
    contact = contact_named("Turing")
    response = client.post(
        f"/contacts/{contact.id}/edit",
        data={"city": "London", "country": "GB", "follow_preference": "sometimes"},
    )
    assert response.status_code == 400
    assert "Not a valid choice" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).follow_preference == "allow"


# -- opportunities and templates (SPEC S31, S32) -------------------------------------------


def opportunity_named(name: str) -> Opportunity:
    return db.session.scalars(sa.select(Opportunity).where(Opportunity.name == name)).one()


def test_mark_as_won_saves_the_win_and_tells_engage_then_reopen_undoes_it(
    app: Flask, client: FlaskClient, redis_client: Any, redis_url: str
) -> None:
    from rq import Queue

    app.config["ENGAGE_REDIS_URL"] = redis_url
    sign_in(client)
    deal = opportunity_named("Isar Wartungsvertrag 2025")
    page = client.get(f"/opportunities/{deal.id}").get_data(as_text=True)
    assert "Mark as won" in page and 'name="csrf_token"' not in page  # CSRF off in this app
    response = client.post(f"/opportunities/{deal.id}/won", data={"won": "1"})
    assert response.status_code == 302
    assert response.location == f"/opportunities/{deal.id}"
    db.session.expire_all()
    deal = db.session.get(Opportunity, deal.id)
    assert deal.won and deal.stage == "close"
    [job] = Queue("engage", connection=redis_client).jobs
    assert job.func_name == "engage.jobs.opportunity_won"
    assert job.args == ("opportunity", str(deal.id))
    page = client.get(f"/opportunities/{deal.id}").get_data(as_text=True)
    assert "is marked as won" in page and "Reopen" in page
    assert f"SO-{10000 + deal.id}" in page  # a won deal has an order number for templates
    assert DemoRecords().get(RecordRef("opportunity", str(deal.id))).template_values == {
        "order_number": f"SO-{10000 + deal.id}"
    }

    client.post(f"/opportunities/{deal.id}/won", data={"won": "0"})
    db.session.expire_all()
    assert db.session.get(Opportunity, deal.id).won is False
    assert len(Queue("engage", connection=redis_client).jobs) == 1  # reopening tells nobody
    assert client.post(f"/opportunities/{deal.id}/won", data={"won": "maybe"}).status_code == 400


def test_mark_as_won_without_a_reachable_queue_still_saves_and_says_so(
    app: Flask, client: FlaskClient
) -> None:
    app.config["ENGAGE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    sign_in(client)
    deal = opportunity_named("Summit store rollout")
    response = client.post(
        f"/opportunities/{deal.id}/won", data={"won": "1"}, follow_redirects=True
    )
    assert "notices the win at its next hourly check" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Opportunity, deal.id).won is True


def test_mark_as_won_needs_a_csrf_token(tmp_path: Path) -> None:
    app = create_app({"ENGAGE_DEMO_DATA_DIR": str(tmp_path), "TESTING": True})
    client = app.test_client()
    with app.app_context():
        token = csrf_token(client, "/sign-in")
        client.post("/sign-in", data={"user_id": 1, "csrf_token": token})
        response = client.post("/opportunities/1/won", data={"won": "1"})
        assert response.status_code == 400
        assert db.session.get(Opportunity, 1).won is False


def test_sales_managers_find_the_templates_and_the_demo_has_some_to_offer(
    client: FlaskClient,
) -> None:
    sign_in(client, "Mia Berg")
    assert "/engage/templates" not in client.get("/").get_data(as_text=True)
    sign_in(client, "Lena Vogel")
    assert '<a href="/engage/templates">Templates</a>' in client.get("/").get_data(as_text=True)
    assert 'href="/engage/templates"' in client.get("/engage/").get_data(as_text=True)
    listing = client.get("/engage/templates").get_data(as_text=True)
    for name in ("Introduction after a first call", "Vorstellung nach dem Erstgespräch"):
        assert name in listing
    assert "German" in listing and "English" in listing


def test_seeded_templates_fill_in_the_first_name_and_the_deal(app: Flask) -> None:
    from engage.models import EmailTemplate
    from engage.templating import render_template_text, values_for

    lena = user_named("Lena Vogel")
    templates = db.session.scalars(sa.select(EmailTemplate).order_by(EmailTemplate.id)).all()
    assert {t.language for t in templates} == {"en", "de"}
    assert {t.created_by for t in templates} == {str(lena.id)}
    records = DemoRecords()
    deal = opportunity_named("Isar Wartungsvertrag 2025")
    juergen = records.get(RecordRef("contact", str(contact_named("Müller").id)))
    german = next(t for t in templates if t.language == "de")
    values = values_for(juergen, records.get(RecordRef("opportunity", str(deal.id))))
    body = render_template_text(german.html_body, values, html=True)
    assert "Hallo Jürgen," in body.text and "bei Isar Wartungsvertrag 2025" in body.text
    assert body.missing == ()
    without = render_template_text(german.html_body, values_for(None, None), html=True)
    assert "Hallo zusammen," in without.text


def test_templates_are_seeded_into_an_older_demo_database_once(tmp_path: Path) -> None:
    from engage.models import EmailTemplate

    app = create_app({"ENGAGE_DEMO_DATA_DIR": str(tmp_path), "TESTING": True})
    with app.app_context():
        db.session.execute(sa.delete(EmailTemplate))
        db.session.commit()
    app = create_app({"ENGAGE_DEMO_DATA_DIR": str(tmp_path), "TESTING": True})
    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).select_from(EmailTemplate))
    again = create_app({"ENGAGE_DEMO_DATA_DIR": str(tmp_path), "TESTING": True})
    with again.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(EmailTemplate)) == count
    assert count == 3


# -- the mailbox ----------------------------------------------------------------------------


def send_demo_mail(port: int, subject: str, to: list[str], bcc: list[str] = ()) -> None:  # type: ignore[assignment]
    message = EmailMessage()
    message["From"] = "Mia Berg <mia.berg@crm.example.com>"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = "<demo-test@crm.example.com>"
    message.set_content("Hallo Jürgen,\nsee https://example.com/offer\n")
    message.add_alternative(
        '<p>Hallo Jürgen, see <a href="https://example.com/offer">the offer</a>.</p>'
        "<script>document.title = 'pwned'</script>",
        subtype="html",
    )
    message.add_attachment(
        b"%PDF-1.4 demo", maintype="application", subtype="pdf", filename="angebot.pdf"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message, to_addrs=[*to, *bcc])


def test_the_smtp_sink_stores_what_it_receives_and_the_mailbox_shows_it(
    app: Flask, client: FlaskClient
) -> None:
    controller = start_smtp_sink(app, "127.0.0.1", 0)
    try:
        send_demo_mail(
            controller.port,
            "Grüße aus Berlin",
            ["j.mueller@isar-maschinenbau.example.de"],
            bcc=["lena.vogel@crm.example.com"],
        )
        send_demo_mail(controller.port, "Second message", ["ada.lovelace@example.com"])
    finally:
        controller.stop()

    stored = db.session.scalars(sa.select(MailMessage).order_by(MailMessage.id)).all()
    assert [m.subject for m in stored] == ["Grüße aus Berlin", "Second message"]
    assert stored[0].envelope_from == "mia.berg@crm.example.com"
    assert [r.address for r in stored[0].recipients] == [
        "j.mueller@isar-maschinenbau.example.de",
        "lena.vogel@crm.example.com",
    ]

    sign_in(client, "Jordan Lee")  # the mailbox needs no role
    listing = client.get("/mailbox").get_data(as_text=True)
    assert listing.index("Second message") < listing.index("Grüße aus Berlin")  # newest first
    assert "Mia Berg &lt;mia.berg@crm.example.com&gt;" in listing

    as_bcc = client.get("/mailbox?recipient=Lena.Vogel@crm.example.com").get_data(as_text=True)
    assert "Grüße aus Berlin" in as_bcc
    assert "Second message" not in as_bcc

    page = client.get(f"/mailbox/{stored[0].id}").get_data(as_text=True)
    assert "Grüße aus Berlin" in page
    assert "j.mueller@isar-maschinenbau.example.de" in page
    assert "Hallo Jürgen,\nsee https://example.com/offer" in page  # the text part
    frame = re.search(r"<iframe[^>]*>", page, re.S)
    assert frame is not None
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in frame.group(0)
    assert "srcdoc=" in frame.group(0)
    # The HTML part is only inside srcdoc, escaped: its script never runs on the page itself.
    assert "<script>document.title" not in page
    assert "&lt;a href=&#34;https://example.com/offer&#34;&gt;" in frame.group(0)
    assert "angebot.pdf" in page

    attachment = client.get(f"/mailbox/{stored[0].id}/attachments/0")
    assert attachment.data == b"%PDF-1.4 demo"
    assert "attachment" in attachment.headers["Content-Disposition"]
    raw = client.get(f"/mailbox/{stored[0].id}/raw")
    assert raw.mimetype == "message/rfc822"
    assert b"Subject:" in raw.data


def test_the_smtp_sink_can_run_from_a_database_url(app: Flask, tmp_path: Path) -> None:
    # The sink may run in another process than the web app: it needs only the database URL.
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    controller = start_smtp_sink(url, "127.0.0.1", 0)
    try:
        send_demo_mail(controller.port, "From another process", ["ada@example.com"])
    finally:
        controller.stop()
    db.session.expire_all()
    assert db.session.scalars(sa.select(MailMessage.subject)).all() == ["From another process"]


def test_an_empty_mailbox_says_so(client: FlaskClient) -> None:
    sign_in(client)
    assert "No messages yet" in client.get("/mailbox").get_data(as_text=True)
    assert client.get("/mailbox/1").status_code == 404


# -- the runner -----------------------------------------------------------------------------


def test_the_runner_serves_the_demo_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ENGAGE_REDIS_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "engage.demo", "--port", "0", "--data-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"running at (http://127\.0\.0\.1:\d+)", first)
        assert match, first
        url = match.group(1)
        with urllib.request.urlopen(url + "/sign-in", timeout=10) as response:
            assert response.status == 200
            assert "Mia Berg" in response.read().decode()

        # The worker and the cron scheduler came up and talk to the embedded Redis.
        worker_log = tmp_path / "logs" / "worker.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if worker_log.exists() and "engage.jobs" in worker_log.read_text():
                break
            time.sleep(0.2)
        assert "engage.jobs" in worker_log.read_text()
        assert (tmp_path / "redis.sock").exists()

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "Stopped." in output
    assert "exited with code" not in output
    assert not (tmp_path / "redis.sock").exists()
    assert (tmp_path / "redis.rdb").exists()  # the queue state was saved


def test_a_recipient_replies_from_the_mailbox_and_the_reply_threads_to_the_original(
    app: Flask, client: FlaskClient
) -> None:
    controller = start_smtp_sink(app, "127.0.0.1", 0)
    try:
        send_demo_mail(controller.port, "Angebot", ["j.mueller@isar-maschinenbau.example.de"])
    finally:
        controller.stop()
    original = db.session.scalars(sa.select(MailMessage)).one()
    sign_in(client)

    page = client.get(
        f"/mailbox/{original.id}?recipient=j.mueller@isar-maschinenbau.example.de"
    ).get_data(as_text=True)
    assert '<label for="reply_as">Reply as</label>' in page
    assert '<label for="text">Your reply</label>' in page

    response = client.post(
        f"/mailbox/{original.id}/reply",
        data={
            "reply_as": "j.mueller@isar-maschinenbau.example.de",
            "text": "Danke, passt gut!",
        },
    )
    assert response.status_code == 302
    reply = db.session.scalars(sa.select(MailMessage).where(MailMessage.id != original.id)).one()
    assert response.location == f"/mailbox/{reply.id}"
    assert reply.subject == "Re: Angebot"
    assert reply.envelope_from == "j.mueller@isar-maschinenbau.example.de"
    assert [r.address for r in reply.recipients] == ["mia.berg@crm.example.com"]
    parsed = message_from_bytes(reply.raw, policy=email_policy.default)
    assert parsed["In-Reply-To"] == "<demo-test@crm.example.com>"
    assert parsed["References"] == "<demo-test@crm.example.com>"
    assert str(parsed["From"]) == "Jürgen Müller <j.mueller@isar-maschinenbau.example.de>"
    body = parsed.get_body(preferencelist=("plain",)).get_content()
    assert body.startswith("Danke, passt gut!")
    assert "> Hallo Jürgen," in body

    shown = client.get(response.location).get_data(as_text=True)
    assert "Reply sent to mia.berg@crm.example.com" in shown
    assert "Danke, passt gut!" in shown


def test_a_reply_needs_text_and_one_of_the_recipients(app: Flask, client: FlaskClient) -> None:
    controller = start_smtp_sink(app, "127.0.0.1", 0)
    try:
        send_demo_mail(controller.port, "Angebot", ["ada@example.com"])
    finally:
        controller.stop()
    original = db.session.scalars(sa.select(MailMessage)).one()
    sign_in(client)
    empty = client.post(
        f"/mailbox/{original.id}/reply", data={"reply_as": "ada@example.com", "text": ""}
    )
    assert empty.status_code == 400
    assert "Write a few words" in empty.get_data(as_text=True)
    stranger = client.post(
        f"/mailbox/{original.id}/reply", data={"reply_as": "eve@example.com", "text": "Hi"}
    )
    assert stranger.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MailMessage)) == 1


def test_links_in_a_framed_message_open_outside_the_frame() -> None:
    document = "<!doctype html><html><head><meta charset='utf-8'></head><body>x</body></html>"
    framed = framed_html(document)
    assert framed.startswith("<!doctype html>")  # no quirks mode
    assert '<head><base target="_blank">' in framed
    assert framed_html("<p>x</p>") == '<base target="_blank"><p>x</p>'
