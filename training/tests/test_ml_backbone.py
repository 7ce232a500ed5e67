"""Tests for training.ml.backbone (pure ML core: no Django, no database)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.ml import backbone as bb

from training.tests.conftest import HYMENOPTERA, needs_hymenoptera

ANT, BEE = 310, 309  # ImageNet-1k indices


def _val_files(cls: str, n: int) -> list[Path]:
    return sorted((HYMENOPTERA / "val" / cls).glob("*.jpg"))[:n]


def _jpeg_bytes(img: Image.Image, **save_kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **save_kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return bb.load_backbone("lite0")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def embedder(cache_dir) -> bb.Embedder:
    return bb.Embedder("lite0", cache_dir=cache_dir)


def _torch_outputs(model: torch.nn.Module, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(torch.from_numpy(batch)), pre_logits=True)
        return feats.numpy(), model.get_classifier()(feats).numpy()


# ---------------------------------------------------------------- weights and class names


def test_registry_describes_both_backbones():
    assert set(bb.BACKBONES) == {"lite0", "lite2"}
    assert bb.BACKBONES["lite0"].resolution == 224
    assert bb.BACKBONES["lite2"].resolution == 260
    for spec in bb.BACKBONES.values():
        assert spec.feature_dim == 1280
        assert spec.weight_file().is_file()
    with pytest.raises(ValueError, match="unknown backbone"):
        bb.get_spec("resnet50")


def test_position_mapping_rejects_count_and_shape_mismatch(lite0):
    target = lite0.state_dict()
    tensors = list(target.values())
    with pytest.raises(bb.WeightMappingError, match="tensors"):
        bb._map_by_position(target, tensors[:-1], "lite0")
    shifted = tensors[1:] + tensors[:1]  # an off-by-one pairing must not load silently
    with pytest.raises(bb.WeightMappingError, match="shape"):
        bb._map_by_position(target, shifted, "lite0")


def test_new_head_keeps_pretrained_body(lite0):
    model = bb.load_backbone("lite0", num_classes=3)
    assert model.get_classifier().out_features == 3
    assert not model.training
    assert torch.equal(model.conv_stem.weight, lite0.conv_stem.weight)
    assert torch.equal(model.bn2.running_var, lite0.bn2.running_var)


def test_imagenet_class_names_are_human_readable():
    names = bb.imagenet_class_names()
    assert len(names) == 1000
    assert names[285] == "Egyptian cat"
    assert names[ANT] == "ant"
    assert names[BEE] == "bee"
    assert names[0] == "tench"
    assert len(set(names)) == 1000  # "crane" (bird vs machine) disambiguated


def test_device_is_a_torch_device():
    assert bb.device().type in {"cpu", "cuda"}


@needs_hymenoptera
def test_lite0_recognises_ants_and_bees(embedder):
    """The position mapping is right: photos get their ImageNet class.

    Measured: top-5 holds 'ant' for 19/20 val ants and 'bee' for 19/20 val bees (top-1: 17/20
    each). Random weights score 0/20; chance is 5/1000 per image.
    """
    ants = [p.read_bytes() for p in _val_files("ants", 20)]
    bees = [p.read_bytes() for p in _val_files("bees", 20)]
    top = embedder.imagenet_topk(ants + bees, k=5)
    ant_hits = sum(ANT in [idx for idx, _, _ in t] for t in top[:20])
    bee_hits = sum(BEE in [idx for idx, _, _ in t] for t in top[20:])
    assert ant_hits >= 15, ant_hits
    assert bee_hits >= 15, bee_hits
    first = top[0][0]
    assert isinstance(first[1], str) and 0.0 < first[2] <= 1.0
    assert all(a[2] >= b[2] for t in top for a, b in zip(t, t[1:]))  # sorted by probability


@needs_hymenoptera
def test_lite2_weights_map_and_classify():
    model = bb.load_backbone("lite2")  # raises WeightMappingError on any shape mismatch
    files = _val_files("ants", 6) + _val_files("bees", 6)
    batch = bb.preprocess([p.read_bytes() for p in files], bb.BACKBONES["lite2"].resolution)
    assert batch.shape == (12, 3, 260, 260)
    _, logits = _torch_outputs(model, batch)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    hits = sum(ANT in row for row in top5[:6]) + sum(BEE in row for row in top5[6:])
    assert hits >= 9, hits  # measured 12/12 on these images


# ---------------------------------------------------------------- ONNX / embedder


def test_onnx_embedder_matches_torch(embedder, lite0):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (300, 240, 3), dtype=np.uint8)) for _ in range(3)]
    if HYMENOPTERA.is_dir():
        images += [bb.load_image(p) for p in _val_files("bees", 3)]
    batch = bb.preprocess(images, 224)
    feats, logits = _torch_outputs(lite0, batch)
    onnx = embedder.runner.run(batch)
    np.testing.assert_allclose(onnx["features"], feats, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(onnx["logits"], logits, atol=1e-3, rtol=1e-4)
    expected = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(images, batch_size=4), expected, atol=1e-5)


def test_embeddings_are_l2_normalised(embedder):
    images = [Image.new("RGB", (64 + 10 * i, 48), (40 * i, 100, 200)) for i in range(5)]
    emb = embedder.embed(images, batch_size=2)
    assert emb.shape == (5, 1280) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 1280)


def test_embed_and_classify_shares_one_pass(embedder):
    images = [Image.new("RGB", (80, 60), (200, 30, 30)), Image.new("RGB", (60, 80), (0, 0, 90))]
    emb, top = embedder.embed_and_classify(images, k=3)
    np.testing.assert_allclose(emb, embedder.embed(images), atol=1e-6)
    assert [[i for i, _, _ in t] for t in top] == [[i for i, _, _ in t] for t in embedder.imagenet_topk(images, k=3)]
    assert all(len(t) == 3 for t in top)


def test_onnx_cache_is_reused_and_rebuilt_when_broken(embedder, cache_dir):
    path = cache_dir / "lite0-features.onnx"
    assert path.is_file()
    mtime = path.stat().st_mtime_ns
    bb.Embedder("lite0", cache_dir=cache_dir)
    assert path.stat().st_mtime_ns == mtime  # reused, not re-exported
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]

    broken_dir = cache_dir / "broken"
    broken_dir.mkdir()
    (broken_dir / "lite0-features.onnx").write_bytes(b"not an onnx file")
    rebuilt = bb.Embedder("lite0", cache_dir=broken_dir)
    assert rebuilt.embed([Image.new("RGB", (50, 50))]).shape == (1, 1280)


def test_export_onnx_outputs_and_dynamic_batch(lite0, tmp_path):
    path = bb.export_onnx(lite0, tmp_path / "m.onnx", resolution=96, outputs=("probabilities", "features"))
    runner = bb.OnnxRunner(path, threads=1)
    assert runner.output_names == ["probabilities", "features"]
    assert runner.resolution == 96
    for n in (1, 3):
        out = runner.run(np.zeros((n, 3, 96, 96), dtype=np.float32))
        assert out["probabilities"].shape == (n, 1000)
        np.testing.assert_allclose(out["probabilities"].sum(1), 1.0, atol=1e-5)
        assert out["features"].shape == (n, 1280)
    with pytest.raises(ValueError):
        bb.export_onnx(lite0, tmp_path / "x.onnx", resolution=96, outputs=("nope",))


# ---------------------------------------------------------------- image loading / preprocessing


def test_exif_orientation_is_applied():
    # Stored sideways: 40x20, red left half, blue right half; orientation 6 = "rotate 90 CW".
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img = bb.load_image(_jpeg_bytes(stored, exif=exif.tobytes()))
    assert img.size == (20, 40)
    top, bottom = img.getpixel((10, 5)), img.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # red ends up on top after rotating clockwise
    assert bottom[2] > 200 and bottom[0] < 60


def test_gif_first_frame_and_odd_modes():
    frames = [Image.new("P", (16, 16), 0), Image.new("P", (16, 16), 1)]
    for frame in frames:
        frame.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    gif = bb.load_image(buf.getvalue())
    assert gif.mode == "RGB" and gif.getpixel((8, 8)) == (255, 0, 0)

    transparent = Image.new("RGBA", (10, 10), (0, 0, 0, 0))  # invisible black -> white
    assert bb.load_image(transparent).getpixel((5, 5)) == (255, 255, 255)
    opaque = Image.new("RGBA", (10, 10), (10, 20, 30, 255))
    assert bb.load_image(opaque).getpixel((5, 5)) == (10, 20, 30)
    for mode in ("L", "LA", "CMYK", "I;16", "1"):
        img = bb.load_image(Image.new(mode, (12, 9)))
        assert img.mode == "RGB" and img.size == (12, 9)

    png = io.BytesIO()
    Image.new("LA", (8, 8), (100, 255)).save(png, format="PNG")
    assert bb.load_image(png.getvalue()).getpixel((1, 1)) == (100, 100, 100)


def test_load_image_from_path_and_draft(tmp_path):
    big = Image.new("RGB", (1600, 1200), (0, 128, 255))
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg_bytes(big))
    full = bb.load_image(path)
    drafted = bb.load_image(path.read_bytes(), min_size=256)
    assert full.size == (1600, 1200)
    assert min(drafted.size) >= 256 and drafted.size[0] < 1600  # decoded at a reduced scale


def test_preprocess_shape_range_and_values():
    images = [
        Image.new("RGB", (640, 480), (255, 255, 255)),
        Image.new("RGB", (100, 900), (0, 0, 0)),
        Image.new("RGB", (7, 5), (255, 255, 255)),  # tiny: upscaled
    ]
    batch = bb.preprocess(images, 224)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    assert batch.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(batch[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(batch[1], -1.0, atol=1e-6)
    np.testing.assert_allclose(batch[2], 1.0, atol=1e-6)
    assert bb.preprocess([], 224).shape == (0, 3, 224, 224)


def test_preprocess_equals_resize_then_center_crop():
    rng = np.random.default_rng(1)
    smooth = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    img = Image.fromarray(smooth).resize((500, 375), Image.Resampling.BILINEAR)
    ours = bb.preprocess([img], 224)[0]

    short = bb.crop_size_for(224)
    assert short == 256
    ref = img.resize((int(500 * short / 375), short), Image.Resampling.BICUBIC)
    left, top = round((ref.width - 224) / 2), round((ref.height - 224) / 2)
    ref = ref.crop((left, top, left + 224, top + 224))
    expected = bb.to_model_input([ref])[0]
    assert np.abs(ours - expected).mean() < 1e-3


def test_sixteen_bit_grayscale_is_rescaled_not_clipped():
    arr = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    value = bb.load_image(buf.getvalue()).getpixel((4, 4))
    assert value[0] == value[1] == value[2] and 120 <= value[0] <= 135
