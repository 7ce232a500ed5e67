"""One inference path: invoke and batch jobs decode each image once (validation's decode, at model
size for JPEGs), the backbones resize from that image, and an EXIF orientation is applied once."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from labeling import images
from training.ml import backbone as bb


def _rotated_jpeg(size=(1600, 800)) -> bytes:
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, size[0] // 4, size[1]))  # a blue band on the left
    exif = img.getexif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: the band ends up on top
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_it_applies_an_exif_orientation_once_and_decodes_at_model_size():
    data = _rotated_jpeg()
    v = images.validate_image(data, limits=images.ImageLimits(), decode_min_side=297)
    assert (v.width, v.height) == (800, 1600)  # as displayed, at the file's size
    assert v.image.size == (400, 800)  # DCT-scaled: the shorter side still >= 297
    assert "exif" not in v.image.info
    same = bb.load_image(v.image)
    assert same is v.image  # no second decode, no copy
    # The band is on top (not turned back to the left by a second exif_transpose).
    top, left = same.getpixel((200, 20)), same.getpixel((20, 400))
    assert top[2] > 150 and left[0] > 150
    assert bb.load_image(data).size == (800, 1600)  # the raw path agrees on the orientation
    full = images.validate_image(data, limits=images.ImageLimits())
    assert full.image.size == (800, 1600) and (full.width, full.height) == (800, 1600)


def test_a_truncated_jpeg_is_still_refused_when_decoded_at_model_size():
    data = _rotated_jpeg()
    with pytest.raises(images.ImageError) as err:
        images.validate_image(data[: len(data) // 2], limits=images.ImageLimits(), decode_min_side=297)
    assert err.value.code == "invalid_image"


def test_invoke_opens_each_image_once(team, settings, monkeypatch):
    from batches.tests.conftest import train_pixels_model
    from inference import services

    settings.PICTOR_BACKBONES = ["pixels"]
    settings.PICTOR_QUICK_SECONDS = 0.5
    train_pixels_model(team.project)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **kw: opened.append(1) or real_open(*a, **kw))
    items = [services.InvokeItem(filename=f"{i}.jpg", data=_rotated_jpeg((64 + i, 48))) for i in range(3)]
    services.invoke(project=team.project, items=items)
    assert all(item.result.get("label") for item in items)
    assert len(opened) == 3
