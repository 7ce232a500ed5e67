"""Tests for training.ml.layers (pure ML core: no Django, no database).

They check the mechanics: what the probe is trained on is what its served graph computes, both
runtimes agree, a cancel stops the pass. Whether the middle stages pay is bench/finetune.py's.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.ml import backbone as bb
from training.ml import layers
from training.ml.ensemble import export_probabilities_onnx
from training.ml.recipes import Cancelled


def _image(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (96, 120, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [_image(i) for i in range(6)]


def test_it_pools_the_middle_stages_beside_the_final_features(images):
    X = layers.compute(images, ["lite0"], runtime="torch")
    # lite0's stages 3-6 have 80, 112, 192 and 320 channels: their means and deviations, and 1280 final.
    assert X.shape == (6, 1280 + 2 * (80 + 112 + 192 + 320))
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)  # two unit blocks over sqrt(2)
    assert np.allclose(np.linalg.norm(X[:, :1280], axis=1), 1 / np.sqrt(2), atol=1e-5)


def test_it_gives_the_same_features_in_onnxruntime_and_torch(images):
    ort = layers.compute(images, ["lite0"], batch_size=4)
    eager = layers.compute(images, ["lite0"], runtime="torch", batch_size=4)
    assert np.abs(ort - eager).max() < 1e-4


def test_the_served_graph_computes_what_the_probe_was_trained_on(images, tmp_path):
    """Trained on ``compute``'s rows, exported as ``LayerHead``: the same probabilities through onnxruntime."""
    X = layers.compute(images, ["lite0"])
    y = np.array([0, 1, 2, 0, 1, 2])
    head = layers.fit(X, y, multi_label=False, n_classes=3).head
    assert head.meta["feature_key"] == layers.KEY
    res = bb.get_spec("lite0").resolution
    graph = layers.LayerHead(["lite0"], head.W, head.b, multi_label=False).eval()
    runner = bb.OnnxRunner(export_probabilities_onnx(graph, tmp_path / "probe.onnx", res))
    served = runner.run(bb.preprocess(images, res))["probabilities"]
    assert np.allclose(served, head.predict_proba(X), atol=1e-4)


def test_it_resizes_a_smaller_input_to_each_backbones_resolution(images):
    x = torch.from_numpy(bb.preprocess(images[:2], 64))
    with torch.no_grad():
        out = layers.LayerFeatures(["lite0"], input_resolution=64).eval()(x)
    assert out.shape == (2, 1280 + 2 * 704) and torch.isfinite(out).all()


def test_a_cancel_stops_the_pass(images):
    with pytest.raises(Cancelled):
        layers.compute(images, ["lite0"], runtime="torch", batch_size=2, should_stop=lambda: True)
