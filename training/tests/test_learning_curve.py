"""The models page's learning curve: accuracy against labels across versions, as a server-rendered SVG."""

from django.urls import reverse

from training import selectors, services
from training.models import LearningPoint
from training.tests.factories import make_model


def _page(team, client_for) -> str:
    return (
        client_for(team.user("viewer"))
        .get(reverse("models_page", kwargs={"project_id": team.project.pk}))
        .content.decode()
    )


def test_it_records_a_point_per_honest_version_and_plots_them(team, client_for):
    assert "learning-curve" not in _page(team, client_for)
    for n, acc in ((10, 0.6), (20, 0.75), (40, 0.9)):
        model = make_model(team.project, mode="quick")
        model.n_train, model.metrics["accuracy"] = n, acc
        model.save()
        services.learning_point_record(model=model)
    unevaluated = make_model(team.project, mode="quick")
    unevaluated.metrics.update({"accuracy": None, "honest": False})
    assert services.learning_point_record(model=unevaluated) is None
    full = make_model(team.project, mode="full")
    full.metrics["split"] = {"train": 28, "validation": 6, "test": 6}
    services.learning_point_record(model=full)
    points = LearningPoint.objects.filter(project=team.project, mode="quick").values_list("n_labels", "accuracy")
    assert {(10, 0.6), (20, 0.75), (40, 0.9)} <= set(points)
    assert LearningPoint.objects.filter(project=team.project, mode="full").latest("id").n_labels == 40
    html = _page(team, client_for)
    svg = html[html.index('id="learning-curve"') :]
    svg = svg[: svg.index("</svg>")]
    assert "<script" not in svg and "series-quick" in svg and "series-full" in svg
    assert "quick model v3: 0.9 with 40 labels" in svg and "full training" in svg
    curve = selectors.learning_curve(project=team.project)
    quick = next(s for s in curve["series"] if s["mode"] == "quick")
    xs, ys = [p["x"] for p in quick["points"]], [p["y"] for p in quick["points"]]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # more labels to the right, better higher
    assert {t["label"] for t in curve["x_ticks"]} >= {10, 20}


def test_it_keeps_no_duplicate_of_an_unchanged_measurement(team):
    model = make_model(team.project, mode="quick")  # recorded once on creation
    services.learning_point_record(model=model)
    assert LearningPoint.objects.filter(project=team.project).count() == 1
