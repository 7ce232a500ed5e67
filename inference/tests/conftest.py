import pytest

from conftest import datasets_dir
from labeling.services import sample_labels_set
from labeling.tests.factories import make_sample
from training import runner, services

HYM = datasets_dir() / "hymenoptera_data"


def hym_files(split: str, cls: str, n: int, offset: int = 0):
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    return sorted((HYM / split / cls).glob("*.jpg"))[offset : offset + n]


@pytest.fixture
def deployed(team, settings):
    """A project with a deployed quick model trained on 10 ants + 10 bees (lite0 features)."""
    settings.PICTOR_BACKBONES = ["lite0"]
    for cls in ("ants", "bees"):
        for p in hym_files("train", cls, 10):
            s = make_sample(team.project, data=p.read_bytes())
            sample_labels_set(sample=s, names=[cls], user=None)
    services.embeddings_compute(project_id=team.project.pk)
    assert runner.quick_retrain_run(project_id=team.project.pk) == "succeeded"
    return team
