import io

import numpy as np
from PIL import Image

from labeling import services


def jpeg_bytes(seed: int = 0, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def make_sample(project, *, seed: int = 0, labels=(), user=None, data: bytes | None = None):
    """A real sample through the real ingest service (files stored, row written)."""
    report = services.samples_ingest(
        project=project,
        items=[services.IngestItem(filename=f"s{seed}.jpg", data=data or jpeg_bytes(seed), labels=list(labels))],
        user=user,
    )
    (result,) = report.results
    assert result.ok, result.error_message
    return result.sample
