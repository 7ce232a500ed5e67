from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import Label, LabelEvent, Lease, Sample
from labeling.tests.factories import make_sample


def test_session_shows_one_image_with_keys_and_preloads_the_next(team, client_for):
    for i in range(3):
        make_sample(team.project, seed=i)
    from labeling.services import label_create

    label_create(project=team.project, name="ants")
    page = (
        client_for(team.user("labeler"))
        .get(reverse("label_session", kwargs={"project_id": team.project.pk}))
        .content.decode()
    )
    assert 'id="label-image"' in page and 'id="preload-next"' in page
    assert "<kbd>1</kbd> ants" in page and "3</strong> left unlabeled" in page
    assert Lease.objects.count() == 2  # the current image and the preloaded one


def test_submitting_a_label_over_htmx_returns_the_next_item(team, client_for):
    a = make_sample(team.project, seed=1)
    b = make_sample(team.project, seed=2)
    c = client_for(team.user("labeler"))
    url = reverse("label_submit", kwargs={"project_id": team.project.pk, "sample_id": a.pk})
    part = c.post(url, {"label": ["ants", ""]}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and f'data-sample="{b.pk}"' in part
    assert "1</strong> labeled by you today" in part
    assert [l.name for l in Sample.objects.get(pk=a.pk).labels.all()] == ["ants"]


def test_submitting_nothing_explains_instead_of_failing(team, client_for):
    a = make_sample(team.project, seed=1)
    c = client_for(team.user("labeler"))
    part = c.post(
        reverse("label_submit", kwargs={"project_id": team.project.pk, "sample_id": a.pk}),
        {"label": [""]},
        HTTP_HX_REQUEST="true",
    )
    assert part.status_code == 200 and "Choose a label first" in part.content.decode()


def test_undo_brings_the_sample_back_and_history_shows_it(team, client_for):
    a = make_sample(team.project, seed=1)
    c = client_for(team.user("labeler"))
    c.post(reverse("label_submit", kwargs={"project_id": team.project.pk, "sample_id": a.pk}), {"label": "ants"})
    hist = c.get(
        reverse("label_history", kwargs={"project_id": team.project.pk, "back": 1}), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert f'data-sample="{a.pk}"' in hist and "key-button current" in hist
    part = c.post(
        reverse("label_undo", kwargs={"project_id": team.project.pk}), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert f'data-sample="{a.pk}"' in part
    assert Sample.objects.get(pk=a.pk).labeled_at is None
    assert LabelEvent.objects.filter(sample=a, via="undo").exists()


def test_empty_queue_says_so(team, client_for):
    page = (
        client_for(team.user("labeler"))
        .get(reverse("label_session", kwargs={"project_id": team.project.pk}))
        .content.decode()
    )
    assert 'id="queue-empty"' in page


def test_grid_labeling_applies_and_removes(team, client_for):
    samples = [make_sample(team.project, seed=i) for i in range(3)]
    c = client_for(team.user("labeler"))
    url = reverse("samples_bulk_label", kwargs={"project_id": team.project.pk})
    c.post(url, {"sample": [str(s.pk) for s in samples[:2]], "label": "bees", "mode": "add"})
    assert Sample.objects.filter(labeled_at__isnull=False).count() == 2
    c.post(url, {"sample": [str(samples[0].pk)], "label": "bees", "mode": "remove"})
    assert Sample.objects.filter(labeled_at__isnull=False).count() == 1


def test_label_schema_add_edit_merge_delete_over_htmx(team, client_for):
    c = client_for(team.user("admin"))
    pid = team.project.pk
    part = c.post(
        reverse("label_add", kwargs={"project_id": pid}), {"name": "ant"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "<html" not in part and "ant" in part
    c.post(reverse("label_add", kwargs={"project_id": pid}), {"name": "ants"})
    ant, ants = Label.objects.get(name="ant"), Label.objects.get(name="ants")
    make_sample(team.project, seed=1, labels=["ant"])
    part = c.post(
        reverse("label_merge", kwargs={"project_id": pid, "label_id": ant.pk}),
        {"target": str(ants.pk)},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "1 sample(s) moved" in part and not Label.objects.filter(name="ant").exists()
    part = c.post(
        reverse("label_edit", kwargs={"project_id": pid, "label_id": ants.pk}),
        {"name": "ants", "color": "nope", "shortcut": "1"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "Colours look like" in part
    part = c.post(
        reverse("label_delete", kwargs={"project_id": pid, "label_id": ants.pk}), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "1 sample(s) lost that label" in part


def test_next_api_leases_and_differs_between_callers(team):
    for i in range(4):
        make_sample(team.project, seed=i)
    a, b = APIClient(), APIClient()
    a.force_authenticate(team.user("labeler"))
    b.force_authenticate(team.user("admin"))
    url = f"/api/v1/projects/{team.project.pk}/samples/next?count=2"
    ra, rb = a.get(url).json()["results"], b.get(url).json()["results"]
    assert len(ra) == len(rb) == 2 and not {r["id"] for r in ra} & {r["id"] for r in rb}
    assert set(ra[0]) == {"id", "image_url", "score", "suggestion"}
    assert a.get(f"/api/v1/projects/{team.project.pk}/samples/next?count=0").status_code == 400
    viewer = APIClient()
    viewer.force_authenticate(team.user("viewer"))
    assert viewer.get(url).status_code == 403


def test_project_page_shows_per_labeler_counts(team, client_for):
    s = make_sample(team.project, seed=1)
    from labeling.services import sample_labels_set

    sample_labels_set(sample=s, names=["ants"], user=team.user("labeler"))
    page = (
        client_for(team.user("viewer"))
        .get(reverse("project_detail", kwargs={"project_id": team.project.pk}))
        .content.decode()
    )
    assert 'id="labeler-counts"' in page and '<th scope="row">labeler</th><td>1</td><td>1</td>' in page


def test_it_applies_one_rule_for_creating_labels_on_the_page_and_the_api(team, client_for):
    """Labelers may create labels everywhere (uploads create them too); viewers nowhere."""
    from labeling.models import Label
    from labeling.services import LABEL_CREATE_ROLE

    assert LABEL_CREATE_ROLE == "labeler"
    pid = team.project.pk
    page = client_for(team.user("labeler")).get(reverse("label_schema", kwargs={"project_id": pid})).content.decode()
    assert 'id="add-label-form"' in page
    r = client_for(team.user("labeler")).post(reverse("label_add", kwargs={"project_id": pid}), {"name": "wasp"})
    assert r.status_code in (200, 302) and Label.objects.filter(project=team.project, name="wasp").exists()
    api = APIClient()
    api.force_authenticate(team.user("labeler"))
    assert api.post(f"/api/v1/projects/{pid}/labels", {"name": "hornet"}, format="json").status_code == 201
    viewer_page = (
        client_for(team.user("viewer")).get(reverse("label_schema", kwargs={"project_id": pid})).content.decode()
    )
    assert 'id="add-label-form"' not in viewer_page
    assert (
        client_for(team.user("viewer"))
        .post(reverse("label_add", kwargs={"project_id": pid}), {"name": "x"})
        .status_code
        == 403
    )
    api.force_authenticate(team.user("viewer"))
    assert api.post(f"/api/v1/projects/{pid}/labels", {"name": "y"}, format="json").status_code == 403
