"""Tests for labeling.images and labeling.zips: plain pytest, no Django, no database."""

from __future__ import annotations

import hashlib
import io
import os
import re
import resource
import time
import unicodedata
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from labeling import images
from labeling.images import (
    HTTP_STATUS,
    ImageError,
    ImageLimits,
    ValidatedImage,
    ZipError,
    make_thumbnail,
    validate_image,
)
from labeling.zips import ZipMember, is_zip, iter_zip
from labeling.tests import badfiles as bf

LIMITS = ImageLimits()
MB = 1024 * 1024


def _datasets_dir() -> Path:
    env = os.environ.get("PICTOR_DATASETS")
    # labeling/tests/test_images.py -> parents[3] is the directory holding the repo
    # (/work), next to which the shared datasets live (/work/shared/datasets).
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "datasets"


@pytest.fixture(scope="module")
def hymenoptera() -> Path:
    root = _datasets_dir() / "hymenoptera_data"
    if not (root / "train" / "ants").is_dir():
        pytest.skip(f"hymenoptera_data not found under {root.parent} (set PICTOR_DATASETS)")
    return root


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(img)[xy[1], xy[0]])


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


# --------------------------------------------------------------------------- good images


@pytest.mark.parametrize("sample", bf.good_image_samples(), ids=lambda s: s.name)
def test_good_images_are_accepted_with_format_and_displayed_size(sample: bf.Sample) -> None:
    v = validate_image(sample.data, limits=LIMITS, filename=sample.filename)
    assert v.format == sample.format
    assert v.mime_type == images.ALLOWED_FORMATS[sample.format][1]
    assert (v.width, v.height) == sample.size
    assert v.image.mode == "RGB"
    assert v.image.size == sample.size
    assert v.data is sample.data
    assert v.sha256 == hashlib.sha256(sample.data).hexdigest()


def test_exif_orientation_6_is_applied() -> None:
    v = validate_image(bf.jpeg_exif_orientation_6(), limits=LIMITS)
    assert (v.width, v.height) == (20, 40)  # stored 40x20
    assert close_to(pixel(v.image, (10, 5)), (220, 0, 0))  # red on top
    assert close_to(pixel(v.image, (10, 35)), (0, 0, 220))  # blue below


def test_cmyk_jpeg_colours_are_not_inverted() -> None:
    v = validate_image(bf.cmyk_jpeg(), limits=LIMITS)
    assert close_to(pixel(v.image, (12, 12)), (255, 0, 0), tol=20)


def test_alpha_is_composited_on_white() -> None:
    v = validate_image(bf.rgba_png(), limits=LIMITS)
    assert pixel(v.image, (2, 2)) == (255, 255, 255)  # transparent -> white, not black
    assert pixel(v.image, (30, 2)) == (255, 0, 0)


def test_palette_transparency_is_composited_on_white() -> None:
    v = validate_image(bf.palette_png_transparent(), limits=LIMITS)
    assert pixel(v.image, (2, 2)) == (255, 255, 255)
    assert pixel(v.image, (15, 2)) == (0, 0, 255)


def test_16_bit_png_is_scaled_not_clipped() -> None:
    # Pillow's own convert("RGB") would clip 32768 to 255 (white).
    v = validate_image(bf.png_gray16(), limits=LIMITS)
    assert close_to(pixel(v.image, (3, 3)), (128, 128, 128), tol=1)
    v48 = validate_image(bf.png_rgb48(), limits=LIMITS)
    assert close_to(pixel(v48.image, (3, 3)), (255, 128, 0), tol=1)


def test_gif_animation_uses_first_frame() -> None:
    v = validate_image(bf.gif_animation(), limits=LIMITS)
    assert close_to(pixel(v.image, (5, 5)), (255, 0, 0), tol=2)


def test_validated_image_repr_does_not_dump_bytes() -> None:
    v = validate_image(bf.good_jpeg(), limits=LIMITS)
    text = repr(v)
    assert "jpeg" in text and v.sha256 in text
    assert len(text) < 300


# --------------------------------------------------------------------------- bad images


@pytest.mark.parametrize("sample", bf.bad_image_samples(), ids=lambda s: s.name)
def test_bad_images_are_rejected_with_exact_code(sample: bf.Sample) -> None:
    with pytest.raises(ImageError) as info:
        validate_image(sample.data, limits=LIMITS, filename=sample.filename)
    err = info.value
    assert err.code == sample.code
    assert err.http_status == sample.status == bf.STATUS[sample.code]
    assert err.message and err.message.endswith(".")
    assert str(err) == err.message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "File is empty."),
        (bf.truncated_jpeg(), "Image is truncated or corrupt."),
        (bf.png_bomb(), "Image has 900,000,000 pixels; the limit is 40,000,000."),
        (bf.png_header_only(10_000, 10_000), "Image has 100,000,000 pixels; the limit is 40,000,000."),
        (bf.png_header_only(7_000, 7_000), "Image has 49,000,000 pixels; the limit is 40,000,000."),
        (bf.png_corrupt_header(), "File looks like a PNG image but its header is corrupt."),
    ],
    ids=["empty", "truncated", "bomb", "bomb_pillow_warning_range", "bomb_own_check", "png_header"],
)
def test_invalid_image_messages(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match="^" + re.escape(message) + "$"):
        validate_image(data, limits=LIMITS)


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (bf.text_file(), "text"),
        (bf.html_file(), "HTML"),
        (bf.svg_file(), "SVG"),
        (bf.pdf_file(), "PDF"),
        (bf.psd_file(), "PSD"),
        (bf.ico_file(), "ICO"),
        (bf.heic_file(), "HEIC"),
        (bf.zip_as_image(), "ZIP archive"),
        (bytes(range(256)) * 4, "unknown binary data"),
        (b"BMW owners club newsletter\n" * 3, "text"),  # "BM" prefix is not enough for BMP
    ],
)
def test_unsupported_media_type_names_what_was_detected(data: bytes, detected: str) -> None:
    with pytest.raises(ImageError) as info:
        validate_image(data, limits=LIMITS, filename="upload.jpg")
    assert info.value.code == "unsupported_media_type"
    assert info.value.message.startswith(f"File is not a supported image (detected: {detected}).")


def test_size_limit_is_checked_before_anything_else() -> None:
    small = ImageLimits(max_bytes=1000)
    s = bf.oversized(limit=1000)
    with pytest.raises(ImageError) as info:
        validate_image(s.data, limits=small)
    assert info.value.code == s.code == "too_large"
    assert info.value.http_status == 413
    assert info.value.message == "File is 1,001 bytes; the limit is 1,000 bytes."
    # Even a bomb or garbage is "too large" first: length is checked before parsing.
    for data in (bf.png_bomb(), bf.text_file() * 10):
        with pytest.raises(ImageError) as info:
            validate_image(data, limits=small)
        assert info.value.code == "too_large"


def test_too_large_message_in_megabytes() -> None:
    with pytest.raises(ImageError) as info:
        validate_image(bytes(25 * MB), limits=LIMITS)
    assert info.value.message == "File is 25.0 MB; the limit is 20 MB."
    with pytest.raises(ImageError) as info:
        validate_image(bytes(20 * MB + 1), limits=LIMITS)  # must not read "20.0 MB; limit 20 MB"
    assert info.value.message == "File is 20,971,521 bytes; the limit is 20,971,520 bytes."


def test_pixel_limit_comes_from_limits() -> None:
    with pytest.raises(ImageError) as info:
        validate_image(bf.good_jpeg(), limits=ImageLimits(max_pixels=1000))
    assert info.value.code == "too_large"
    assert info.value.message == "Image has 3,072 pixels; the limit is 1,000."


def test_limit_above_pillows_guard_reports_the_real_limit() -> None:
    # We never raise Pillow's process-global guard, so a larger configured limit is
    # capped by it and the message says so honestly.
    with pytest.raises(ImageError) as info:
        validate_image(bf.png_header_only(10_000, 10_000), limits=ImageLimits(max_pixels=10**9))
    assert info.value.message == f"Image has 100,000,000 pixels; the limit is {Image.MAX_IMAGE_PIXELS:,}."


def test_bomb_is_rejected_from_the_header_without_allocating() -> None:
    data = bf.png_bomb()
    assert len(data) < 200_000  # a real, complete 900 MP PNG
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(ImageError):
        validate_image(data, limits=LIMITS)
    assert time.perf_counter() - start < 0.5
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # decoding would need ~900 MB


def test_no_global_state_leaks() -> None:
    filters = list(warnings.filters)
    max_pixels = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping validate_image fails here
        for data in (bf.png_bomb(), bf.png_header_only(10_000, 10_000), bf.good_jpeg(), bf.truncated_jpeg()):
            try:
                validate_image(data, limits=LIMITS)
            except ImageError:
                pass
    assert warnings.filters == filters
    assert Image.MAX_IMAGE_PIXELS == max_pixels
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_refuses_to_run_with_load_truncated_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        validate_image(bf.truncated_jpeg(), limits=LIMITS)


def test_error_types() -> None:
    err = ImageError("unsupported_media_type", "Nope.")
    assert (err.code, err.message, err.http_status) == ("unsupported_media_type", "Nope.", 415)
    assert ZipError("too_large", "Big.").http_status == 413
    assert ZipError("invalid", "Bad.").http_status == 400
    assert isinstance(err, images.UploadError) and isinstance(ZipError("invalid", "x"), images.UploadError)
    with pytest.raises(ValueError):
        ImageError("invalid", "ZipError's code, not ImageError's.")
    assert HTTP_STATUS == bf.STATUS  # the module's mapping matches the API contract


# --------------------------------------------------------------------------- thumbnails


def _webp_size(data: bytes) -> tuple[int, int]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "WEBP"
        return im.size


def test_thumbnail_is_webp_with_longest_side_bounded() -> None:
    img = Image.new("RGB", (1000, 500), (10, 120, 200))
    assert _webp_size(make_thumbnail(img, size=256)) == (256, 128)
    assert _webp_size(make_thumbnail(Image.new("RGB", (300, 900)), size=256)) == (85, 256)
    assert _webp_size(make_thumbnail(Image.new("RGB", (1, 5000)), size=256)) == (1, 256)
    assert _webp_size(make_thumbnail(Image.new("RGB", (100, 40)), size=256)) == (100, 40)  # never upscaled
    assert img.size == (1000, 500)  # input untouched


def test_thumbnail_accepts_any_mode() -> None:
    rgba = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
    data = make_thumbnail(rgba, size=64)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (64, 64)
        assert close_to(pixel(im.convert("RGB"), (32, 32)), (255, 255, 255), tol=3)
    assert _webp_size(make_thumbnail(Image.new("L", (50, 50)), size=32)) == (32, 32)
    with pytest.raises(ValueError):
        make_thumbnail(rgba, size=0)


# --------------------------------------------------------------------------- is_zip


def test_is_zip() -> None:
    assert is_zip(bf.make_zip({"a.jpg": bf.good_jpeg()}))
    assert is_zip(bf.make_zip({}))  # empty archive starts with the end record
    assert not is_zip(bf.good_jpeg())
    assert not is_zip(b"")
    assert not is_zip(bf.good_jpeg() + bf.make_zip({"a.jpg": b"x"}))  # polyglot: an image


# --------------------------------------------------------------------------- ZIP: hostile archives


@pytest.mark.parametrize("sample", bf.bad_zip_samples(), ids=lambda s: s.name)
def test_hostile_archives_are_refused_whole(sample: bf.ZipSample) -> None:
    if sample.when == "open":
        with pytest.raises(ZipError) as info:
            iter_zip(sample.data, limits=LIMITS)  # before a single member is handed out
    else:
        members = iter_zip(sample.data, limits=LIMITS)
        with pytest.raises(ZipError) as info:
            list(members)
    assert info.value.code == sample.code
    assert info.value.http_status == bf.STATUS[sample.code]
    assert info.value.message.endswith(".")


def test_zip_bomb_message() -> None:
    with pytest.raises(ZipError, match=r"expands 1,0\d\dx \(limit 100x\); it looks like a zip bomb"):
        iter_zip(bf.zip_bomb(), limits=LIMITS)


def test_small_highly_compressible_entries_are_not_called_bombs() -> None:
    # 200 KB of zeros compresses ~1000:1, but its compressed size counts as 4 KiB (the floor).
    members = list(iter_zip(bf.make_zip({"ants/flat.jpg": bytes(200 * 1024)}), limits=LIMITS))
    assert [m.label for m in members] == ["ants"]
    with pytest.raises(ImageError) as info:
        members[0].validate(limits=LIMITS)
    assert info.value.code == "unsupported_media_type"


def test_it_checks_the_ratio_below_one_mib_and_for_the_whole_archive() -> None:
    with pytest.raises(ZipError, match="zip bomb"):
        iter_zip(bf.make_zip({"ants/flat.jpg": bytes(900 * 1024)}), limits=LIMITS)
    # Many entries each under the floor still add up to a refused archive.
    with pytest.raises(ZipError, match="Archive expands"):
        iter_zip(bf.make_zip({f"ants/{i}.jpg": bytes(300 * 1024) for i in range(20)}), limits=LIMITS)


def test_total_uncompressed_size_limit() -> None:
    data = bf.make_zip({"ants/a.jpg": bytes(800), "bees/b.jpg": bytes(800)})
    with pytest.raises(ZipError) as info:
        iter_zip(data, limits=ImageLimits(zip_max_total_bytes=1000))
    assert info.value.code == "too_large"
    assert info.value.message == "Archive expands to 1,600 bytes; the limit is 1,000 bytes."


def test_entry_count_limit_counts_real_files_not_macos_litter() -> None:
    img = bf.good_jpeg()
    files = {f"ants/{i}.jpg": img for i in range(3)}
    litter = {f"__MACOSX/ants/._{i}.jpg": b"\x00\x05\x16\x07" + bytes(60) for i in range(3)}
    limits = ImageLimits(zip_max_entries=3)
    assert len(list(iter_zip(bf.make_zip(files | litter), limits=limits))) == 3
    with pytest.raises(ZipError) as info:
        iter_zip(bf.make_zip(files | {"bees/x.jpg": img}), limits=limits)
    assert info.value.code == "too_large"
    assert info.value.message == "Archive has 4 files; the limit is 3."


def test_raw_entry_count_is_checked_before_parsing_the_directory() -> None:
    dirs = [(f"d{i}/", b"") for i in range(10)]  # 10 raw entries, 0 files
    with pytest.raises(ZipError) as info:
        iter_zip(bf.make_zip(dirs), limits=ImageLimits(zip_max_entries=3))  # raw cap = 3 * 3
    assert info.value.code == "too_large"


def test_zip64_end_record_is_understood() -> None:
    data = bf.with_zip64_eocd(bf.make_zip({"ants/a.jpg": bf.good_jpeg(), "bees/b.jpg": bf.good_jpeg()}))
    assert [m.label for m in iter_zip(data, limits=LIMITS)] == ["ants", "bees"]


def test_oversized_entry_is_a_per_file_error_and_is_not_decompressed() -> None:
    big = bf.encode(Image.new("RGB", (300, 300)), "BMP")  # 270 KB
    data = bf.make_zip({"ants/big.bmp": big, "ants/ok.jpg": bf.good_jpeg()})
    limits = ImageLimits(max_bytes=100_000)
    members = {m.path: m for m in iter_zip(data, limits=limits)}
    assert members["ants/big.bmp"].data == b""
    assert members["ants/big.bmp"].error is not None
    with pytest.raises(ImageError) as info:
        members["ants/big.bmp"].validate(limits=limits)
    assert info.value.code == "too_large"
    assert info.value.message == "File is 263.7 KB; the limit is 97.7 KB."
    assert members["ants/ok.jpg"].validate(limits=limits).format == "jpeg"


# --------------------------------------------------------------------------- ZIP: labels


def _labels(data: bytes | io.BytesIO, limits: ImageLimits = LIMITS) -> dict[str, str | None]:
    return {m.path: m.label for m in iter_zip(data, limits=limits)}


def test_labels_from_top_level_folders_and_skipped_entries() -> None:
    img = bf.good_jpeg()
    inner_bomb = bf.zip_bomb()
    data = bf.make_zip(
        [
            ("ants/", b""),
            ("ants/a.jpg", img),
            ("ants/2019/deep.jpg", img),  # deeper folders keep the top-level label
            ("bees/b.PNG", bf.png_1bit()),
            ("bees/no_extension", img),  # picked up by content
            ("bees/IMG_0001.HEIC", bf.heic_file()),  # yielded so the user sees a 415
            ("root.jpg", img),  # root files: no label
            ("README.txt", b"ants and bees"),
            ("samples.csv", b"id,sha256\n"),
            ("nested.zip", inner_bomb),  # nested archives are never opened
            ("ants/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(100)),
            ("__MACOSX/ants/._a.jpg", b"\x00\x05\x16\x07" + bytes(100)),
            (".git/objects/x.jpg", img),
        ]
    )
    assert _labels(data) == {
        "ants/a.jpg": "ants",
        "ants/2019/deep.jpg": "ants",
        "bees/b.PNG": "bees",
        "bees/no_extension": "bees",
        "bees/IMG_0001.HEIC": "bees",
        "root.jpg": None,
    }
    members = {m.path: m for m in iter_zip(data, limits=LIMITS)}
    assert members["bees/no_extension"].validate(limits=LIMITS).format == "jpeg"
    with pytest.raises(ImageError) as info:
        members["bees/IMG_0001.HEIC"].validate(limits=LIMITS)
    assert info.value.code == "unsupported_media_type"
    assert isinstance(members["ants/a.jpg"], ZipMember)
    assert members["ants/a.jpg"].data == img


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        # a single wrapper folder (zipping the folder instead of its contents)
        (["hymenoptera/ants/a.jpg", "hymenoptera/bees/b.jpg"], ["ants", "bees"]),
        # two wrapper levels
        (["data/train/ants/a.jpg", "data/train/bees/b.jpg"], ["ants", "bees"]),
        # one class folder only: it is the label, not a wrapper
        (["ants/a.jpg", "ants/b.jpg"], ["ants", "ants"]),
        # a folder with images directly in it is not a wrapper
        (["ants/a.jpg", "ants/sub/b.jpg"], ["ants", "ants"]),
        # a root image next to the folder: no peeling
        (["photos/ants/a.jpg", "x.jpg"], ["photos", None]),
        # Windows-style separators
        (["ants\\a.jpg", "bees\\b.jpg"], ["ants", "bees"]),
        # "./" prefixes some tools write
        (["./ants/a.jpg", "./bees/b.jpg"], ["ants", "bees"]),
    ],
)
def test_label_rules(names: list[str], expected: list[str | None]) -> None:
    img = bf.good_jpeg()
    data = bf.make_zip([(n, img) for n in names] + [("__MACOSX/._x", b"junk"), ("wrapper/.DS_Store", b"x")])
    assert list(_labels(data).values()) == expected


def test_paths_are_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "café")  # how macOS writes names
    data = bf.make_zip({f"{decomposed}/a.jpg": bf.good_jpeg(), "bees\\b.jpg": bf.good_jpeg()})
    assert _labels(data) == {"café/a.jpg": "café", "bees/b.jpg": "bees"}


def test_empty_archive_yields_nothing() -> None:
    assert list(iter_zip(bf.make_zip({}), limits=LIMITS)) == []
    assert list(iter_zip(bf.make_zip({"README.md": b"hi"}), limits=LIMITS)) == []


def test_accepts_file_objects_and_leaves_them_open(tmp_path: Path) -> None:
    data = bf.make_zip({"ants/a.jpg": bf.good_jpeg()})
    buf = io.BytesIO(data)
    assert _labels(buf) == {"ants/a.jpg": "ants"}
    assert not buf.closed
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    with path.open("rb") as f:
        assert _labels(f) == {"ants/a.jpg": "ants"}
        assert not f.closed
    assert _labels(memoryview(data)) == {"ants/a.jpg": "ants"}


def test_all_compression_methods_zipfile_supports() -> None:
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        data = bf.make_zip({"ants/a.jpg": bf.good_jpeg()}, compression=method)
        (member,) = iter_zip(data, limits=LIMITS)
        assert member.validate(limits=LIMITS).format == "jpeg"


# --------------------------------------------------------------------------- real photos


def test_real_photos_validate_like_pillow_sees_them(hymenoptera: Path) -> None:
    files = sorted((hymenoptera / "train" / "ants").glob("*.jpg"))[:5]
    files += sorted((hymenoptera / "val" / "bees").glob("*.jpg"))[:5]
    for path in files:
        data = path.read_bytes()
        v = validate_image(data, limits=LIMITS, filename=path.name)
        with Image.open(path) as ref:
            expected = ImageOps.exif_transpose(ref).size
        assert (v.format, v.mime_type) == ("jpeg", "image/jpeg")
        assert (v.width, v.height) == expected
        thumb = make_thumbnail(v.image, size=LIMITS.thumbnail_size)
        tw, th = _webp_size(thumb)
        assert max(tw, th) == min(LIMITS.thumbnail_size, max(expected))
        assert abs(tw / th - expected[0] / expected[1]) < 0.02


def test_real_photo_truncated_is_rejected(hymenoptera: Path) -> None:
    data = next((hymenoptera / "train" / "bees").glob("*.jpg")).read_bytes()
    with pytest.raises(ImageError) as info:
        validate_image(data[: len(data) // 2], limits=LIMITS)
    assert info.value.code == "invalid_image"


def test_zip_of_class_folders_imports_every_photo(hymenoptera: Path) -> None:
    buf = io.BytesIO()
    expected: dict[str, int] = {}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # JPEGs don't deflate anyway
        for label in ("ants", "bees"):
            paths = sorted((hymenoptera / "train" / label).glob("*"))
            expected[label] = len(paths)
            for p in paths:
                zf.write(p, f"{label}/{p.name}")
    counts: dict[str, int] = {}
    for member in iter_zip(buf.getvalue(), limits=LIMITS):
        v = member.validate(limits=LIMITS)
        assert isinstance(v, ValidatedImage) and v.width > 0
        counts[member.label] = counts.get(member.label, 0) + 1
    assert counts == expected


def test_zip_of_the_train_folder_uses_second_level_labels(hymenoptera: Path) -> None:
    # What you get from right-click "Compress train": train/ants/..., train/bees/...,
    # with directory entries and macOS litter.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/", b"")
        for label in ("ants", "bees"):
            zf.writestr(f"train/{label}/", b"")
            for p in sorted((hymenoptera / "train" / label).glob("*.jpg"))[:8]:
                zf.write(p, f"train/{label}/{p.name}")
                zf.writestr(f"__MACOSX/train/{label}/._{p.name}", b"\x00\x05\x16\x07" + bytes(200))
        zf.writestr("train/.DS_Store", bytes(64))
    members = list(iter_zip(buf.getvalue(), limits=LIMITS))
    assert len(members) == 16
    assert {m.label for m in members} == {"ants", "bees"}
    assert all(m.path.startswith("train/") for m in members)


def test_pillow_bomb_message_fallback_and_bytes_like_input() -> None:
    err = images._bomb_error(Image.DecompressionBombError("reworded by a future Pillow"), 1000)
    assert (err.code, err.message) == ("too_large", "Image has more pixels than the limit of 1,000.")
    v = validate_image(memoryview(bf.good_jpeg()), limits=LIMITS)  # type: ignore[arg-type]
    assert v.data == bf.good_jpeg() and isinstance(v.data, bytes)
