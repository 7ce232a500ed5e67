from django.urls import reverse

from labeling.models import Sample
from labeling.tests.factories import make_sample


def test_browser_filters_and_htmx_returns_only_the_grid(team, client_for):
    make_sample(team.project, seed=1, labels=["ants"])
    make_sample(team.project, seed=2)
    c = client_for(team.user("viewer"))
    url = reverse("sample_browser", kwargs={"project_id": team.project.pk})
    page = c.get(url).content.decode()
    assert "2 samples" in page and "<html" in page
    part = c.get(url + "?labeled=false", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="sample-grid").content.decode()
    assert "<html" not in part and "1 sample" in part and "unlabeled" in part
    assert "1 sample" in c.get(url + "?label=ants").content.decode()


def test_sample_page_shows_labels_metadata_and_history(team, client_for):
    sample = make_sample(team.project, seed=3, labels=["bees"], user=team.user("labeler"))
    c = client_for(team.user("labeler"))
    url = reverse("sample_detail", kwargs={"project_id": team.project.pk, "sample_id": sample.pk})
    page = c.get(url).content.decode()
    assert sample.sha256 in page and "64 × 48" in page and "labeler" in page
    r = c.post(
        reverse("sample_labels", kwargs={"project_id": team.project.pk, "sample_id": sample.pk}),
        {"label": ["ants", ""]},
    )
    assert r.status_code == 302
    page = c.get(url).content.decode()
    assert "bees → ants" in page


def test_labeling_two_labels_in_a_single_label_project_is_refused_with_a_message(team, client_for):
    sample = make_sample(team.project, seed=4)
    c = client_for(team.user("labeler"))
    r = c.post(
        reverse("sample_labels", kwargs={"project_id": team.project.pk, "sample_id": sample.pk}),
        {"label": ["a", "b"]},
        follow=True,
    )
    assert "single-label" in r.content.decode()
    assert Sample.objects.get(pk=sample.pk).labeled_at is None


def test_upload_page_offers_files_folders_and_zip(team, client_for):
    page = (
        client_for(team.user("labeler")).get(reverse("upload", kwargs={"project_id": team.project.pk})).content.decode()
    )
    assert 'id="file-input"' in page and "webkitdirectory" in page and ".zip" in page
    assert f"/api/v1/projects/{team.project.pk}/samples" in page


def test_it_pages_the_browser_by_keyset_links(team, client_for, monkeypatch):
    from labeling import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    made = [make_sample(team.project, seed=i) for i in range(3)]
    c = client_for(team.user("viewer"))
    url = reverse("sample_browser", kwargs={"project_id": team.project.pk})
    first = c.get(url).content.decode()
    assert "3 samples" in first and 'id="page-next"' in first and 'id="page-previous"' not in first
    href = first.split('id="page-next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    second = c.get(url + href).content.decode()
    oldest = min(made, key=lambda s: (s.created, -int(s.pk.hex, 16)))
    assert str(oldest.pk) in second and 'id="page-previous"' in second and 'id="page-next"' not in second
    assert c.get(url + "?cursor=not-a-cursor").status_code == 200  # a bad cursor is the first page
