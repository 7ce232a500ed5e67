"""Tests for training.ml.recipes and training.ml.ensemble (pure ML core: no Django, no database).

Tiny synthetic images at 64 px: they check the mechanics (the cached fine-tune learns, the budget
holds, selection uses validation only, the stored graph computes the torch blend), not accuracy,
which bench/finetune.py measures.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.ml import backbone as bb
from training.ml import recipes
from training.ml.ensemble import BlendGraph, QuickGraph, export_probabilities_onnx

RES = 64


def _stripes(label: int, seed: int) -> bytes:
    """Class 0: horizontal stripes, class 1: vertical; random colours, period and phase."""
    rng = np.random.default_rng(seed)
    period = int(rng.integers(6, 12))
    phase = int(rng.integers(0, period))
    coords = np.arange(80)
    band = ((coords + phase) // (period // 2)) % 2
    mask = np.broadcast_to(band[:, None] if label == 0 else band[None, :], (80, 80))
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = np.where(mask[..., None] == 1, a, b).astype(np.uint8)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _set(n_per_class: int, offset: int) -> list[tuple[bytes, int]]:
    return [(_stripes(c, offset + 2 * i + c), c) for i in range(n_per_class) for c in (0, 1)]


TINY = dict(backbones=("lite0",), resolution=RES, batch_size=8, epochs=6, patience=6, max_seconds=None)


@pytest.fixture(scope="module")
def toy():
    return _set(10, 0), _set(6, 1000)


def test_stratified_split_is_70_15_15_per_class_and_disjoint():
    y = [0] * 20 + [1] * 40
    train, val, test = recipes.stratified_split(y, seed=3)
    assert len(set(train) | set(val) | set(test)) == 60 and len(train) + len(val) + len(test) == 60
    assert [int(np.sum(np.array(y)[test] == c)) for c in (0, 1)] == [3, 6]
    assert [int(np.sum(np.array(y)[val] == c)) for c in (0, 1)] == [3, 6]
    assert np.array_equal(recipes.stratified_split(y, seed=3)[0], train)


@pytest.mark.slow
def test_cached_finetune_improves_over_its_initial_head(toy):
    train, val = toy
    # A zero initial head is chance (val loss ln 2): the fine-tune of the last stage on the cache
    # must learn the stripes' orientation from there.
    config = recipes.SearchConfig(**TINY, recipes=((1, 3e-3),), head_init="zeros")
    events: list[dict] = []
    result = recipes.search(
        train_items=train, val_items=val, num_classes=2, multi_label=False, config=config, progress=events.append
    )
    probe, tuned = result.candidates
    assert probe["blocks"] == 0 and tuned["blocks"] == 1
    assert probe["val_loss"] == pytest.approx(np.log(2))
    assert tuned["val_loss"] < probe["val_loss"] - 0.2
    assert tuned["val_accuracy"] >= 0.9
    assert result.recipe.startswith("lite0 · last 1 stage fine-tuned")
    assert result.weight == 1.0 and result.backbone == "lite0" and result.resolution == RES
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert any(e.get("phase") == "validated" for e in events)
    assert not result.model.training
    # The returned net is the selected state: its torch predictions on val reproduce the val score.
    x = torch.from_numpy(bb.preprocess([img for img, _ in val], RES))
    with torch.no_grad():
        p = torch.softmax(result.model(x), 1)
        if result.tta:
            p = 0.5 * (p + torch.softmax(result.model(x.flip(3)), 1))
    y = np.array([t for _, t in val])
    assert float((p.numpy().argmax(1) == y).mean()) == pytest.approx(result.val_accuracy, abs=1 / len(y) + 1e-9)


def test_it_runs_the_gpu_paths_torch_stem_on_cpu_and_it_matches_onnxruntime(toy):
    # No GPU here: on CUDA the frozen stages run in torch instead of onnxruntime. Forcing that
    # runtime on CPU runs the same code, which must give the cache onnxruntime gives, and train.
    train, val = toy
    model = bb.load_backbone("lite0", num_classes=2).eval()
    stop = len(model.blocks) - 1
    x = bb.preprocess([img for img, _ in val[:4]], RES)
    cpu = torch.device("cpu")
    with torch.no_grad():
        from_ort = recipes._stem_runner(model, stop, RES, cpu)(x)
        from_torch = recipes._stem_runner(model, stop, RES, cpu, "torch")(x)
    assert from_torch.dtype == torch.float16 and from_torch.shape == from_ort.shape
    assert torch.allclose(from_torch.float(), from_ort.float(), atol=3e-2, rtol=1e-2)
    config = recipes.SearchConfig(**{**TINY, "epochs": 2}, recipes=((1, 3e-3),), stem_runtime="torch")
    result = recipes.search(train_items=train, val_items=val, num_classes=2, multi_label=False, config=config)
    assert [c["blocks"] for c in result.candidates] == [0, 1]
    assert len(result.history) == 2
    with pytest.raises(ValueError, match="stem runtime"):
        recipes._stem_runner(model, stop, RES, cpu, "tensorrt")


def test_search_respects_a_tiny_time_budget(toy):
    train, val = toy
    config = recipes.SearchConfig(**{**TINY, "max_seconds": 0.0, "backbones": ("lite0", "lite2")})
    result = recipes.search(train_items=train, val_items=val, num_classes=2, multi_label=False, config=config)
    # Only the first backbone's cache and linear probe (which always run) happened: nothing trained.
    assert result.stop_reason == "time_limit"
    assert result.history == []
    assert result.recipe.startswith("lite0 · linear probe")
    assert any(c.get("backbone") == "lite2" and c.get("skipped") for c in result.candidates) or not any(
        c.get("backbone") == "lite2" for c in result.candidates
    )


@pytest.fixture(scope="module")
def searched(toy):
    """A search whose winner is a one-stage fine-tune (the probe starts at chance)."""
    train, val = toy
    config = recipes.SearchConfig(**TINY, recipes=((1, 3e-3),), head_init="zeros")
    result = recipes.search(train_items=train, val_items=val, num_classes=2, multi_label=False, config=config)
    assert result.blocks == 1 and result.epoch >= 1 and result.lr == 3e-3
    assert result.n_train == len(train) and result.epoch_seconds > 0 and result.view_seconds > 0
    return result, config


def _accuracy(model, items) -> float:
    x = torch.from_numpy(bb.preprocess([img for img, _ in items], RES))
    with torch.no_grad():
        return float((model(x).argmax(1).numpy() == np.array([t for _, t in items])).mean())


@pytest.mark.slow
def test_a_refit_replays_the_winners_recipe_on_the_items_it_is_given(toy, searched):
    train, val = toy
    result, config = searched
    # Labels swapped: a refit that learnt from its items answers the swap; one that reused the
    # search's net (trained on the true labels) would not.
    swapped = [(img, 1 - t) for img, t in train + val]
    events: list[str] = []
    fitted = recipes.refit(
        items=swapped,
        num_classes=2,
        multi_label=False,
        result=result,
        config=config,
        progress=lambda p, message: events.append(message),
    )
    assert fitted.reason == "refitted" and fitted.n_items == len(swapped)
    assert fitted.model is not result.model and not fitted.model.training
    assert _accuracy(result.model, val) >= 0.9
    assert _accuracy(fitted.model, val) <= 0.1
    # exactly the selected number of epochs, no early stopping (nothing is held out)
    assert sum("epoch" in e for e in events) == result.epoch
    assert f"epoch {result.epoch}/{result.epoch}" in events[-1]


def test_a_refit_that_cannot_fit_its_budget_or_has_no_net_is_not_run(searched, toy, monkeypatch):
    train, val = toy
    result, config = searched
    items = train + val
    over = recipes.refit(items=items, num_classes=2, multi_label=False, result=result, config=config, max_seconds=0.0)
    assert over.reason == "time_budget" and over.model is None and over.estimated_seconds > 0
    assert recipes.refit_estimate(result, 2 * len(items), config) > recipes.refit_estimate(result, len(items), config)
    quick_alone = dataclasses.replace(result, weight=0.0)
    none = recipes.refit(items=items, num_classes=2, multi_label=False, result=quick_alone, config=config)
    assert none.reason == "quick_alone" and none.model is None
    # Estimated to fit, then out of time mid-way: abandoned, not half-trained.
    monkeypatch.setattr(recipes, "refit_estimate", lambda *a, **k: 0.0)
    late = recipes.refit(items=items, num_classes=2, multi_label=False, result=result, config=config, max_seconds=1e-6)
    assert late.reason == "time_limit" and late.model is None
    with pytest.raises(recipes.Cancelled):
        recipes.refit(
            items=items, num_classes=2, multi_label=False, result=result, config=config, should_stop=lambda: True
        )


def test_blend_weight_and_tta_are_chosen_on_validation_only():
    y = torch.tensor([0, 1, 0, 1])
    good = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]], np.float32)
    bad = good[:, ::-1].copy()
    # The quick head is right on val, the fine-tune wrong: the quick head alone wins.
    c = recipes.blend_choice({False: bad, True: bad}, good, y, multi_label=False, weights=(0, 0.5, 1))
    assert c["weight"] == 0.0 and c["val_accuracy"] == 1.0
    # The reverse: the fine-tune alone; with its flip average better calibrated, TTA too.
    sharper = np.array([[0.99, 0.01], [0.01, 0.99], [0.99, 0.01], [0.01, 0.99]], np.float32)
    c = recipes.blend_choice({False: good, True: sharper}, bad, y, multi_label=False, weights=(0, 0.5, 1))
    assert c["weight"] == 1.0 and c["tta"] is True
    # Both right: the blend is picked on the val log loss tie-break.
    c = recipes.blend_choice({False: good}, sharper, y, multi_label=False, weights=(0, 0.5, 1))
    assert c["val_accuracy"] == 1.0 and c["weight"] == 0.0
    # Without quick probabilities only the fine-tune is possible.
    assert recipes.blend_choice({False: bad}, None, y, multi_label=False, weights=(0, 0.5))["weight"] == 1.0


def test_the_probe_alone_stands_unless_a_blend_beats_it_by_one_standard_error():
    n = 150
    y = torch.tensor([i % 3 for i in range(n)])
    truth = np.eye(3, dtype=np.float32)[y.numpy()]
    wrong = np.roll(truth, 1, axis=1)

    def right_on(lo: int, hi: int) -> np.ndarray:  # right on samples lo..hi-1, wrong on the rest
        out = wrong.copy()
        out[lo:hi] = truth[lo:hi]
        return out

    probe = right_on(0, 120)
    # Six won, four lost (the best of many blends can win that by chance): the probe stands.
    assert recipes.simpler_holds(right_on(4, 126), probe, y, multi_label=False)
    # Fifteen won, none lost: past one standard error of the paired difference, the blend is taken.
    assert not recipes.simpler_holds(right_on(0, 135), probe, y, multi_label=False)
    # No better at all, or worse: the probe.
    assert recipes.simpler_holds(probe, probe, y, multi_label=False)
    assert recipes.simpler_holds(right_on(0, 100), probe, y, multi_label=False)
    # Multi-label: each sample counts the share of its labels right at 0.5.
    ym = torch.tensor(np.eye(2, dtype=np.float32)[[i % 2 for i in range(n)]])
    good = ym.numpy() * 0.8 + 0.1
    assert not recipes.simpler_holds(good, 1 - good, ym, multi_label=True)
    assert recipes.simpler_holds(1 - good, good, ym, multi_label=True)


def test_choosing_a_blend_is_judged_on_validation_images_that_did_not_choose_it():
    """A candidate that only gains on the images it was chosen on passes the in-sample 1-SE rule but
    not the cross-fitted one; one that gains everywhere passes both."""
    n = 150
    y = torch.tensor([i % 3 for i in range(n)])
    truth = np.eye(3, dtype=np.float32)[y.numpy()]
    wrong = np.roll(truth, 1, axis=1)
    a, b = recipes.validation_halves(y, multi_label=False)
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(n)) and abs(len(a) - len(b)) <= 1
    assert all(abs((y[a] == c).sum().item() - (y[b] == c).sum().item()) <= 1 for c in range(3))  # stratified

    probe = truth.copy()
    missed = np.concatenate([a[:15], b[:15]])  # the probe misses 30, half in each half
    probe[missed] = wrong[missed]

    def fixes(rows: np.ndarray) -> dict[bool, np.ndarray]:
        out = probe.copy()
        out[rows] = truth[rows]
        return {False: out, True: out}

    lucky_a, lucky_b = fixes(a[:13]), fixes(b[:13])  # each right only where it was lucky
    in_sample = lucky_a[False]
    assert not recipes.simpler_holds(in_sample, probe, y, multi_label=False)  # 13 won, none lost
    crossed = recipes.cross_fitted_probs([lucky_a, lucky_b], probe, y, multi_label=False, weights=(0.0, 1.0))
    assert recipes.simpler_holds(crossed, probe, y, multi_label=False)
    assert (crossed.argmax(1) == probe.argmax(1)).all()  # each half got the candidate lucky on the other
    # A candidate that fixes misses in both halves is chosen on either and pays on the other.
    even = fixes(np.concatenate([a[:14], b[:14]]))
    crossed = recipes.cross_fitted_probs([lucky_a, even, lucky_b], probe, y, multi_label=False, weights=(0.0, 1.0))
    assert not recipes.simpler_holds(crossed, probe, y, multi_label=False)
    assert np.allclose(crossed, even[False])


def test_the_search_keeps_a_perfect_probe_alone(toy):
    """A probe right on every validation image leaves nothing for a blend to win: weight 0, "alone"."""
    train, val = toy
    quick_val = np.eye(2, dtype=np.float32)[[t for _, t in val]] * 0.9 + 0.05
    config = recipes.SearchConfig(**{**TINY, "epochs": 1}, recipes=((1, 3e-3),))
    result = recipes.search(
        train_items=train,
        val_items=val,
        num_classes=2,
        multi_label=False,
        quick_val_probabilities=quick_val,
        probe_name="multi-layer probe",
        config=config,
    )
    assert result.weight == 0.0 and result.recipe.startswith("multi-layer probe alone")
    assert result.val_accuracy == 1.0 and np.allclose(result.val_probabilities, quick_val)


def test_a_result_named_quick_alone_says_so():
    assert recipes.recipe_name({"weight": 0.0}).startswith("quick head alone")
    name = recipes.recipe_name({"weight": 0.75, "backbone": "lite2", "blocks": 2, "lr": 1e-3, "tta": True})
    assert name == "lite2 · last 2 stages fine-tuned (LP-FT, lr 0.001) · flip TTA · blended 75% with 25% quick head"


@pytest.mark.parametrize("parts", [["lite0"], ["lite0", "pixels"]])
def test_blend_graph_onnx_equals_the_torch_blend(tmp_path, parts):
    # With pixels: the quick part resizes the input in-graph (64 -> 224) before pooling it, which the
    # exporter could not size (a full training whose blend had a pixels quick head failed to store).
    rng = np.random.default_rng(0)
    ft_net = bb.load_backbone("lite0", num_classes=3)
    with torch.no_grad():
        ft_net.classifier.weight.normal_(0, 0.05)
    W = rng.normal(0, 1, (1280 + 256 * ("pixels" in parts), 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 3).astype(np.float32)
    quick = QuickGraph(parts, W, b, multi_label=False, input_resolution=RES)
    graph = BlendGraph(ft_net, weight=0.25, tta=True, multi_label=False, quick=quick).eval()
    images = [_stripes(i % 2, 50 + i) for i in range(3)]
    x = bb.preprocess(images, RES)
    path = export_probabilities_onnx(graph, tmp_path / "blend.onnx", RES)
    runner = bb.OnnxRunner(path, threads=1)
    assert runner.output_names == ["probabilities"] and runner.resolution == RES
    out = runner.run(x)["probabilities"]
    t = torch.from_numpy(x)
    with torch.no_grad():
        ft_p = 0.5 * (torch.softmax(ft_net(t), 1) + torch.softmax(ft_net(t.flip(3)), 1))
        q_p = quick(t)
        expected = (0.25 * ft_p + 0.75 * q_p).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)


def test_a_blend_graph_takes_the_largest_input_its_parts_need(tmp_path):
    """The quick part is never fed an enlarged image: the graph's input is its 224 px, and the
    fine-tune (trained at 64 here) gets it shrunk in-graph."""
    from training.ml.ensemble import resize, serving_resolution

    assert serving_resolution(224, ["lite2"]) == 260 and serving_resolution(260, ["lite0", "pixels"]) == 260
    assert serving_resolution(None, ["lite0"]) == 224 and serving_resolution(RES, []) == RES
    with pytest.raises(ValueError):
        serving_resolution(None, [])
    ft_net = bb.load_backbone("lite0", num_classes=2)
    W = np.random.default_rng(2).normal(0, 1, (1280, 2)).astype(np.float32)
    quick = QuickGraph(["lite0"], W, np.zeros(2, np.float32), multi_label=False)
    graph = BlendGraph(ft_net, weight=0.5, tta=False, multi_label=False, quick=quick, finetune_resolution=RES).eval()
    assert graph.input_resolution == 224
    alone = BlendGraph(ft_net, weight=1.0, tta=False, multi_label=False, quick=quick, finetune_resolution=RES)
    assert alone.input_resolution == RES  # no quick part: the fine-tune's own size
    x = bb.preprocess([_stripes(i % 2, 120 + i) for i in range(2)], 224)
    t = torch.from_numpy(x)
    with torch.no_grad():
        expected = (0.5 * torch.softmax(ft_net.eval()(resize(t, RES)), 1) + 0.5 * quick(t)).numpy()
    path = export_probabilities_onnx(graph, tmp_path / "blend.onnx", graph.input_resolution)
    np.testing.assert_allclose(bb.OnnxRunner(path, threads=1).run(x)["probabilities"], expected, atol=1e-4)


def test_the_in_graph_resize_is_an_antialiased_bicubic_one():
    """PIL's BICUBIC (what preprocessing uses) is antialiased when shrinking; the graph's resize is
    the same filter, as two matrix products the ONNX exporter can write."""
    import torch.nn.functional as F

    from training.ml.ensemble import resize

    big = torch.from_numpy(bb.preprocess([_stripes(1, 7), _stripes(0, 8)], 260))
    for size in (224, 300):
        ref = F.interpolate(big, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        assert torch.allclose(resize(big, size), ref, atol=1e-4)
    assert resize(big, 260) is big


def test_blend_graph_leaves_out_a_zero_share_part():
    net = torch.nn.Linear(2, 2)
    assert BlendGraph(net, weight=1.0, tta=False, multi_label=False).quick is None
    quick = torch.nn.Identity()
    assert BlendGraph(None, weight=0.0, tta=False, multi_label=False, quick=quick).finetuned is None
    with pytest.raises(ValueError):
        BlendGraph(net, weight=0.5, tta=False, multi_label=False)
    with pytest.raises(ValueError):
        BlendGraph(None, weight=0.5, tta=False, multi_label=False, quick=quick)


def test_multi_label_search_blends_sigmoids_and_exports_them(toy, tmp_path):
    train, val = toy
    # label 0: horizontal stripes, label 1: vertical stripes (multi-hot, one on per image)
    hot = lambda t: [1.0 - t, float(t)]  # noqa: E731
    train_ml = [(img, hot(t)) for img, t in train]
    val_ml = [(img, hot(t)) for img, t in val]
    quick_val = np.full((len(val_ml), 2), 0.5, np.float32)
    config = recipes.SearchConfig(**{**TINY, "epochs": 2}, recipes=((1, 3e-3),))
    result = recipes.search(
        train_items=train_ml,
        val_items=val_ml,
        num_classes=2,
        multi_label=True,
        quick_val_probabilities=quick_val,
        config=config,
    )
    assert 0.0 <= result.val_accuracy <= 1.0 and result.val_probabilities.shape == (len(val_ml), 2)
    assert result.weight > 0  # an uninformative quick head never wins over a working probe
    graph = BlendGraph(result.model, weight=result.weight, tta=result.tta, multi_label=True, quick=None)
    if result.weight < 1:
        graph = BlendGraph(result.model, weight=result.weight, tta=result.tta, multi_label=True, quick=_Constant(0.5))
    out = bb.OnnxRunner(export_probabilities_onnx(graph, tmp_path / "ml.onnx", RES)).run(
        bb.preprocess([img for img, _ in val_ml[:3]], RES)
    )["probabilities"]
    assert out.shape == (3, 2) and np.all((out >= 0) & (out <= 1))


class _Constant(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 2), self.value)


def test_it_raises_cancelled_when_should_stop_says_so(toy):
    train, val = toy
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 2  # the first cache batch runs, the second is refused

    config = recipes.SearchConfig(**TINY)
    with pytest.raises(recipes.Cancelled):
        recipes.search(
            train_items=train, val_items=val, num_classes=2, multi_label=False, config=config, should_stop=should_stop
        )
    assert len(calls) == 2


def test_it_rejects_bad_targets_and_empty_splits(toy):
    train, val = toy
    images = [img for img, _ in train[:2]]
    config = recipes.SearchConfig(**TINY)
    with pytest.raises(ValueError, match="class indices"):
        recipes.search(
            train_items=list(zip(images, [0, 2])), val_items=val, num_classes=2, multi_label=False, config=config
        )
    with pytest.raises(ValueError, match="multi-hot"):
        recipes.search(
            train_items=list(zip(images, [[1, 0, 1], [0, 1, 0]])),
            val_items=[(images[0], [1, 0])],
            num_classes=2,
            multi_label=True,
            config=config,
        )
    with pytest.raises(ValueError, match="training and validation"):
        recipes.search(train_items=train, val_items=[], num_classes=2, multi_label=False, config=config)


def test_the_in_graph_pixel_feature_matches_the_stored_one():
    from training.ml.pixels import CROP, pixel_features, torch_pixel_features

    images = [_stripes(i % 2, 70 + i) for i in range(4)]
    stored = pixel_features(images)
    with torch.no_grad():
        in_graph = torch_pixel_features(torch.from_numpy(bb.preprocess(images, CROP))).numpy()
    # PIL rounds the grey image to 8 bits before its box average; the graph does not.
    np.testing.assert_allclose(in_graph, stored, atol=0.03)
    assert np.abs(in_graph - stored).mean() < 0.005


def test_a_quick_graph_of_lite2_and_pixels_exports_as_the_download_composes_it(tmp_path):
    # training.export composes the quick download at the largest backbone's size (lite2: 260), so the
    # pixel part is resized to 224 in-graph: that export used to fail.
    rng = np.random.default_rng(1)
    W = rng.normal(0, 1, (1280 + 256, 2)).astype(np.float32)
    graph = QuickGraph(["lite2", "pixels"], W, np.zeros(2, np.float32), multi_label=False).eval()
    assert graph.input_resolution == 260
    path = export_probabilities_onnx(graph, tmp_path / "quick.onnx", graph.input_resolution)
    x = bb.preprocess([_stripes(i % 2, 90 + i) for i in range(2)], 260)
    with torch.no_grad():
        expected = graph(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(bb.OnnxRunner(path, threads=1).run(x)["probabilities"], expected, atol=1e-4)
