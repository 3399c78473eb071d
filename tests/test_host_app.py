"""engage inside a second host app, with its own users and records, at its own prefix."""

from __future__ import annotations

import re

from tests.support import add_email, csrf_token, sign_in


def test_the_host_record_page_shows_engage_timeline_at_its_own_prefix(app):
    client = sign_in(app.test_client(), 1)
    page = client.get("/customers/1").get_data(as_text=True)
    # The timeline is drawn with the host's page (no "Loading…" without JavaScript).
    assert 'data-engage-timeline-url="/crm/engage/timeline/customer/1"' in page
    assert 'id="engage-timeline-customer-1"' in page and "No activities yet." in page
    assert "/crm/engage/static/engage/engage.css" in page
    partial = client.get("/crm/engage/timeline/customer/1", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert "HX-Request" in partial.headers["Vary"]
    body = partial.get_data(as_text=True)
    assert "No activities yet." in body and "<html" not in body


def test_without_javascript_the_timeline_is_a_page_of_its_own(app):
    client = sign_in(app.test_client(), 1)
    page = client.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    assert "<html" in page and "Ada Lovelace" in page and 'href="/customers/1"' in page


def test_an_email_shows_on_the_regarding_record_and_on_to_and_cc_but_not_bcc(app):
    add_email(app, 1, "Our meeting")
    client = sign_in(app.test_client(), 1)
    for customer in (1, 2):
        body = client.get(f"/crm/engage/timeline/customer/{customer}").get_data(as_text=True)
        assert "Our meeting" in body, customer
        assert "bcc@example.com" not in body
    assert "Our meeting" not in client.get("/crm/engage/timeline/customer/3").get_data(as_text=True)


def test_the_timeline_pages_newest_first_with_a_link_to_the_next_page(app):
    app.config["ENGAGE_TIMELINE_PAGE_SIZE"] = 3
    for n in range(7):
        add_email(app, 1, f"Message {n}")
    client = sign_in(app.test_client(), 1)
    seen: list[str] = []
    url = "/crm/engage/timeline/customer/1"
    while url:
        body = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
        seen += re.findall(r"Message \d", body)
        more = re.search(r'hx-get="([^"]+before=[^"]+)"', body)
        url = more.group(1).replace("&amp;", "&") if more else None
    assert seen == [f"Message {n}" for n in range(6, -1, -1)]


def test_a_broken_page_cursor_is_a_clear_400(app):
    client = sign_in(app.test_client(), 1)
    response = client.get("/crm/engage/timeline/customer/1?before=garbage")
    assert response.status_code == 400


def test_an_unknown_record_is_404(app):
    client = sign_in(app.test_client(), 1)
    assert client.get("/crm/engage/timeline/customer/999").status_code == 404
    assert client.get("/crm/engage/timeline/planet/1").status_code == 404


def test_a_salesperson_gets_404_on_another_reps_email_and_does_not_see_it_listed(app):
    email_id = add_email(app, 2, "Rita's secret")
    client = sign_in(app.test_client(), 1)
    assert client.get(f"/crm/engage/emails/{email_id}").status_code == 404
    assert "Rita" not in client.get("/crm/engage/timeline/customer/1").get_data(as_text=True)
    own = sign_in(app.test_client(), 2).get(f"/crm/engage/emails/{email_id}")
    assert own.status_code == 200 and "Rita&#39;s secret" in own.get_data(as_text=True)


def test_a_sales_manager_sees_the_team_but_not_another_team(app):
    email_id = add_email(app, 2, "Team north mail")
    assert sign_in(app.test_client(), 3).get(f"/crm/engage/emails/{email_id}").status_code == 200
    assert sign_in(app.test_client(), 6).get(f"/crm/engage/emails/{email_id}").status_code == 404


def test_a_user_without_a_sales_role_gets_a_page_that_says_why(app):
    response = sign_in(app.test_client(), 4).get("/crm/engage/timeline/customer/1")
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "A sales role is needed" in body and "ask your administrator" in body


def test_nobody_signed_in_is_told_to_sign_in(app):
    response = app.test_client().get("/crm/engage/timeline/customer/1")
    assert response.status_code == 401 and "Sign in" in response.get_data(as_text=True)


def test_only_an_admin_changes_the_engagement_switch(app):
    assert sign_in(app.test_client(), 1).get("/crm/engage/settings").status_code == 403
    admin = sign_in(app.test_client(), 5)
    token = csrf_token(admin, "/crm/engage/settings")
    response = admin.post("/crm/engage/settings", data={"csrf_token": token}, follow_redirects=True)
    assert "Email engagement is now off" in response.get_data(as_text=True)
    with app.app_context():
        from engage.organisation import engagement_enabled

        assert engagement_enabled() is False


def test_a_post_without_its_csrf_token_is_refused_with_400_and_changes_nothing(app):
    admin = sign_in(app.test_client(), 5)
    response = admin.post("/crm/engage/settings", data={})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    with app.app_context():
        from engage.organisation import engagement_enabled

        assert engagement_enabled() is True


def test_the_admin_sees_whether_workers_and_the_sweep_are_alive(app, redis_client):
    # A flushed Redis: no sweep has run yet, whatever an earlier test did.
    admin = sign_in(app.test_client(), 5)
    body = admin.get("/crm/engage/settings").get_data(as_text=True)
    assert "Workers listening on the queue engage" in body
    assert "never — start the scheduler" in body
    with app.app_context():
        from engage.jobs import sweep

        sweep()
    body = admin.get("/crm/engage/settings").get_data(as_text=True)
    # The time in the reader's zone and language; UTC only in the machine-readable attribute.
    assert "never — start the scheduler" not in body
    assert re.search(r'<time datetime="[^"]+\+00:00">[^<]*\d:\d\d:\d\d[^<]*</time>', body)
    assert "UTC</time>" not in body


def test_a_refusal_to_htmx_is_an_explained_partial_that_engage_js_swaps_in(app):
    response = sign_in(app.test_client(), 4).get(
        "/crm/engage/timeline/customer/1", headers={"HX-Request": "true"}
    )
    assert response.status_code == 403
    assert response.headers["X-Engage-Explained"] == "1"
    body = response.get_data(as_text=True)
    assert "A sales role is needed" in body and "<html" not in body


def test_an_unknown_email_is_an_explained_404(app):
    response = sign_in(app.test_client(), 1).get("/crm/engage/emails/12345")
    assert response.status_code == 404
    assert "not yours to see" in response.get_data(as_text=True)


def test_a_host_template_names_a_record_by_type_and_id_or_by_record_ref(app):
    from flask import render_template_string

    with app.test_request_context():
        html = render_template_string(
            '{{ engage_timeline("customer", 1) }}|{{ engage_timeline(RecordRef("customer", 2)) }}'
        )
    first, second = html.split("|")
    assert 'data-engage-timeline-url="/crm/engage/timeline/customer/1"' in first
    assert 'data-engage-timeline-url="/crm/engage/timeline/customer/2"' in second
    # Nobody is signed in here: the slot explains instead of showing the timeline.
    assert "Sign in to use email engagement." in first
