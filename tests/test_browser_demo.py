"""The demo CRM in a real browser: sign in, open a record, see its timeline."""

from __future__ import annotations

import pytest

from tests.conftest import axe_violations

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(tmp_path, database_url, redis_url, serve):
    from engage.demo import create_app

    app = create_app(
        {
            "ENGAGE_DEMO_DATA_DIR": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": database_url,
            "ENGAGE_REDIS_URL": redis_url,
        }
    )
    return serve(app)


def sign_in_as(page, demo, name: str) -> None:
    page.goto(demo.url + "/sign-in")
    page.get_by_role("button", name=name).click()
    page.wait_for_load_state()


def test_a_salesperson_signs_in_opens_a_contact_and_sees_its_timeline(page, demo):
    page.goto(demo.url + "/")
    assert "/sign-in" in page.url  # signed-out users are sent to sign in
    page.get_by_role("button", name="Salesperson").first.click()
    page.get_by_role("link", name="Contacts").first.click() if page.get_by_role(
        "link", name="Contacts"
    ).count() else None
    page.locator("a[href^='/contacts/']").first.click()
    timeline = page.get_by_role("region", name="Timeline")
    timeline.get_by_text("No activities yet.").wait_for()
    assert page.locator(".engage-timeline h2").inner_text() == "Timeline"


def test_the_record_page_has_no_serious_accessibility_violations(page, demo):
    page.goto(demo.url + "/sign-in")
    page.get_by_role("button", name="Salesperson").first.click()
    page.locator("a[href^='/contacts/']").first.click()
    page.get_by_text("No activities yet.").wait_for()
    violations = axe_violations(page)
    assert violations == [], [(v["id"], v["help"], len(v["nodes"])) for v in violations]


def test_a_user_without_a_role_is_told_why_on_the_record_page(page, demo):
    page.goto(demo.url + "/sign-in")
    page.get_by_role("button", name="No role").first.click()
    page.locator("a[href^='/contacts/']").first.click()
    page.get_by_text("A sales role is needed").wait_for()
