"""A finished batch browsed in a real Chromium: filter the result grid by predicted label, see the
thumbnails, select items and send them to labeling."""

import pytest

from batches import services
from batches.models import Batch
from batches.tests.conftest import drive, images, train_pixels_model, write_folder
from labeling.models import Sample
from tests.browser import ARTIFACTS
from tests.test_browser_labeling import sign_in


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_filter_a_finished_batch_by_label_and_send_items_to_labeling(
    live_server, browser_page, team, tmp_path, settings
):
    settings.PICTOR_BACKBONES = ["pixels"]
    settings.PICTOR_QUICK_SECONDS = 0.5
    settings.PICTOR_BATCH_CHUNK = 16
    root = tmp_path / "photos"
    write_folder(root, images(40))
    settings.PICTOR_IMPORT_ROOTS = [str(root)]
    train_pixels_model(team.project)
    batch = services.batch_start(project=team.project, source={"kind": "folder", "path": str(root)})
    drive(batch.pk)
    assert Batch.objects.get(pk=batch.pk).status == "succeeded"

    page = browser_page
    sign_in(page, live_server.url, "labeler", f"/projects/{team.project.pk}/batches/")
    page.click(f"#batch-{batch.pk} a")
    page.wait_for_selector("#result-count")
    assert page.text_content("#result-count").strip() == "40 items"
    assert page.locator("#batch-" + str(batch.pk) + " .status").text_content() == "succeeded"

    page.select_option("#id_label", "dark")  # htmx swaps the grid in place
    page.wait_for_function("() => document.getElementById('result-count').textContent.trim() === '20 items'")
    keys = page.eval_on_selector_all("#sample-grid .tile", "els => els.map(e => e.dataset.key)")
    assert len(keys) == 20 and all(k.startswith("d/") for k in keys)
    assert set(page.eval_on_selector_all("#sample-grid .result-label", "els => els.map(e => e.textContent)")) == {
        "dark"
    }
    assert "label=dark" in page.url  # the filter is in the address, so it can be shared
    page.wait_for_function(
        "() => [...document.querySelectorAll('#sample-grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )

    page.click("#sample-grid .tile:nth-child(1) .pick")
    page.click("#sample-grid .tile:nth-child(2) .pick")
    assert page.text_content("#selected-count") == "2 selected"
    with page.expect_navigation():
        page.click("#send-selected")
    assert "2 items on the way to labeling" in page.content()
    # The worker's part, run here: the selected items become samples of the project.
    services.to_samples_run(batch_id=batch.pk, keys=keys[:2], max_confidence=None)
    assert sorted(
        Sample.objects.filter(project=team.project, source="batch").values_list("filename", flat=True)
    ) == sorted(keys[:2])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "batches.png"), full_page=True)
