"""Test videos built with PyAV from real images (hymenoptera_data), small so they encode in a blink."""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image

from conftest import datasets_dir

HYM = datasets_dir() / "hymenoptera_data"
CODECS = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "webm": "libvpx-vp9"}


def encode(
    pictures,
    *,
    fps: int = 5,
    container: str = "mp4",
    size=(224, 168),
    codec: str | None = None,
    options=None,
    rotation: int = 0,
) -> bytes:
    """Each picture becomes one frame of a `fps` video (pictures: PIL images or paths)."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format=container, options=options or {})
    stream = out.add_stream(codec or CODECS[container], rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    if rotation:
        stream.set_display_rotation(rotation)
    for pic in pictures:
        img = pic if isinstance(pic, Image.Image) else Image.open(pic)
        frame = av.VideoFrame.from_image(img.convert("RGB").resize(size))
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return buf.getvalue()


def hym(split: str, cls: str, n: int, offset: int = 0) -> list:
    import pytest

    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    return sorted((HYM / split / cls).glob("*.jpg"))[offset : offset + n]


def ants_then_bees(
    *, split: str = "train", photos: int = 10, seconds: int = 3, fps: int = 5, container: str = "mp4", **kw
) -> bytes:
    """`seconds` of ants, then `seconds` of bees: the first `photos` photos of each class, one per frame,
    cycled (the first 10 train photos are what inference/tests/conftest.py's deployed model learned)."""
    n = seconds * fps
    ants, bees = hym(split, "ants", photos), hym(split, "bees", photos)
    frames = [ants[i % len(ants)] for i in range(n)] + [bees[i % len(bees)] for i in range(n)]
    return encode(frames, fps=fps, container=container, **kw)


def noise(seconds: float, *, fps: int = 5, size=(64, 48), container: str = "mp4") -> bytes:
    rng = np.random.default_rng(0)
    frames = [
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        for _ in range(round(seconds * fps))
    ]
    return encode(frames, fps=fps, container=container, size=size)
