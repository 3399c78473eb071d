"""The demo CRM in a real browser: sign in, open a record, see its timeline."""

from __future__ import annotations

import pytest

from tests.browser_support import assert_accessible, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(start_demo):
    return start_demo(worker=False)


def test_a_salesperson_signs_in_opens_a_contact_and_sees_its_timeline(page, demo):
    page.goto(demo.url + "/")
    assert "/sign-in" in page.url  # signed-out users are sent to sign in
    page.get_by_role("button", name="Mia Berg").click()
    page.get_by_role("link", name="Marie Curie").first.click()
    assert page.get_by_role("heading", name="Marie Curie").is_visible()
    timeline = page.get_by_role("region", name="Timeline")
    timeline.get_by_text("No activities yet.").wait_for()
    assert timeline.get_by_role("heading").inner_text() == "Timeline"


def test_editing_a_contacts_address_and_follow_preference_in_the_demo_works(page, demo):
    sign_in(page, demo)
    page.get_by_role("link", name="Marie Curie").first.click()
    page.get_by_role("link", name="Edit address and follow email").click()
    page.get_by_label("City").fill("Lyon")
    page.get_by_label("Do not allow").check()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Lyon").wait_for()
    assert page.get_by_text("Do not allow").count() >= 1


def test_the_record_page_has_no_serious_accessibility_violations(page, demo):
    sign_in(page, demo, "Salesperson")
    page.locator("a[href^='/contacts/']").first.click()
    page.get_by_text("No activities yet.").wait_for()
    assert_accessible(page)


def test_a_user_without_a_role_is_told_why_on_the_record_page(page, demo):
    sign_in(page, demo, "No role")
    page.locator("a[href^='/contacts/']").first.click()
    page.get_by_text("A sales role is needed").wait_for()
