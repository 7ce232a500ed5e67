"""Five images labeled with the keyboard only, in a real Chromium."""

import pytest

from labeling.models import LabelEvent, Sample
from labeling.services import label_create
from labeling.tests.factories import make_sample
from projects.tests.factories import PASSWORD
from tests.browser import ARTIFACTS


def sign_in(page, base, username, next_path="/"):
    page.goto(f"{base}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_label_five_images_with_the_keyboard(live_server, browser_page, team):
    page = browser_page
    project = team.project
    for i in range(7):
        make_sample(project, seed=i)
    label_create(project=project, name="ants")  # key 1
    label_create(project=project, name="bees")  # key 2
    sign_in(page, live_server.url, "labeler", f"/projects/{project.pk}/label/")
    page.wait_for_selector("#label-image")

    keys = ["1", "2", "1", "1", "2"]
    for n, key in enumerate(keys, start=1):
        shown = page.get_attribute("#label-image", "data-sample")
        page.keyboard.press(key)
        page.wait_for_function(
            "([n, shown]) => document.getElementById('done-today').textContent === String(n)"
            " && document.getElementById('label-image').dataset.sample !== shown",
            arg=[n, shown],
        )
    labeled = {e.sample_id: e.new for e in LabelEvent.objects.filter(sample__project=project)}
    assert sorted(v[0] for v in labeled.values()) == sorted(["ants" if k == "1" else "bees" for k in keys])

    # S skips (the image goes back to the team, not to this labeler); Z undoes the last label.
    skipped = page.get_attribute("#label-image", "data-sample")
    page.keyboard.press("s")
    page.wait_for_function("s => document.getElementById('label-image').dataset.sample !== s", arg=skipped)
    page.keyboard.press("z")
    page.wait_for_function("() => document.getElementById('done-today').textContent === '4'")
    assert Sample.objects.filter(project=project, labeled_at__isnull=False).count() == 4
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "labeling.png"), full_page=True)
