"""ONNX download of a model version: full models ship their own graph; quick and zero-shot ones are composed.

A quick model is backbone(s) + L2 normalisation (+ concatenation) + the linear head, exported as
one graph taking one image tensor, so the download runs anywhere onnxruntime does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from training.models import ModelVersion


def _compose(model: ModelVersion):
    from training.ml.ensemble import QuickGraph
    from training.ml.features import FeatureKey
    from training.quick import head_load

    head = head_load(model)
    graph = QuickGraph(list(FeatureKey.parse(model.features)), head.W, head.b, multi_label=head.multi_label)
    return graph.eval(), graph.input_resolution


def _compose_zero_shot(model: ModelVersion):
    """The zero-shot head in-graph: the same normalised, rescaled features through the ImageNet head,
    the softmax summed over each label's classes (training.ml.zeroshot.ZeroShotHead)."""
    import torch

    from training.ml.backbone import get_spec, load_backbone
    from training.zeroshot import head_load

    head = head_load(model)
    groups = torch.zeros(head.W.shape[0], len(head.groups))
    for j, classes in enumerate(head.groups):
        groups[classes, j] = 1.0

    class ZeroShotClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = load_backbone(model.features)
            self.register_buffer("groups", groups)

        def forward(self, x):
            f = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
            f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12) * head.scale
            scores = torch.softmax(self.net.get_classifier()(f), dim=1) @ self.groups
            if head.multi_label:
                return scores.clamp(0.0, 1.0)
            return scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)

    return ZeroShotClassifier().eval(), get_spec(model.features).resolution


def model_onnx_name(model: ModelVersion) -> str:
    """Storage name of the model's ONNX graph, exporting (once) for quick models."""
    if model.mode == ModelVersion.Mode.FULL:
        return model.artifact_name
    name = model.artifact_name.rsplit(".", 1)[0] + ".export.onnx"
    if default_storage.exists(name):
        return name
    import torch

    net, resolution = _compose_zero_shot(model) if model.mode == ModelVersion.Mode.ZERO_SHOT else _compose(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            net,
            torch.zeros(1, 3, resolution, resolution),
            str(path),
            input_names=["input"],
            output_names=["probabilities"],
            dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
            dynamo=False,
        )
        if default_storage.exists(name):  # exported meanwhile by another request
            return name
        default_storage.save(name, ContentFile(path.read_bytes()))
    return name
