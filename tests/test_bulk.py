"""Bulk email (SPEC S10): one email per record, never followed, by API and by form."""

from __future__ import annotations

import pytest

from engage import RecordRef, send_bulk
from engage.models import Email, EmailStatus
from tests.hostapp import Customer, db
from tests.support import SAM, csrf_in, csrf_token, demo_config, run_delivery, sign_in


@pytest.fixture
def bulk_app(app, smtp_sink):
    app.config.update(ENGAGE_SMTP_URL=smtp_sink.url, ENGAGE_PUBLIC_URL="https://crm.example.com")
    with app.app_context():
        db.session.get(Customer, 3).email = None  # one record without an address
        db.session.commit()
    return app


def test_the_api_sends_one_unfollowed_email_per_record_and_skips_the_unreachable(
    bulk_app, smtp_sink, redis_client
):
    with bulk_app.app_context():
        result = send_bulk(
            SAM,
            [
                RecordRef("customer", "1"),
                RecordRef("customer", "2"),
                RecordRef("customer", "3"),
                RecordRef("customer", "99"),
                RecordRef("customer", "1"),
            ],
            subject="Spring newsletter",
            html='<p>News, see <a href="https://example.com/news">here</a></p>',
        )
        assert len(result.email_ids) == 2
        assert sorted(str(ref) for ref, _why in result.skipped) == ["customer:3", "customer:99"]
        emails = [db.session.get(Email, i) for i in result.email_ids]
        assert all(e.bulk and not e.followed and e.status is EmailStatus.SENDING for e in emails)
        assert all(p.token is None for e in emails for p in e.recipients)
    for email_id in result.email_ids:
        assert run_delivery(bulk_app, email_id) == "sent"
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == [
        "ada@example.com",
        "grace@example.com",
    ]
    for received in smtp_sink.messages:
        assert received.message["To"].count("@") == 1  # nobody sees the others
        html = received.message.get_payload()[1].get_payload(decode=True).decode()
        assert "/t/o/" not in html and 'href="https://example.com/news"' in html


def test_a_bulk_subject_with_a_line_break_is_refused(bulk_app):
    with bulk_app.app_context(), pytest.raises(ValueError):
        send_bulk(SAM, [RecordRef("customer", "1")], subject="a\nBcc: x@y", html="")


def test_the_send_to_selected_form_sends_to_each_record(bulk_app, smtp_sink, redis_client):
    client = sign_in(bulk_app.test_client(), 1)
    page = client.get("/crm/engage/bulk?records=customer:1&records=customer:2&records=customer:3")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "never followed" in body and "no email address: skipped" in body and "Send to 2" in body
    token = csrf_in(body)
    form = {
        "csrf_token": token,
        "records": ["customer:1", "customer:2", "customer:3"],
        "subject": "",
        "body": "Hello all",
    }
    refused = client.post("/crm/engage/bulk", data=form)
    assert refused.status_code == 422 and "Write a subject" in refused.get_data(as_text=True)
    assert "Hello all" in refused.get_data(as_text=True)
    sent = client.post("/crm/engage/bulk", data={**form, "subject": "Hi"}, follow_redirects=True)
    assert "Queued 2 emails; 1 records skipped." in sent.get_data(as_text=True)
    for customer in (1, 2):
        assert "Hi" in client.get(f"/crm/engage/timeline/customer/{customer}").get_data(
            as_text=True
        )


def test_bulk_needs_a_sales_role_and_a_selection(bulk_app):
    assert (
        sign_in(bulk_app.test_client(), 4).get("/crm/engage/bulk?records=customer:1").status_code
        == 403
    )
    assert sign_in(bulk_app.test_client(), 1).get("/crm/engage/bulk").status_code == 400


def test_the_demo_people_page_sends_to_the_selected_records(tmp_path, redis_url, redis_client):
    from engage.demo import create_app

    app = create_app(demo_config(tmp_path, ENGAGE_REDIS_URL=redis_url))
    client = app.test_client()
    token = csrf_token(client, "/sign-in")
    client.post("/sign-in", data={"csrf_token": token, "user_id": "1"})
    people = client.get("/people").get_data(as_text=True)
    assert 'action="/engage/bulk"' in people and 'value="contact:11"' in people
    form = client.get("/engage/bulk?records=contact:11&records=contact:16").get_data(as_text=True)
    assert "Marie Curie" in form and "Ananya Iyer" in form and "never followed" in form
