import numpy as np

from training import services
from training.ml import metrics
from training.ml.heads import LinearHead
from training.models import ModelVersion


def make_model(project, *, mode: str = "full", labels=("ants", "bees"), deployed: bool = False) -> ModelVersion:
    """A model version with real metrics on a fixed toy prediction, without training anything."""
    y = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]], np.float32)
    evaluation = metrics.evaluate(y, probs, label_names=list(labels), multi_label=False)
    evaluation.update({"evaluation": "toy", "honest": True})
    if mode == "quick":
        artifact, suffix = (
            LinearHead(W=np.zeros((1280, 2), np.float32), b=np.zeros(2, np.float32), multi_label=False).to_bytes(),
            "npz",
        )
    else:
        artifact, suffix = b"not a real onnx graph", "onnx"
    model = services.model_version_create(
        project=project,
        mode=mode,
        features="lite0",
        label_names=list(labels),
        thresholds=None,
        metrics=evaluation,
        predictions=[],
        n_train=5,
        artifact=artifact,
        suffix=suffix,
    )
    if deployed:
        services.model_deploy(model=model)
    return model
