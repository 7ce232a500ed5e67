"""Fixtures of the batch tests: a deployed quick model on the "pixels" feature (no network, fast),
tiny PNGs in bulk, and a helper that runs a batch's background steps in this process."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image


def png(index: int, *, bright: bool, side: int = 32) -> bytes:
    """A tiny PNG, unique by its index (written into the first pixel): "bright" images have a bright
    top half, "dark" ones a bright bottom half (the pixels feature ignores overall brightness)."""
    rng = np.random.default_rng(index)
    arr = np.full((side, side, 3), 40, np.int64)
    if bright:
        arr[: side // 2] = 210
    else:
        arr[side // 2 :] = 210
    arr = np.clip(arr + rng.integers(-20, 20, (side, side, 3)), 0, 255).astype(np.uint8)
    arr[0, 0] = [index % 256, (index // 256) % 256, (index // 65536) % 256]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def images(n: int) -> list[tuple[str, bytes]]:
    """n items "<i>.png", alternately bright and dark (even: bright)."""
    return [(f"{'b' if i % 2 == 0 else 'd'}/{i:05d}.png", png(i, bright=i % 2 == 0)) for i in range(n)]


def zip_bytes(items: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(items: list[tuple[str, bytes]], mode: str = "w") -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_folder(root, items: list[tuple[str, bytes]]) -> None:
    for name, data in items:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def train_pixels_model(project, *, labels=("bright", "dark"), per_label: int = 6, offset: int = 900_000):
    """Label a few images and run the real quick retrain on the pixels feature: a deployed model."""
    from labeling.services import sample_labels_set
    from labeling.tests.factories import make_sample
    from training import runner, services
    from training.models import ModelVersion

    for j in range(per_label):
        for k, name in enumerate(labels):
            shade = {"bright": True, "dark": False}.get(name, j % 2 == 0)
            data = png(offset + 10 * j + k, bright=shade) if name != "grey" else _grey(offset + 10 * j + k)
            sample = make_sample(project, data=data)
            sample_labels_set(sample=sample, names=[name], user=None)
    services.embeddings_compute(project_id=project.pk)
    assert runner.quick_retrain_run(project_id=project.pk) == "succeeded"
    return ModelVersion.objects.get(project=project, deployed=True)


def _grey(index: int) -> bytes:
    arr = np.full((32, 32, 3), 40, np.uint8)
    arr[:, :16] = 210  # bright left half: neither of the other two labels
    arr[0, 0] = [index % 256, (index // 256) % 256, 7]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def pixels(settings):
    settings.PICTOR_BACKBONES = ["pixels"]
    settings.PICTOR_QUICK_SECONDS = 0.5
    settings.PICTOR_BATCH_CHUNK = 64


@pytest.fixture
def model(team, pixels):
    """team.project with a deployed quick model (bright vs dark) on the pixels feature."""
    return train_pixels_model(team.project)


def drive(batch_id) -> None:
    """Run the batch's listing and every pending chunk here, as the batch queue's workers would."""
    from batches import services
    from batches.models import BatchChunk

    services.batch_listing_run(batch_id=batch_id)
    for chunk_id in BatchChunk.objects.filter(batch_id=batch_id, status="pending").values_list("pk", flat=True):
        services.batch_chunk_run(chunk_id=chunk_id)


from tests.s3 import s3_env, s3_server  # noqa: E402, F401
