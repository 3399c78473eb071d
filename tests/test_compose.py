"""Compose, save and send through the HTTP endpoints, as a browser without JavaScript would."""

from __future__ import annotations

import pytest

from engage.content import clean_html, html_to_text, parse_addresses, subject_error, text_to_html
from engage.models import Email, EmailStatus, PartyRole
from tests.support import compose_fields, csrf_token, sign_in


def post(client, url="/crm/engage/compose", **fields):
    return client.post(url, data=compose_fields(client, **fields))


def emails(app):
    with app.app_context():
        from sqlalchemy.orm import selectinload

        from tests.hostapp import db

        query = db.session.query(Email).options(selectinload(Email.parties)).order_by(Email.id)
        return query.all()


# -- the rules, without Flask ----------------------------------------------------------------


def test_address_fields_keep_names_with_commas_and_report_bad_entries_as_typed():
    parsed = parse_addresses('"Lovelace, Ada" <ada@Example.COM>; bob@example.org, not-an-address')
    assert [(a.name, a.address) for a in parsed.valid] == [
        ("Lovelace, Ada", "ada@example.com"),
        ("", "bob@example.org"),
    ]
    assert parsed.invalid == ["not-an-address"]


def test_a_line_break_in_the_subject_is_refused():
    assert subject_error("Hello\r\nBcc: victim@example.com") == "line break"
    assert subject_error("Hello") is None


def test_stored_html_loses_scripts_handlers_and_dangerous_links():
    cleaned = clean_html(
        '<p onclick="x()">Hi <script>alert(1)</script><a href="javascript:alert(1)">a</a>'
        '<a href="https://example.com/x">b</a><img src="https://t.example/p.gif"></p>'
    )
    assert "script" not in cleaned and "onclick" not in cleaned and "javascript" not in cleaned
    assert "<img" not in cleaned
    assert '<a href="https://example.com/x" rel="noopener noreferrer">b</a>' in cleaned


def test_the_text_part_keeps_lists_and_link_targets():
    text = html_to_text(
        "<div>Hi <strong>Ada</strong></div><ul><li>one</li><li>two</li></ul>"
        '<p>See <a href="https://example.com">our site</a></p>'
    )
    assert text == "Hi Ada\n- one\n- two\n\nSee our site (https://example.com)"


def test_plain_text_becomes_escaped_paragraphs():
    assert text_to_html("a <b>\nc\n\nd") == "<p>a &lt;b&gt;<br>c</p><p>d</p>"


# -- the endpoints -------------------------------------------------------------------------------


def test_the_compose_panel_opens_prefilled_with_the_record_it_was_opened_from(app):
    client = sign_in(app.test_client(), 1)
    page = client.get("/crm/engage/compose?regarding=customer:1").get_data(as_text=True)
    assert "Ada Lovelace &lt;ada@example.com&gt;" in page
    assert 'name="regarding" value="customer:1"' in page
    assert "<html" in page  # a page of its own without htmx
    partial = client.get(
        "/crm/engage/compose?regarding=customer:1", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "<html" not in partial and 'hx-post="/crm/engage/compose"' in partial


def test_save_keeps_a_draft_that_reopens_with_everything(app):
    client = sign_in(app.test_client(), 1)
    response = post(
        client,
        action="save",
        to="Ada Lovelace <ada@example.com>",
        cc="boss@example.org",
        subject="Our meeting",
        body="Hello Ada,\n\nsee you soon.",
    )
    assert response.status_code == 302
    (email,) = emails(app)
    assert email.status is EmailStatus.DRAFT
    assert email.html_body == "<p>Hello Ada,</p><p>see you soon.</p>"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Draft saved." in page and "boss@example.org" in page and "Our meeting" in page
    timeline = client.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "Draft" in timeline and f"/emails/{email.id}/edit" in timeline


def test_a_typed_address_of_a_record_puts_the_email_on_that_records_timeline(app):
    client = sign_in(app.test_client(), 1)
    post(client, action="save", to="grace@example.com", subject="Hi Grace", body="x")
    (email,) = emails(app)
    assert email.parties_in(PartyRole.TO)[0].record_id == "2"
    assert "Hi Grace" in client.get("/crm/engage/timeline/customer/2").get_data(as_text=True)


def test_an_invalid_address_is_shown_inline_and_nothing_typed_is_lost(app):
    client = sign_in(app.test_client(), 1)
    response = post(
        client,
        action="send",
        to="ada@example.com, ada@@bad",
        subject="Keep me",
        body="My long text",
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Not a valid email address: ada@@bad" in body
    assert 'value="ada@example.com, ada@@bad"' in body
    assert 'value="Keep me"' in body and "My long text" in body
    assert emails(app) == []


def test_send_without_a_recipient_is_refused_but_save_still_works(app):
    client = sign_in(app.test_client(), 1)
    refused = post(client, action="send", to="", subject="Nobody", body="x")
    assert refused.status_code == 422
    assert "Add at least one recipient" in refused.get_data(as_text=True)
    assert post(client, action="save", to="", subject="Nobody", body="x").status_code == 302
    assert emails(app)[0].status is EmailStatus.DRAFT


def test_a_subject_with_a_line_break_is_refused_as_header_injection(app):
    client = sign_in(app.test_client(), 1)
    response = post(
        client,
        action="send",
        to="ada@example.com",
        subject="Hi\r\nBcc: victim@example.com",
        body="x",
    )
    assert response.status_code == 422
    assert "The subject must be one line" in response.get_data(as_text=True)
    assert emails(app) == []


def test_a_body_over_the_limit_is_refused_with_the_limit_named(app):
    app.config["ENGAGE_MAX_BODY_KB"] = 1
    client = sign_in(app.test_client(), 1)
    response = post(client, action="save", to="ada@example.com", subject="Big", body="x" * 2000)
    assert response.status_code == 422
    assert "larger than 1 KB" in response.get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_400_and_saves_nothing(app):
    client = sign_in(app.test_client(), 1)
    response = client.post("/crm/engage/compose", data={"action": "save", "subject": "x"})
    assert response.status_code == 400
    assert emails(app) == []


def test_an_unknown_regarding_record_is_404(app):
    client = sign_in(app.test_client(), 1)
    assert client.get("/crm/engage/compose?regarding=customer:999").status_code == 404


def test_another_reps_draft_cannot_be_opened_or_changed(app):
    client = sign_in(app.test_client(), 1)
    post(client, action="save", to="ada@example.com", subject="Mine", body="x")
    (email,) = emails(app)
    other = sign_in(app.test_client(), 2)
    assert other.get(f"/crm/engage/emails/{email.id}/edit").status_code == 404
    response = other.post(
        f"/crm/engage/emails/{email.id}/edit",
        data={"csrf_token": csrf_token(other), "action": "send", "subject": "Stolen"},
    )
    assert response.status_code == 404
    assert emails(app)[0].subject == "Mine"


def test_send_queues_the_email_and_freezes_it(app, redis_client):
    client = sign_in(app.test_client(), 1)
    post(client, action="save", to="ada@example.com", subject="Go", body="x")
    (email,) = emails(app)
    response = post(
        client,
        url=f"/crm/engage/emails/{email.id}/edit",
        action="send",
        to="ada@example.com",
        subject="Go",
        body="x",
    )
    assert response.status_code == 302
    (email,) = emails(app)
    assert email.status is EmailStatus.SENDING and email.message_id.endswith("@host.test>")
    assert email.parties_in(PartyRole.FROM)[0].address == "sam@host.test"
    with app.app_context():
        from engage import current_engage

        jobs = [j.func_name for j in current_engage.queue.get_jobs()]
        assert jobs.count("engage.jobs.deliver") == 1
    # Sent emails open read-only; their edit URL leads there.
    edit = client.get(f"/crm/engage/emails/{email.id}/edit")
    assert edit.status_code == 302 and edit.headers["Location"].endswith(f"/emails/{email.id}")


def test_the_typeahead_finds_records_by_the_entry_being_typed(app):
    client = sign_in(app.test_client(), 1)
    body = client.get("/crm/engage/records/search?field=cc&cc=ada@example.com, gra").get_data(
        as_text=True
    )
    assert 'data-address="grace@example.com"' in body and "Ada" not in body
    assert client.get("/crm/engage/records/search?field=evil").status_code == 400


@pytest.mark.parametrize("field", ["regarding_search"])
def test_without_javascript_the_regarding_record_changes_by_typing_its_name(app, field):
    client = sign_in(app.test_client(), 1)
    post(client, action="save", to="ada@example.com", subject="Re", body="x", **{field: "Grace"})
    (email,) = emails(app)
    assert email.regarding_id == "2"


def test_closing_the_panel_leaves_an_empty_slot_or_goes_back_to_the_timeline(app):
    client = sign_in(app.test_client(), 1)
    url = "/crm/engage/compose/closed?regarding=customer:1"
    closed = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert closed == '<div id="engage-compose-customer-1"></div>'
    back = client.get(url)
    assert back.status_code == 302 and back.headers["Location"].endswith("/timeline/customer/1")
