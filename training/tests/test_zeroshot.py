"""Zero-shot before the first label: label names → ImageNet classes through WordNet, a model version
that answers invoke, suggests, is scored on the labels that arrive, and steps aside for a trained model."""

from unittest import mock

import numpy as np
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from conftest import datasets_dir
from labeling.services import label_create, sample_labels_set
from labeling.tests.factories import make_sample
from training import quick, runner, services, zeroshot
from training.ml import zeroshot as zs
from training.ml.backbone import imagenet_class_names
from training.models import ModelVersion

HYM = datasets_dir() / "hymenoptera_data"


def _names(mapping) -> set[str]:
    names = imagenet_class_names()
    return {names[i] for i in mapping.classes}


# --- the mapping ---------------------------------------------------------------------------------


def test_it_maps_bee_to_the_bee_class_and_plurals_and_case_alike():
    bee = zs.label_map("bee")
    assert _names(bee) == {"bee"} and bee.wordnet_id == "n02206856" and not bee.ambiguous
    assert zs.label_map("Bees").classes == bee.classes
    assert _names(zs.label_map("ants")) == {"ant"} and zs.label_map("ants").lemma == "ant"
    assert zs.label_map("mice").lemma == "mouse" and zs.label_map("geese").lemma == "goose"  # noun.exc


def test_it_maps_dog_to_every_breed_and_car_to_its_hyponyms():
    dog = _names(zs.label_map("dog"))
    assert len(dog) == 118 and {"golden retriever", "Chihuahua", "beagle", "Pembroke"} <= dog
    assert not dog & {"tabby", "timber wolf", "hotdog"}
    car = zs.label_map("car")
    assert {"sports car", "convertible", "cab", "ambulance", "jeep", "limousine"} <= _names(car)
    assert car.ambiguous and any("railcar" in s for s in car.other_senses)  # a railway car is another sense
    gr = zs.label_map("Golden Retriever")
    assert _names(gr) == {"golden retriever"} and zs.label_map("golden-retrievers").classes == gr.classes


@pytest.mark.parametrize("name", ["blorptastic", "xqzzy", "happiness", "", "   ", "1234", "!!"])
def test_it_refuses_names_that_mean_no_imagenet_class(name):
    assert zs.label_map(name) is None


def test_it_maps_a_name_with_no_class_of_its_own_to_its_closest_broader_sense_and_says_so():
    sneaker = zs.label_map("Sneakers")
    assert sneaker.approximate and sneaker.via == "shoe" and "running shoe" in _names(sneaker)
    deer = zs.label_map("deer")
    assert deer.approximate and {"impala", "gazelle"} <= _names(deer) and not _names(deer) & {"tabby", "beagle"}
    assert not zs.label_map("bee").approximate and zs.label_map("bee").via == ""
    # an adjective too (a texture name) is not taken for a noun sense it rarely means: "bubbly" is no wine
    for name in ("bubbly", "banded", "happiness"):
        assert zs.label_map(name) is None


def test_it_takes_the_head_noun_of_an_unknown_compound_and_the_first_alternative_that_maps():
    boot = zs.label_map("ankle boot")
    assert _names(boot) == {"cowboy boot"} and boot.via == "boot" and boot.approximate
    assert zs.label_map("ankle-boot").classes == boot.classes
    tee = zs.label_map("T-shirt/top")
    assert _names(tee) == {"jersey"} and tee.via == "t-shirt" and not tee.approximate
    # a compound WordNet knows as something else keeps its meaning: an X-ray is no stingray
    assert zs.label_map("x-ray") is None and zs.label_map("x ray") is None
    # ... also when its last word is a plural the lookup would strip ("worms" → worm)
    assert zs.label_map("can of worms") is None and zs.label_map("Colorado Springs") is None
    assert zs.label_map("blorp snark") is None
    # a head noun that is itself only approximate is not stacked on: a rib is no "support"
    assert zs.label_map("baby back ribs") is None and zs.label_map("red sneaker") is None


def test_it_gives_a_shared_class_to_the_more_specific_label_and_needs_every_label():
    dog, gr = zs.label_map("dog"), zs.label_map("golden retriever")
    groups = zs.class_groups([dog, gr])
    assert groups[1] == [207] and 207 not in groups[0] and len(groups[0]) == 117
    assert zs.class_groups([dog, None]) is None and zs.class_groups([dog]) is None
    assert zs.class_groups([gr, zs.label_map("golden retrievers")]) is None  # nothing of its own


def test_its_head_sums_the_softmax_over_each_labels_classes():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(1000, 8)).astype(np.float32), np.zeros(1000, np.float32)
    X = rng.normal(size=(3, 8)).astype(np.float32)
    head = zs.ZeroShotHead(W=W, b=b, groups=[[1, 2], [3]], multi_label=False, scale=2.0)
    p = head.imagenet_probs(X)
    expected = np.stack([p[:, 1] + p[:, 2], p[:, 3]], 1)
    np.testing.assert_allclose(head.predict_proba(X), expected / expected.sum(1, keepdims=True), rtol=1e-5)
    head.multi_label = True
    np.testing.assert_allclose(head.predict_proba(X), expected, rtol=1e-5)


def test_its_head_scores_many_rows_a_block_at_a_time():
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(1000, 8)).astype(np.float32), np.zeros(1000, np.float32)
    X = rng.normal(size=(2 * zs.ZeroShotHead.CHUNK + 5, 8)).astype(np.float32)
    head = zs.ZeroShotHead(W=W, b=b, groups=[[1, 2], [3]], multi_label=False, scale=2.0)
    seen = []
    real = head.imagenet_probs
    with mock.patch.object(head, "imagenet_probs", side_effect=lambda rows: seen.append(len(rows)) or real(rows)):
        p = head.predict_proba(X)
    # the (rows, 1000) softmax never holds more than a block: its memory does not grow with the project
    assert max(seen) <= zs.ZeroShotHead.CHUNK and sum(seen) == len(X)
    np.testing.assert_allclose(p[-5:], head.predict_proba(X[-5:]), rtol=1e-6)


# --- the model version ---------------------------------------------------------------------------


def _api(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_it_lists_each_labels_mapping_in_the_api_and_on_the_labels_page(team, client_for):
    for name in ("bees", "car", "blorptastic"):
        label_create(project=team.project, name=name)
    body = _api(team.user("viewer")).get(f"/api/v1/projects/{team.project.pk}/labels").json()
    by_name = {r["name"]: r for r in body["results"]}
    assert by_name["bees"]["imagenet"]["classes"] == ["bee"] and by_name["bees"]["imagenet"]["indices"] == [309]
    assert by_name["car"]["imagenet"]["ambiguous"] is True and "sports car" in by_name["car"]["imagenet"]["classes"]
    assert by_name["blorptastic"]["imagenet"] is None
    page = client_for(team.user("viewer")).get(reverse("label_schema", kwargs={"project_id": team.project.pk}))
    html = page.content.decode()
    assert "zs-ambiguous" in html and "no ImageNet match" in html and "No zero-shot model: blorptastic has" in html
    assert zeroshot.zero_shot_sync(project_id=team.project.pk) is None  # not every name maps: no version


def test_it_shows_approximate_mappings_and_labels_left_without_a_class_of_their_own(team, client_for):
    for name in ("ankle boot", "boots", "sandal"):
        label_create(project=team.project, name=name)
    body = _api(team.user("viewer")).get(f"/api/v1/projects/{team.project.pk}/labels").json()
    by_name = {r["name"]: r["imagenet"] for r in body["results"]}
    assert by_name["ankle boot"]["via"] == "boot" and by_name["ankle boot"]["approximate"] is True
    assert by_name["sandal"]["via"] is None and by_name["sandal"]["own_classes"] == 1
    # "ankle boot" and "boots" mean the one same class: one of them is left with nothing
    assert sorted(by_name[n]["own_classes"] for n in ("ankle boot", "boots")) == [0, 1]
    html = (
        client_for(team.user("viewer"))
        .get(reverse("label_schema", kwargs={"project_id": team.project.pk}))
        .content.decode()
    )
    assert "zs-approximate" in html and "zs-overlapped" in html
    assert "only ImageNet classes another label claims" in html
    assert zeroshot.zero_shot_sync(project_id=team.project.pk) is None


def test_it_queues_the_zero_shot_step_when_labels_are_created(team, django_capture_on_commit_callbacks):
    with mock.patch("training.tasks.zero_shot_sync.apply_async") as apply:
        with django_capture_on_commit_callbacks(execute=True):
            label_create(project=team.project, name="ants")
    assert apply.call_count == 1 and apply.call_args.kwargs["args"] == [str(team.project.pk)]


def test_it_refuses_zero_shot_as_a_training_mode(team):
    r = _api(team.user("admin")).post(
        f"/api/v1/projects/{team.project.pk}/trainings", {"mode": "zero_shot"}, format="json"
    )
    assert r.status_code == 400


@pytest.fixture
def ants_bees(team):
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    label_create(project=team.project, name="ants")
    label_create(project=team.project, name="bees")
    return team


def _val(cls: str, n: int, offset: int = 0):
    return sorted((HYM / "val" / cls).glob("*.jpg"))[offset : offset + n]


@pytest.mark.slow
def test_it_answers_invoke_on_real_ants_and_bees_before_any_training(ants_bees, client_for):
    team = ants_bees
    model = zeroshot.zero_shot_sync(project_id=team.project.pk)
    assert model.mode == "zero_shot" and model.deployed and model.label_names == ["ants", "bees"]
    assert zeroshot.zero_shot_sync(project_id=team.project.pk).pk == model.pk  # safe to run twice
    files = [(cls, p) for cls in ("ants", "bees") for p in _val(cls, 12)]
    c = _api(team.user("viewer"))
    handles = [open(p, "rb") for _, p in files]
    try:
        r = c.post(f"/api/v1/projects/{team.project.pk}/invoke", {"file": handles}, format="multipart")
    finally:
        for h in handles:
            h.close()
    assert r.status_code == 200
    results = r.json()["results"]
    assert all(x["model"] == {"id": str(model.pk), "version": model.version, "mode": "zero_shot"} for x in results)
    accuracy = np.mean([x["label"] == cls for (cls, _), x in zip(files, results)])
    assert accuracy > 0.9, accuracy
    listed = c.get(f"/api/v1/projects/{team.project.pk}/models").json()["results"]
    assert listed[0]["mode"] == "zero_shot" and listed[0]["deployed"] and listed[0]["metrics"]["accuracy"] is None
    assert c.get(f"/api/v1/projects/{team.project.pk}").json()["deployed_model"]["id"] == str(model.pk)
    detail = client_for(team.user("viewer")).get(
        reverse("model_detail", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    )
    assert detail.status_code == 200 and "no labeled samples yet" in detail.content.decode()


@pytest.mark.slow
def test_it_suggests_is_scored_on_labels_and_steps_aside_for_the_first_quick_model(ants_bees, settings, client_for):
    team = ants_bees
    settings.PICTOR_BACKBONES = ["lite2"]
    samples = [(cls, make_sample(team.project, data=p.read_bytes())) for cls in ("ants", "bees") for p in _val(cls, 6)]
    services.embeddings_compute(project_id=team.project.pk)
    model = zeroshot.zero_shot_sync(project_id=team.project.pk)
    # suggestions from the first image on, before any label
    suggested = quick.suggestions(team.project, [s for _, s in samples])
    assert np.mean([suggested[s.pk]["label"] == cls for cls, s in samples]) > 0.8
    for cls, s in samples[:3] + samples[6:9]:
        sample_labels_set(sample=s, names=[cls], user=team.user("labeler"))
    assert runner.quick_retrain_run(project_id=team.project.pk) == "succeeded"
    model.refresh_from_db()
    assert model.metrics["n_evaluated"] == 6 and model.metrics["accuracy"] >= 0.8 and model.metrics["honest"]
    trained = ModelVersion.objects.filter(project=team.project, mode="quick").latest("version")
    deployed = ModelVersion.objects.get(project=team.project, deployed=True)
    # right on every labeled sample, the zero-shot model keeps answering: six labels of ants and
    # bees cannot show a trained model to be better, and the suggestions stay the zero-shot's
    assert model.metrics["accuracy"] == 1.0 and deployed.pk == model.pk
    with mock.patch.object(zeroshot, "suggestions", return_value={"from": "zero-shot"}):
        assert quick.suggestions(team.project, [samples[0][1]]) == {"from": "zero-shot"}
    services.model_deploy(model=trained)
    page = client_for(team.user("viewer")).get(reverse("models_page", kwargs={"project_id": team.project.pk}))
    assert "all 6 labeled samples" in page.content.decode()
    # a new label set: a new zero-shot version, not deployed over the trained model
    label_create(project=team.project, name="dogs")
    newer = zeroshot.zero_shot_sync(project_id=team.project.pk)
    assert newer.pk != model.pk and newer.label_names == ["ants", "bees", "dogs"] and not newer.deployed
    assert not ModelVersion.objects.filter(pk=model.pk).exists()  # the old one is pruned


def _onehot(rows, n_classes=3, p=0.9):
    out = np.full((len(rows), n_classes), (1 - p) / (n_classes - 1), np.float32)
    out[np.arange(len(rows)), rows] = p
    return out


def test_it_gives_way_when_the_zero_shot_model_is_wrong_on_most_labeled_samples():
    y = np.array([0, 1, 2, 3])  # every label once: any held-out answer misses, so they prove nothing
    wrong = _onehot([1, 2, 3, 0], 4)
    assert not zs.trained_beats_zero_shot(y=y, trained=wrong, zero_shot=_onehot([0, 1, 0, 0], 4), multi_label=False)
    assert zs.trained_beats_zero_shot(y=y, trained=wrong, zero_shot=_onehot([0, 0, 0, 0], 4), multi_label=False)
    # with nothing held out at all, the same floor decides
    assert zs.trained_beats_zero_shot(y=y, trained=None, zero_shot=_onehot([0, 0, 0, 0], 4), multi_label=False)
    assert not zs.trained_beats_zero_shot(y=y, trained=None, zero_shot=_onehot(y, 4), multi_label=False)


def test_it_counts_only_labels_with_two_examples_against_a_good_zero_shot_model():
    y = np.array([0, 0, 1, 2, 1])
    # right on both comparable labels' rows where the zero-shot model misses one
    assert zs.trained_beats_zero_shot(
        y=y, trained=_onehot([0, 0, 1, 0, 1]), zero_shot=_onehot([0, 2, 1, 2, 1]), multi_label=False
    )
    # wrong on the singleton (by construction) and right elsewhere, as is the zero-shot model: a tie keeps it
    assert not zs.trained_beats_zero_shot(
        y=y, trained=_onehot([0, 0, 1, 0, 1]), zero_shot=_onehot(y), multi_label=False
    )
    # worse on the comparable rows
    assert not zs.trained_beats_zero_shot(
        y=y, trained=_onehot([1, 0, 1, 2, 1]), zero_shot=_onehot(y), multi_label=False
    )
    # a tie on the comparable rows, but the zero-shot model misses 2 of 5 overall: 3 of 4 beats 3 of 5
    assert zs.trained_beats_zero_shot(
        y=y, trained=_onehot([0, 0, 0, 0, 1]), zero_shot=_onehot([0, 0, 0, 0, 1]), multi_label=False
    )
    # no label with two examples: nothing to compare, a good zero-shot model stays
    y = np.array([0, 1, 2])
    assert not zs.trained_beats_zero_shot(y=y, trained=_onehot(y), zero_shot=_onehot(y), multi_label=False)


def test_it_compares_multi_label_answers_as_whole_label_sets():
    y = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    right = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.9]], np.float32)
    mostly = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]], np.float32)
    assert zs.trained_beats_zero_shot(y=y, trained=right, zero_shot=mostly, multi_label=True)
    assert not zs.trained_beats_zero_shot(y=y, trained=mostly, zero_shot=right, multi_label=True)
    assert zs.trained_beats_zero_shot(y=y, trained=None, zero_shot=1 - right, multi_label=True)
    with pytest.raises(ValueError):
        zs.trained_beats_zero_shot(y=y, trained=right[:2], zero_shot=right, multi_label=True)


def _versions(team, *, deployed_mode, pinned=False):
    label_create(project=team.project, name="ants")
    label_create(project=team.project, name="bees")
    zero = zeroshot.zero_shot_sync(project_id=team.project.pk)
    old = ModelVersion.objects.create(project=team.project, version=5, mode="quick", label_names=["ants", "bees"])
    new = ModelVersion.objects.create(project=team.project, version=6, mode="quick", label_names=["ants", "bees"])
    if deployed_mode == "quick":
        services.model_deploy(model=old, pinned=pinned)
    elif deployed_mode == "full":
        full = ModelVersion.objects.create(project=team.project, version=4, mode="full", label_names=["ants", "bees"])
        services.model_deploy(model=full, pinned=pinned)
    return zero, old, new


def _choice(team):
    """What a retrain passes on: the current zero-shot version (its scores only matter to _beats_zero_shot)."""
    return {"zero": zeroshot.current_zero_shot(team.project), "zero_scores": {}}


def _deployed(team):
    return ModelVersion.objects.get(project=team.project, deployed=True)


@pytest.mark.parametrize(("deployed_mode", "pinned"), [("zero_shot", False), ("quick", False)])
def test_it_decides_between_the_new_quick_model_and_the_zero_shot_one_at_every_retrain(team, deployed_mode, pinned):
    zero, old, new = _versions(team, deployed_mode=deployed_mode, pinned=pinned)
    with mock.patch.object(quick, "_beats_zero_shot", return_value=False):
        quick._deploy_automatic(project=team.project, model=new, data=None, result=None, **_choice(team))
    # an automatic quick model that won by luck earlier gives way to the zero-shot model again
    assert _deployed(team) == zero
    with mock.patch.object(quick, "_beats_zero_shot", return_value=True):
        quick._deploy_automatic(project=team.project, model=new, data=None, result=None, **_choice(team))
    assert _deployed(team) == new and not new.pinned


@pytest.mark.parametrize(("deployed_mode", "pinned"), [("quick", True), ("full", False)])
def test_it_leaves_a_pinned_or_full_version_deployed(team, deployed_mode, pinned):
    _versions(team, deployed_mode=deployed_mode, pinned=pinned)
    before = _deployed(team)
    for wins in (False, True):
        with mock.patch.object(quick, "_beats_zero_shot", return_value=wins):
            quick._deploy_automatic(project=team.project, model=before, data=None, result=None, **_choice(team))
        assert _deployed(team) == before


def test_it_keeps_a_version_deployed_by_hand_while_it_was_deciding(team):
    zero, old, new = _versions(team, deployed_mode="quick")
    full = ModelVersion.objects.create(project=team.project, version=7, mode="full", label_names=["ants", "bees"])

    def someone_deploys_by_hand(**kwargs):
        services.model_deploy(model=full)  # between the first look and the deployment
        return False

    with mock.patch.object(quick, "_beats_zero_shot", side_effect=someone_deploys_by_hand):
        quick._deploy_automatic(project=team.project, model=new, data=None, result=None, **_choice(team))
    assert _deployed(team) == full
    assert not services.model_deploy_automatic(model=zero) and _deployed(team) == full


def test_it_deploys_the_quick_model_when_the_labels_have_no_zero_shot_model(team):
    label_create(project=team.project, name="blorptastic")
    label_create(project=team.project, name="xqzzy")
    assert zeroshot.zero_shot_sync(project_id=team.project.pk) is None
    new = ModelVersion.objects.create(
        project=team.project, version=2, mode="quick", label_names=["blorptastic", "xqzzy"]
    )
    quick._deploy_automatic(project=team.project, model=new, data=None, result=None, **_choice(team))
    assert _deployed(team) == new


def test_it_marks_labels_present_per_label_in_a_multi_label_project(team):
    team.project.task = "multi_label"
    team.project.save()
    for name in ("dog", "cat"):
        label_create(project=team.project, name=name)
    model = zeroshot.zero_shot_sync(project_id=team.project.pk)
    assert model.thresholds == [zs.MULTI_LABEL_THRESHOLD] * 2 and model.label_names == ["cat", "dog"]
    head = zeroshot.head_load(model)
    assert head.multi_label and len(head.groups[1]) == 118


@pytest.mark.slow
def test_it_downloads_as_one_onnx_graph_that_agrees_with_the_server(ants_bees, client_for):
    import onnxruntime as ort

    from inference.predictors import predict
    from training.ml.backbone import preprocess

    team = ants_bees
    model = zeroshot.zero_shot_sync(project_id=team.project.pk)
    r = client_for(team.user("viewer")).get(
        reverse("model_download", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    )
    assert r.status_code == 200
    session = ort.InferenceSession(b"".join(r.streaming_content), providers=["CPUExecutionProvider"])
    images = [p.read_bytes() for p in _val("ants", 2) + _val("bees", 2)]
    (probs,) = session.run(None, {"input": preprocess(images, 260)})
    server = predict(model, images).probs
    assert np.allclose(probs, server, atol=0.03), (probs, server)
    assert probs[:2, 0].min() > 0.5 and probs[2:, 1].min() > 0.5


def test_the_sweep_makes_a_zero_shot_version_whose_dispatch_was_lost(team, django_capture_on_commit_callbacks):
    from training import pipeline, selectors

    for name in ("ants", "bees"):
        label_create(project=team.project, name=name)  # the on-commit dispatch never runs: lost
    assert selectors.projects_missing_zero_shot() == [team.project.pk]
    with mock.patch("training.tasks.zero_shot_sync.apply_async") as apply:
        with django_capture_on_commit_callbacks(execute=True):
            pipeline.sweep_trainings()
    assert apply.call_args.kwargs["args"] == [str(team.project.pk)]
    zeroshot.zero_shot_sync(project_id=team.project.pk)
    assert selectors.projects_missing_zero_shot() == []
    label_create(project=team.project, name="blorptastic")  # no longer all mapped: nothing to make
    assert selectors.projects_missing_zero_shot() == []
