"""The API page's try-it panel in a real Chromium under the CSP: choose an image, read the answer."""

import pytest

from conftest import datasets_dir
from projects.roles import Role
from projects.tests.factories import PASSWORD, MembershipFactory, ProjectFactory, UserFactory

HYM = datasets_dir() / "hymenoptera_data"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_answers_a_chosen_image_with_the_zero_shot_model_and_plots_nothing_inline(live_server, browser_page):
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    from labeling.services import label_create
    from training import zeroshot

    page = browser_page
    project = ProjectFactory(name="Hive")
    MembershipFactory(project=project, role=Role.VIEWER, user=UserFactory(username="ada"))
    for name in ("ants", "bees"):
        label_create(project=project, name=name)
    zeroshot.zero_shot_sync(project_id=project.pk)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/projects/{project.pk}/api/")
    bee = sorted((HYM / "val" / "bees").glob("*.jpg"))[0]
    page.set_input_files("#try-file", str(bee))  # choosing is enough: pictor.js sends it
    page.wait_for_selector("#try-result strong", timeout=60_000)
    assert page.inner_text("#try-result strong") == "bees"
    assert "zero_shot" in page.inner_text("#try-result") and page.url.endswith("/api/")  # answered in place
