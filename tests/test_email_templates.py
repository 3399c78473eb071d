"""Email templates (SPEC S29–S32): the managers' pages, Insert template, and the figures.

Everything goes through the doors a user uses: the template pages and the compose panel over
HTTP, sending through the delivery worker to a real SMTP sink, opens through the pixel and the
event worker, replies through the inbound endpoint.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
import sqlalchemy as sa

from engage import current_engage
from engage.jobs import sweep
from engage.models import Email, EmailTemplate, TemplateUse, utcnow
from engage.template_performance import best_templates, opportunity_won
from tests.hostapp import Customer, db
from tests.support import (
    CHROME,
    COMPOSE_URL,
    GREETING,
    TEMPLATES,
    TOKEN,
    age_delivery,
    compose_fields,
    csrf_token,
    drain,
    post_inbound,
    reply,
    run_delivery,
    save_template,
    sign_in,
)


@pytest.fixture
def tpl_app(app, smtp_sink):
    app.config.update(
        ENGAGE_SMTP_URL=smtp_sink.url,
        ENGAGE_PUBLIC_URL="https://crm.example.com",
        ENGAGE_INBOUND_TOKEN=TOKEN,
        ENGAGE_TEMPLATE_MIN_SAMPLE=1,
    )
    with app.app_context():
        ada = db.session.get(Customer, 1)
        ada.language, ada.order_number, ada.won = "de", "SO-10042", False
        db.session.get(Customer, 2).language = "en"
        db.session.commit()
    return app


def templates(app) -> list[EmailTemplate]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(EmailTemplate).order_by(EmailTemplate.id)))
        db.session.expunge_all()
        return rows


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


# ---- the managers' pages -----------------------------------------------------------------


def test_a_manager_creates_a_template_and_finds_it_in_the_list(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    response = save_template(mia, name="Danke", language="de")
    assert response.status_code == 302
    [saved] = templates(tpl_app)
    assert (saved.name, saved.language, saved.category) == ("Danke", "de", "Follow-up")
    assert "{{ recipient.first_name" in saved.html_body and "Hello" in saved.text_body
    listing = text_of(mia.get(TEMPLATES))
    assert "Danke" in listing and "German" in listing and "Template “Danke” saved." in listing


def test_a_syntax_error_is_shown_with_its_line_and_nothing_is_saved(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    broken = "<div>Hello<br>second line<br>{% if recipient.first_name %}Hi{{ recipient.first_name }}</div>"
    response = save_template(mia, body=broken)
    assert response.status_code == 422
    page = text_of(response)
    assert "The template was not saved" in page
    assert re.search(r"Line 3: .*(endif|end of template)", page), page
    assert "second line" in page  # what was written comes back
    assert templates(tpl_app) == []
    subject = save_template(mia, subject="Hi {{ recipient.first_name ")
    assert subject.status_code == 422 and "Line 1:" in text_of(subject)
    assert templates(tpl_app) == []


def test_comparisons_typed_in_the_rich_editor_work(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    body = "<div>{% if recipient.first_name &gt; 'A' %}Dear {{ recipient.first_name }}{% endif %}</div>"
    assert save_template(mia, body=body).status_code == 302
    [template] = templates(tpl_app)
    assert "{% if recipient.first_name > 'A' %}" in template.html_body
    sam = sign_in(tpl_app.test_client(), 1)
    data = compose_data(sam, action="apply_template", template_choice=str(template.id))
    assert "Dear Ada" in text_of(sam.post("/crm/engage/compose", data=data))


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ recipient.__class__ }}",
        "{{ config }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ self._TemplateReference__context }}",
        "{{ recipient['__class__'] }}",
        "{% include 'engage/layout.html' %}",
    ],
)
def test_sandbox_escapes_are_refused_when_saving(tpl_app, source):
    mia = sign_in(tpl_app.test_client(), 3)
    response = save_template(mia, body=f"<div>{source}</div>")
    assert response.status_code == 422
    assert "Line 1:" in text_of(response)
    assert templates(tpl_app) == []


def test_a_salesperson_cannot_create_edit_or_retire_templates(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    save_template(mia)
    [template] = templates(tpl_app)
    sam = sign_in(tpl_app.test_client(), 1)
    token = csrf_token(sam)
    assert sam.get(TEMPLATES).status_code == 403
    assert "sales managers" in text_of(sam.get(TEMPLATES + "/new"))
    for url in (TEMPLATES + "/new", f"{TEMPLATES}/{template.id}"):
        response = sam.post(url, data={"csrf_token": token, "name": "Mine", "action": "save"})
        assert response.status_code == 403
    retire = sam.post(f"{TEMPLATES}/{template.id}", data={"csrf_token": token, "action": "retire"})
    assert retire.status_code == 403
    nobody = sign_in(tpl_app.test_client(), 4)
    assert nobody.get(TEMPLATES).status_code == 403
    assert templates(tpl_app)[0].name == "Thank you" and templates(tpl_app)[0].retired_at is None
    missing = mia.get(f"{TEMPLATES}/99999")
    assert missing.status_code == 404


def test_the_preview_fills_in_a_chosen_record_and_names_the_missing_values(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    data = {
        "csrf_token": csrf_token(mia, TEMPLATES + "/new"),
        "name": "Intro",
        "language": "en",
        "subject": "For {{ recipient.first_name }} in {{ recipient.city }}",
        "body": GREETING,
        "body_format": "html",
        "preview_record": "customer:3",
        "action": "preview",
    }
    page = text_of(mia.post(TEMPLATES + "/new", data=data))
    assert "Preview for Hidden Bcc" in page
    assert "Hello Hidden," in page
    assert "Missing for this record, left out: Recipient's city, Order number." in page
    data["preview_record"] = "customer:1"
    page = text_of(mia.post(TEMPLATES + "/new", data=data))
    assert "For Ada in London" in page and "Your order SO-10042" in page
    assert "Every value was filled in." in page
    assert templates(tpl_app) == []  # a preview saves nothing
    data["body"] = "<div>{% if x %}never closed</div>"
    page = text_of(mia.post(TEMPLATES + "/new", data=data))
    assert "Fix the marked problems to see the preview." in page
    assert re.search(r"Line 1: .*endif", page)  # and the problem is marked on the field


def test_the_managers_list_filters_by_language_and_searches(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    save_template(mia, name="Danke", language="de", subject="Vielen Dank")
    save_template(mia, name="Thank you", language="en")
    german = text_of(mia.get(TEMPLATES + "?language=de"))
    assert ">Danke</a>" in german and ">Thank you</a>" not in german
    found = text_of(mia.get(TEMPLATES + "?q=VIELEN"))
    assert ">Danke</a>" in found and ">Thank you</a>" not in found
    none = text_of(mia.get(TEMPLATES + "?language=fr"))
    assert "No template matches." in none


def test_save_as_new_template_keeps_the_original(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    save_template(mia, name="Thank you", language="en")
    [original] = templates(tpl_app)
    response = mia.post(
        f"{TEMPLATES}/{original.id}",
        data={
            "csrf_token": csrf_token(mia, f"{TEMPLATES}/{original.id}"),
            "name": "Danke",
            "language": "de",
            "subject": "Danke, {{ recipient.first_name }}",
            "body": "<div>Hallo {{ recipient.first_name }}</div>",
            "body_format": "html",
            "action": "save_copy",
        },
    )
    assert response.status_code == 302
    first, copy = templates(tpl_app)
    assert (first.id, first.name, first.language) == (original.id, "Thank you", "en")
    assert (copy.name, copy.language, copy.created_by) == ("Danke", "de", "3")
    assert "Saved as a new template, “Danke”." in text_of(mia.get(TEMPLATES))


def test_a_retired_template_leaves_the_window_and_keeps_its_figures(tpl_app):
    mia = sign_in(tpl_app.test_client(), 3)
    save_template(mia, name="Old intro")
    [template] = templates(tpl_app)
    token = csrf_token(mia, f"{TEMPLATES}/{template.id}")
    mia.post(f"{TEMPLATES}/{template.id}", data={"csrf_token": token, "action": "retire"})
    sam = sign_in(tpl_app.test_client(), 1)
    assert "Old intro" not in text_of(sam.get("/crm/engage/templates/choices?template_language="))
    link = f'href="{TEMPLATES}/{template.id}"'
    assert link not in text_of(mia.get(TEMPLATES))
    assert link in text_of(mia.get(TEMPLATES + "?retired=1"))
    mia.post(f"{TEMPLATES}/{template.id}", data={"csrf_token": token, "action": "restore"})
    assert "Old intro" in text_of(sam.get("/crm/engage/templates/choices?template_language="))


# ---- Insert template -----------------------------------------------------------------------


def compose_data(client, **fields):
    defaults = {
        "body_format": "html",
        "to": "Ada Lovelace <ada@example.com>",
        "subject": "",
        "body": "",
        "browser_zone": "Europe/Berlin",
    }
    return compose_fields(client, **(defaults | fields))


def choice(template_id: int) -> str:
    return f'name="template_choice" value="{template_id}"'


def two_templates(app) -> tuple[int, int]:
    mia = sign_in(app.test_client(), 3)
    save_template(mia, name="Danke", language="de", subject="Danke, {{ recipient.first_name }}")
    save_template(mia, name="Thank you", language="en", category="Thanks")
    german, english = templates(app)
    return german.id, english.id


def test_the_window_starts_in_the_recipients_language_and_filters_and_searches(tpl_app):
    german, english = two_templates(tpl_app)
    sam = sign_in(tpl_app.test_client(), 1)
    panel = text_of(sam.get(COMPOSE_URL))  # Ada's language is German
    assert "Insert template" in panel
    assert '<option value="de" selected>German</option>' in panel
    assert choice(german) in panel and choice(english) not in panel
    listed = text_of(sam.get("/crm/engage/templates/choices?template_language=en&template_q="))
    assert "Thank you" in listed and "Danke" not in listed
    everything = text_of(sam.get("/crm/engage/templates/choices?template_language=&template_q="))
    assert "Thank you" in everything and "Danke" in everything
    assert "Hello [Recipient's first name],\nthank you" in everything  # values by their label
    by_content = text_of(
        sam.get("/crm/engage/templates/choices?template_language=&template_q=ORDER")
    )
    assert "2 templates" in by_content
    by_name = text_of(sam.get("/crm/engage/templates/choices?template_language=&template_q=danke"))
    assert "Danke" in by_name and "Thank you" not in by_name
    none = text_of(sam.get("/crm/engage/templates/choices?template_language=fr&template_q="))
    assert "There are no templates in French" in none
    # Without JavaScript, Search posts the panel and it comes back with the window open.
    page = text_of(
        sam.post(
            "/crm/engage/compose",
            data=compose_data(
                sam, action="template_search", template_language="en", template_q="thank"
            ),
        )
    )
    assert "engage-template-window" in page and "data-engage-keep-open open" in page
    assert choice(english) in page and choice(german) not in page


def test_the_window_shows_every_language_when_the_recipients_has_no_templates(tpl_app):
    two_templates(tpl_app)
    with tpl_app.app_context():
        db.session.get(Customer, 1).language = "fr"
        db.session.commit()
    sam = sign_in(tpl_app.test_client(), 1)
    panel = text_of(sam.get(COMPOSE_URL))
    assert "There are no templates in French yet, so every language is shown." in panel
    assert '<option value="" selected>All languages</option>' in panel
    assert "Danke" in panel and "Thank you" in panel


@pytest.mark.parametrize("tag", ["de-AT", "de_CH", "DE"])
def test_a_regional_language_tag_picks_the_language(tpl_app, tag):
    two_templates(tpl_app)
    with tpl_app.app_context():
        db.session.get(Customer, 1).language = tag
        db.session.commit()
    sam = sign_in(tpl_app.test_client(), 1)
    assert '<option value="de" selected>German</option>' in text_of(sam.get(COMPOSE_URL))


def test_the_window_defaults_to_the_users_language_when_the_recipient_has_none(tpl_app):
    two_templates(tpl_app)
    with tpl_app.app_context():
        db.session.get(Customer, 1).language = None
        db.session.commit()
    sam = sign_in(tpl_app.test_client(), 1)
    panel = text_of(sam.get(COMPOSE_URL))
    assert '<option value="en" selected>English</option>' in panel


def test_apply_fills_in_the_first_recipients_values_and_the_draft_remembers_it(tpl_app):
    german, _english = two_templates(tpl_app)
    sam = sign_in(tpl_app.test_client(), 1)
    data = compose_data(sam, action="apply_template", template_choice=str(german))
    response = sam.post("/crm/engage/compose", data=data)
    assert response.status_code == 200
    page = text_of(response)
    assert 'value="Danke, Ada"' in page
    assert "Hello Ada,<br>" in page and "Your order SO-10042" in page
    assert "Template “Danke” applied." in page
    assert f'name="template_id" value="{german}"' in page
    assert "differ per recipient" not in page
    # The rep edits the text and saves: the draft keeps the template.
    data.update(action="save", subject="Danke, Ada!", body="<div>Hello Ada, edited.</div>")
    data["template_id"] = str(german)
    assert sam.post("/crm/engage/compose", data=data).status_code == 302
    with tpl_app.app_context():
        email = db.session.scalars(sa.select(Email)).one()
        assert (email.template_id, email.subject) == (german, "Danke, Ada!")
        assert "edited" in email.html_body


def test_with_several_recipients_the_first_ones_values_are_used_and_the_ui_says_so(tpl_app):
    german, _english = two_templates(tpl_app)
    sam = sign_in(tpl_app.test_client(), 1)
    data = compose_data(
        sam,
        to="Ada Lovelace <ada@example.com>, Grace Hopper <grace@example.com>",
        action="apply_template",
        template_choice=str(german),
    )
    page = text_of(sam.post("/crm/engage/compose", data=data))
    assert 'value="Danke, Ada"' in page
    assert (
        "Some values differ per recipient: they were filled in for the first recipient, Ada Lovelace."
        in page
    )


def test_a_missing_value_falls_back_to_the_default_and_is_reported(tpl_app):
    two_templates(tpl_app)
    mia = sign_in(tpl_app.test_client(), 3)
    save_template(mia, name="Unknown", subject="Hi {{ recipient.first_name }}")
    unknown = templates(tpl_app)[-1].id
    sam = sign_in(tpl_app.test_client(), 1)
    data = compose_data(
        sam, to="someone@else.example", action="apply_template", template_choice=str(unknown)
    )
    page = text_of(sam.post("/crm/engage/compose", data=data))
    assert "Hello there," in page  # the template's default
    assert 'value="Hi "' in page
    assert "Missing for this recipient, left out: Recipient's first name." in page


def test_apply_without_a_choice_explains_and_keeps_the_draft(tpl_app):
    two_templates(tpl_app)
    sam = sign_in(tpl_app.test_client(), 1)
    data = compose_data(sam, subject="Keep me", body="<div>Mine</div>", action="apply_template")
    response = sam.post("/crm/engage/compose", data=data)
    assert response.status_code == 422
    page = text_of(response)
    assert "Choose a template in the list" in page and 'value="Keep me"' in page


# ---- the figures ---------------------------------------------------------------------------


def send_with_template(app, template_id: int, to="Ada Lovelace <ada@example.com>") -> int:
    sam = sign_in(app.test_client(), 1)
    data = compose_data(sam, action="apply_template", template_choice=str(template_id), to=to)
    page = text_of(sam.post("/crm/engage/compose", data=data))
    subject = re.search(r'name="subject" value="([^"]*)"', page).group(1)
    body = re.search(r'data-html="([^"]*)"', page).group(1)
    data.update(action="send", subject=subject, body=body, template_id=str(template_id))
    assert sam.post("/crm/engage/compose", data=data).status_code == 302
    with app.app_context():
        email_id = db.session.scalar(sa.select(sa.func.max(Email.id)))
    assert run_delivery(app, email_id) == "sent"
    age_delivery(app, email_id)
    return email_id


def token_of(app, email_id: int, address: str) -> str:
    with app.app_context():
        email = db.session.get(Email, email_id)
        return next(p.token for p in email.recipients if p.address == address)


def figures(app, template_id: int) -> tuple[int, ...]:
    with app.app_context():
        t = db.session.get(EmailTemplate, template_id)
        return (t.sent, t.followed_sent, t.opened, t.replied, t.opportunities, t.won)


def test_workers_count_human_opens_and_replies_once_and_never_machines(tpl_app):
    german, _english = two_templates(tpl_app)
    first = send_with_template(tpl_app, german)
    second = send_with_template(tpl_app, german)
    assert figures(tpl_app, german) == (2, 2, 0, 0, 2, 0)
    client = tpl_app.test_client()
    # A machine open (a mail privacy proxy) and a link scanner count nowhere.
    client.get(
        f"/crm/engage/t/o/{token_of(tpl_app, second, 'ada@example.com')}.gif",
        headers={"User-Agent": "Mozilla/5.0"},
        environ_base={"REMOTE_ADDR": "17.58.101.4"},
    )
    drain(tpl_app)
    assert figures(tpl_app, german)[2] == 0
    # Ada opens the first email twice: one message opened.
    pixel = f"/crm/engage/t/o/{token_of(tpl_app, first, 'ada@example.com')}.gif"
    client.get(pixel, headers={"User-Agent": CHROME})
    client.get(pixel, headers={"User-Agent": CHROME})
    drain(tpl_app)
    assert figures(tpl_app, german)[2] == 1
    # An out-of-office answer is no reply; a real reply is, once.
    with tpl_app.app_context():
        second_id = db.session.get(Email, second).message_id
        first_id = db.session.get(Email, first).message_id
    post_inbound(
        tpl_app,
        reply(
            second_id, message_id="<ooo@example.com>", headers={"Auto-Submitted": "auto-replied"}
        ),
    )
    assert figures(tpl_app, german)[3] == 0
    post_inbound(tpl_app, reply(first_id, message_id="<r1@example.com>"))
    post_inbound(tpl_app, reply(first_id, message_id="<r2@example.com>"))
    assert figures(tpl_app, german) == (2, 2, 1, 1, 2, 0)
    sam = sign_in(tpl_app.test_client(), 1)
    window = re.sub(
        r"<[^>]+>", "", text_of(sam.get("/crm/engage/templates/choices?template_language=de"))
    )
    assert "2 times" in window and "50% (of 2 followed)" in window and "50% (of 2 sent)" in window


def test_a_won_opportunity_counts_once_for_each_message_about_it(tpl_app):
    german, _english = two_templates(tpl_app)
    send_with_template(tpl_app, german)
    with tpl_app.app_context():
        assert opportunity_won("customer", "1") == 0  # not won yet: nothing moves
        db.session.get(Customer, 1).won = True
        db.session.commit()
        assert opportunity_won("customer", "1") == 1
        assert opportunity_won("customer", "1") == 0
    assert figures(tpl_app, german)[4:] == (1, 1)


def test_the_sweep_notices_a_won_opportunity_the_host_never_reported(tpl_app):
    german, _english = two_templates(tpl_app)
    send_with_template(tpl_app, german)
    with tpl_app.app_context():
        sweep()
        assert db.session.scalars(sa.select(TemplateUse)).one().won_checked_at is not None
        db.session.get(Customer, 1).won = True
        db.session.execute(sa.update(TemplateUse).values(won_checked_at=None))
        db.session.commit()
        sweep()
    assert figures(tpl_app, german)[4:] == (1, 1)


def test_the_sweep_stops_asking_about_old_messages(tpl_app):
    german, _english = two_templates(tpl_app)
    email_id = send_with_template(tpl_app, german)
    with tpl_app.app_context():
        db.session.get(Customer, 1).won = True
        db.session.execute(
            sa.update(TemplateUse)
            .where(TemplateUse.email_id == email_id)
            .values(sent_at=utcnow() - timedelta(days=181))
        )
        db.session.commit()
        sweep()
        assert db.session.get(TemplateUse, email_id).won_checked_at is None
    assert figures(tpl_app, german)[4:] == (1, 0)


def test_the_best_template_is_highlighted_only_with_a_large_enough_sample(tpl_app):
    german, english = two_templates(tpl_app)
    with tpl_app.app_context():
        for template_id, sent, opened in ((german, 4, 3), (english, 40, 20)):
            db.session.execute(
                sa.update(EmailTemplate)
                .where(EmailTemplate.id == template_id)
                .values(sent=sent, followed_sent=sent, opened=opened, replied=1)
            )
        db.session.commit()
        rows = list(db.session.scalars(sa.select(EmailTemplate)))
        assert best_templates(rows, min_sample=1)["opens"] == german
        assert best_templates(rows, min_sample=10) == {"opens": english, "replies": english}
    tpl_app.config["ENGAGE_TEMPLATE_MIN_SAMPLE"] = 10
    sam = sign_in(tpl_app.test_client(), 1)
    window = sam.get("/crm/engage/templates/choices?template_language=").get_data(as_text=True)
    assert window.count("engage-template-choice--best") == 1
    assert "★ Best for opens" in window and "★ Best for replies" in window
    assert "Best for sales" not in window
    # Before the window is opened, the compose panel suggests the best one.
    panel = text_of(sam.get("/crm/engage/compose?regarding=customer:2"))  # Grace: English
    assert "Suggested: “Thank you”, best for replies." in panel
    best = window.index("engage-template-choice--best")
    assert window.index(choice(english)) > best > 0
    assert window.index(choice(english)) < window.index(choice(german))


def test_a_template_that_fails_while_filling_in_is_explained_and_the_draft_kept(tpl_app):
    with tpl_app.app_context():
        db.session.add(
            EmailTemplate(
                name="Broken",
                language="en",
                subject="x",
                html_body="<div>{{ 1 // 0 }}</div>",
                created_by="3",
                updated_by="3",
            )
        )
        db.session.commit()
        template_id = db.session.scalar(sa.select(EmailTemplate.id))
        assert current_engage.db.session is db.session
    sam = sign_in(tpl_app.test_client(), 1)
    data = compose_data(
        sam, subject="Mine", action="apply_template", template_choice=str(template_id)
    )
    response = sam.post("/crm/engage/compose", data=data)
    assert response.status_code == 422
    page = text_of(response)
    assert "This template cannot be used" in page and 'value="Mine"' in page
