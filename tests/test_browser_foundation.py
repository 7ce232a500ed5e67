"""A person signs in, creates a project and finds it on the dashboard, in a real Chromium."""

import pytest

from projects.models import Project
from projects.tests.factories import PASSWORD, UserFactory
from tests.browser import ARTIFACTS


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_sign_in_create_project_and_see_it_on_the_dashboard(live_server, browser_page):
    page = browser_page
    UserFactory(username="ada")
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty-state")

    page.click("text=New project")
    page.fill("#id_name", "Ants vs bees")
    page.fill("#id_description", "Is it an ant or a bee?")
    page.select_option("#id_task", "single_label")
    page.click("button:has-text('Create project')")
    page.wait_for_selector("h1:has-text('Ants vs bees')")
    project = Project.objects.get(name="Ants vs bees")
    assert str(project.pk) in page.url

    page.click("a.brand")
    row = page.locator("#project-table tbody tr", has_text="Ants vs bees")
    assert row.count() == 1
    assert "owner" in row.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_owner_adds_a_member_with_htmx_and_keyboard(live_server, browser_page):
    page = browser_page
    owner = UserFactory(username="olga")
    UserFactory(username="lars")
    from projects.services import project_create

    project = project_create(name="Birds", owner=owner)
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.pk}/members/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#member-table")
    page.fill("#add-member-form #id_user", "lars")
    page.select_option("#add-member-form #id_role", "labeler")
    page.focus("#add-member-form button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#member-lars")
    assert "lars added as labeler" in page.inner_text("#members-panel")
    assert project.memberships.get(user__username="lars").role == "labeler"
