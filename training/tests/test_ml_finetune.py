"""Tests for training.ml.finetune (pure ML core: no Django, no database).

Runs are deliberately tiny (few images, low resolution, one epoch): they check the mechanics
(progress, cancel, time limit, export parity), not accuracy, which is measured offline.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import RandomSampler, WeightedRandomSampler

from training.ml import backbone as bb
from training.ml import finetune as ft

from training.tests.conftest import HYMENOPTERA, needs_hymenoptera

TINY = dict(epochs=1, batch_size=8, resolution=96, train_blocks=1, max_seconds=None, progress_every=1)


def _items(split: str, per_class: int, as_pil: bool = False):
    items = []
    for label, cls in enumerate(("ants", "bees")):
        for path in sorted((HYMENOPTERA / split / cls).glob("*.jpg"))[:per_class]:
            items.append((Image.open(path) if as_pil else path.read_bytes(), label))
    return items


@pytest.fixture(scope="module")
def tiny_run():
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYMENOPTERA}; set PICTOR_DATASETS")
    events: list[dict] = []
    val = _items("val", 4)
    result = ft.finetune(
        train_items=_items("train", 8, as_pil=True),
        val_items=val,
        num_classes=2,
        multi_label=False,
        config=ft.FinetuneConfig(**TINY),
        progress=events.append,
    )
    return result, events, val


@needs_hymenoptera
def test_tiny_finetune_returns_eval_model_and_val_probabilities(tiny_run):
    result, _, val = tiny_run
    assert not result.model.training
    assert result.num_classes == 2 and not result.multi_label
    assert result.resolution == 96 and result.backbone == "lite0"
    assert result.val_probabilities.shape == (len(val), 2)
    np.testing.assert_allclose(result.val_probabilities.sum(1), 1.0, atol=1e-5)
    assert 0.0 <= result.val_accuracy <= 1.0
    assert result.best_epoch == 1 and result.epochs_run == 1
    assert result.stop_reason == "completed"
    assert len(result.history) == 1 and "val_loss" in result.history[0]
    again = ft.predict_probabilities(result.model, [img for img, _ in val], resolution=96)
    np.testing.assert_allclose(again, result.val_probabilities, atol=1e-5)


@needs_hymenoptera
def test_progress_reports_steps_and_epochs(tiny_run):
    _, events, _ = tiny_run
    keys = {"epoch", "epochs", "step", "steps", "loss", "val_accuracy", "progress"}
    assert events and all(keys <= set(e) for e in events)
    train_events = [e for e in events if e["phase"] == "train"]
    assert train_events and train_events[0]["val_accuracy"] is None
    final = events[-1]
    assert final["phase"] == "validated" and final["val_accuracy"] is not None
    assert final["progress"] == pytest.approx(1.0)
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and all(0.0 <= p <= 1.0 for p in progress)


@needs_hymenoptera
def test_exported_onnx_matches_torch(tiny_run, tmp_path):
    result, _, val = tiny_run
    path = ft.export_classifier_onnx(result.model, tmp_path / "clf.onnx", result.resolution)
    runner = bb.OnnxRunner(path)
    assert runner.output_names == ["probabilities", "logits", "features"]
    batch = bb.preprocess([img for img, _ in val], result.resolution)
    out = runner.run(batch)
    with torch.no_grad():
        logits = result.model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(out["logits"], logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out["probabilities"], result.val_probabilities, atol=1e-4)
    assert out["features"].shape == (len(val), 1280)


def _synthetic(n: int, seed: int = 0):
    """Coloured squares on grey; label bits: [has red square, has blue square]."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        img = Image.new("RGB", (72, 60), (128, 128, 128))
        bits = [i % 2, (i // 2) % 2]
        if bits[0]:
            img.paste((230, 20, 20), (5, 5, 30, 30))
        if bits[1]:
            img.paste((20, 20, 230), (40, 25, 68, 55))
        items.append((img if rng.random() < 0.5 else _png(img), bits))
    return items


def _png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_multi_label_finetune_and_sigmoid_export(tmp_path):
    config = ft.FinetuneConfig(**{**TINY, "resolution": 64})
    result = ft.finetune(
        train_items=_synthetic(8), val_items=_synthetic(4, seed=1), num_classes=2, multi_label=True, config=config
    )
    assert result.multi_label
    probs = result.val_probabilities
    assert probs.shape == (4, 2) and ((probs >= 0) & (probs <= 1)).all()
    path = ft.export_classifier_onnx(result.model, tmp_path / "ml.onnx", 64, multi_label=True)
    images = [img for img, _ in _synthetic(4, seed=1)]
    out = bb.OnnxRunner(path).run(bb.preprocess(images, 64))
    np.testing.assert_allclose(out["probabilities"], probs, atol=1e-4)
    np.testing.assert_allclose(out["probabilities"], 1 / (1 + np.exp(-out["logits"])), atol=1e-5)


def test_should_stop_raises_cancelled():
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 2  # let one step run, cancel on the second

    config = ft.FinetuneConfig(**{**TINY, "resolution": 64, "batch_size": 2})
    with pytest.raises(ft.Cancelled):
        ft.finetune(
            train_items=_synthetic(8),
            val_items=[],
            num_classes=2,
            multi_label=True,
            config=config,
            should_stop=should_stop,
        )
    assert len(calls) == 2


def test_time_limit_returns_validated_model():
    config = ft.FinetuneConfig(**{**TINY, "resolution": 64, "epochs": 5, "max_seconds": 0.0})
    result = ft.finetune(
        train_items=_synthetic(8), val_items=_synthetic(4, seed=1), num_classes=2, multi_label=True, config=config
    )
    assert result.stop_reason == "time_limit"
    assert result.epochs_run == 1
    assert result.val_probabilities.shape == (4, 2)  # still validated, so usable
    assert not result.model.training


def test_single_label_without_validation():
    items = [(img, bits[0]) for img, bits in _synthetic(6)]
    config = ft.FinetuneConfig(**{**TINY, "resolution": 64, "head_init": "zeros"})
    result = ft.finetune(train_items=items, val_items=[], num_classes=2, multi_label=False, config=config)
    assert result.val_accuracy is None and result.best_epoch == 0
    assert result.val_probabilities.shape == (0, 2)
    assert result.stop_reason == "completed"


def test_invalid_targets_are_rejected():
    images = [Image.new("RGB", (32, 32))] * 2
    with pytest.raises(ValueError, match="class indices"):
        ft.finetune(train_items=list(zip(images, [0, 2])), val_items=[], num_classes=2, multi_label=False)
    with pytest.raises(ValueError, match="multi-hot"):
        ft.finetune(
            train_items=list(zip(images, [[1, 0, 1], [0, 1, 0]])), val_items=[], num_classes=2, multi_label=True
        )
    with pytest.raises(ValueError, match="no training items"):
        ft.finetune(train_items=[], val_items=[], num_classes=2, multi_label=False)


def test_sampler_rebalances_only_clear_imbalance():
    gen = torch.Generator().manual_seed(0)
    balanced = torch.tensor([0, 1] * 10)
    assert isinstance(ft._sampler(balanced, False, gen), RandomSampler)
    skewed = torch.tensor([0] * 18 + [1] * 2)
    assert isinstance(ft._sampler(skewed, False, gen), WeightedRandomSampler)
    assert isinstance(ft._sampler(torch.ones(4, 3), True, gen), RandomSampler)


def test_partial_training_freezes_early_layers():
    model = bb.load_backbone("lite0", num_classes=2)
    frozen = ft._freeze(model, 2)
    assert not any(p.requires_grad for p in model.conv_stem.parameters())
    assert not any(p.requires_grad for p in model.blocks[4].parameters())
    assert all(p.requires_grad for p in model.blocks[5].parameters())
    assert all(p.requires_grad for p in model.get_classifier().parameters())
    ft._set_train_mode(model, frozen, freeze_bn=True)
    assert not model.bn1.training and not model.bn2.training  # stats frozen
    assert model.training


def test_schedule_shrinks_to_fit_budget():
    assert ft._fit_schedule(8, 1, 20.0, 20.0, None) == 8
    assert ft._fit_schedule(8, 1, 20.0, 20.0, 170.0) == 8
    assert ft._fit_schedule(8, 2, 40.0, 80.0, 170.0) == 4
    assert ft._fit_schedule(8, 3, 60.0, 160.0, 170.0) == 3
    assert ft._lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert ft._lr_factor(10, 100, 0.1) == pytest.approx(1.0)
    assert ft._lr_factor(99, 100, 0.1) < 0.01
