"""In-memory corpus of good and hostile uploads, shared by the imaging and API tests.

Everything is generated (no fixtures on disk) and cached, so importing this module
is free and each sample is built once per process. Each sample knows what should
happen to it: ``code`` is the expected ``ImageError``/``ZipError`` code (None means
accepted), and good images also carry the expected format and displayed size.

Usage in API tests::

    from labeling.tests import badfiles
    for s in badfiles.image_samples():
        resp = client.post(url, {"file": s.upload()})
        assert resp.status_code == (201 if s.code is None else s.status)
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# Kept in sync with labeling.images.HTTP_STATUS on purpose by hand: the tests should
# notice if the module's mapping drifts from the API contract.
STATUS = {"invalid_image": 400, "invalid": 400, "too_large": 413, "unsupported_media_type": 415}


@dataclass(frozen=True)
class Sample:
    name: str
    filename: str
    data: bytes = field(repr=False)
    code: str | None  # expected error code; None = valid
    format: str | None = None  # expected ValidatedImage.format when valid
    size: tuple[int, int] | None = None  # expected (width, height) as displayed

    @property
    def status(self) -> int | None:
        return None if self.code is None else STATUS[self.code]

    def upload(self):  # a Django SimpleUploadedFile, imported lazily (module stays Django-free)
        from django.core.files.uploadedfile import SimpleUploadedFile

        return SimpleUploadedFile(self.filename, self.data)


# --------------------------------------------------------------------------- builders


def _noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    # Noise, not flat colour: truncating a JPEG/PNG must cut real entropy-coded data.
    rng = np.random.default_rng(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    arr = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_from_rows(width: int, height: int, *, bit_depth: int, color_type: int, rows: Iterable[bytes]) -> bytes:
    """Hand-built PNG: lets us write headers Pillow would never produce (bombs, 48-bit)."""
    comp = zlib.compressobj(9)
    idat = bytearray()
    for row in rows:
        idat += comp.compress(b"\x00" + row)  # filter type 0 per row
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", bytes(idat)) + _png_chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but carries a single tiny row of pixels.

    Enough to test checks that must fire from the header, before decoding.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


# --------------------------------------------------------------------------- bad images


@functools.cache
def png_bomb() -> bytes:
    """A complete, valid 30000x30000 1-bit PNG (900 megapixels) of ~110 KB.

    Decoding it would allocate 900 MB in Pillow ("1" images use a byte per pixel).
    """
    row = bytes(30000 // 8)
    return png_from_rows(30000, 30000, bit_depth=1, color_type=0, rows=(row for _ in range(30000)))


@functools.cache
def truncated_jpeg() -> bytes:
    data = encode(_noise(128, 96), "JPEG", quality=90)
    return data[: len(data) * 6 // 10]


@functools.cache
def truncated_png() -> bytes:
    data = encode(_noise(128, 96), "PNG")
    return data[: len(data) * 6 // 10]


@functools.cache
def png_bad_crc() -> bytes:
    data = bytearray(encode(_noise(64, 64), "PNG"))
    i = data.index(b"IDAT") + 200
    data[i] ^= 0xFF  # flip a byte inside the compressed pixels
    return bytes(data)


def png_corrupt_header() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"this is not an IHDR chunk at all" * 4


def gif_header_only() -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)  # screen descriptor, no image


def text_file() -> bytes:
    return b"Just some notes about ants and bees.\nNot an image.\n" * 5


def html_file() -> bytes:
    return b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>nope</body></html>\n"


def svg_file() -> bytes:
    return b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>\n'


@functools.cache
def pdf_file() -> bytes:
    return encode(Image.new("RGB", (20, 20), "white"), "PDF")


def psd_file() -> bytes:
    # Photoshop header: signature, version 1, 6 reserved, 3 channels, 16x16, 8 bit, RGB;
    # then empty colour-mode/resources/layers sections and raw planar pixels.
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 16, 16, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(3 * 16 * 16)


@functools.cache
def ico_file() -> bytes:
    return encode(_noise(32, 32), "ICO", sizes=[(32, 32)])


def heic_file() -> bytes:
    # Just the ISO-BMFF "ftyp" box an iPhone HEIC starts with: enough to be named.
    return struct.pack(">I", 24) + b"ftypheic" + struct.pack(">I", 0) + b"mif1heic" + bytes(64)


@functools.cache
def zip_as_image() -> bytes:
    return make_zip({"ants/a.jpg": good_jpeg()})


def oversized(*, limit: int) -> Sample:
    """Bytes just over ``limit``; rejected on length alone, before any parsing."""
    data = b"\xff\xd8\xff\xe0" + bytes(limit - 3)
    return Sample("oversized", "huge.jpg", data, "too_large")


# --------------------------------------------------------------------------- good images


@functools.cache
def good_jpeg() -> bytes:
    return encode(_noise(64, 48), "JPEG", quality=85)


@functools.cache
def jpeg_exif_orientation_6() -> bytes:
    """Stored 40x20, left half red, right half blue; orientation 6 means "rotate 90°
    clockwise to display", so it shows as 20x40 with red on top."""
    img = Image.new("RGB", (40, 20), (220, 0, 0))
    img.paste((0, 0, 220), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", exif=exif, quality=90)


@functools.cache
def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red


@functools.cache
def grayscale_jpeg() -> bytes:
    return encode(_noise(30, 20, "L"), "JPEG")


@functools.cache
def rgba_png() -> bytes:
    """Left half fully transparent, right half opaque red."""
    arr = np.zeros((16, 32, 4), dtype=np.uint8)
    arr[:, 16:] = (255, 0, 0, 255)
    return encode(Image.fromarray(arr, "RGBA"), "PNG")


@functools.cache
def palette_png_transparent() -> bytes:
    img = Image.new("P", (20, 10), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (10, 0, 20, 10))  # right half blue, left half index 0 = transparent
    return encode(img, "PNG", transparency=0)


@functools.cache
def png_gray16() -> bytes:
    arr = np.full((12, 20), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    return encode(Image.fromarray(arr), "PNG")


@functools.cache
def png_rgb48() -> bytes:
    """16 bits per channel RGB (Pillow can read but not write these)."""
    px = struct.pack(">HHH", 65535, 32768, 0)  # orange-ish
    return png_from_rows(10, 6, bit_depth=16, color_type=2, rows=(px * 10 for _ in range(6)))


@functools.cache
def png_1bit() -> bytes:
    return encode(_noise(33, 17, "L").convert("1"), "PNG")


@functools.cache
def gif_animation() -> bytes:
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


@functools.cache
def tiff_file() -> bytes:
    return encode(_noise(50, 40), "TIFF", compression="tiff_lzw")


@functools.cache
def bmp_file() -> bytes:
    return encode(_noise(30, 20), "BMP")


@functools.cache
def webp_file() -> bytes:
    return encode(_noise(30, 20), "WEBP", quality=80)


# --------------------------------------------------------------------------- catalogue


def bad_image_samples() -> list[Sample]:
    """Every bad single-image upload that needs no special limits."""
    return [
        Sample("empty", "empty.jpg", b"", "invalid_image"),
        Sample("truncated_jpeg", "cut.jpg", truncated_jpeg(), "invalid_image"),
        Sample("truncated_png", "cut.png", truncated_png(), "invalid_image"),
        Sample("png_bad_crc", "crc.png", png_bad_crc(), "invalid_image"),
        Sample("png_corrupt_header", "header.png", png_corrupt_header(), "invalid_image"),
        Sample("gif_header_only", "empty.gif", gif_header_only(), "invalid_image"),
        Sample("png_bomb_900mp", "bomb.png", png_bomb(), "too_large"),
        Sample("png_100mp_header", "big.png", png_header_only(10_000, 10_000), "too_large"),
        Sample("png_49mp_header", "big2.png", png_header_only(7_000, 7_000), "too_large"),
        Sample("text_named_jpg", "notes.jpg", text_file(), "unsupported_media_type"),
        Sample("html_named_png", "page.png", html_file(), "unsupported_media_type"),
        Sample("svg", "vector.svg", svg_file(), "unsupported_media_type"),
        Sample("pdf", "scan.jpg", pdf_file(), "unsupported_media_type"),
        Sample("psd", "layers.psd", psd_file(), "unsupported_media_type"),
        Sample("ico", "favicon.ico", ico_file(), "unsupported_media_type"),
        Sample("heic", "IMG_0001.HEIC", heic_file(), "unsupported_media_type"),
        Sample("zip_as_image", "photos.jpg", zip_as_image(), "unsupported_media_type"),
    ]


def good_image_samples() -> list[Sample]:
    return [
        Sample("jpeg", "a.jpg", good_jpeg(), None, "jpeg", (64, 48)),
        Sample("jpeg_exif_orientation_6", "rotated.jpg", jpeg_exif_orientation_6(), None, "jpeg", (20, 40)),
        Sample("cmyk_jpeg", "cmyk.jpg", cmyk_jpeg(), None, "jpeg", (24, 24)),
        Sample("grayscale_jpeg", "gray.jpg", grayscale_jpeg(), None, "jpeg", (30, 20)),
        Sample("rgba_png", "alpha.png", rgba_png(), None, "png", (32, 16)),
        Sample("palette_png_transparent", "pal.png", palette_png_transparent(), None, "png", (20, 10)),
        Sample("png_gray16", "gray16.png", png_gray16(), None, "png", (20, 12)),
        Sample("png_rgb48", "rgb48.png", png_rgb48(), None, "png", (10, 6)),
        Sample("png_1bit", "bits.png", png_1bit(), None, "png", (33, 17)),
        Sample("gif_animation", "anim.gif", gif_animation(), None, "gif", (40, 30)),
        Sample("tiff", "scan.tif", tiff_file(), None, "tiff", (50, 40)),
        Sample("bmp", "paint.bmp", bmp_file(), None, "bmp", (30, 20)),
        Sample("webp", "web.webp", webp_file(), None, "webp", (30, 20)),
        # Content decides, not the name: a PNG called .jpg is a fine PNG.
        Sample("png_named_jpg", "misnamed.jpg", png_1bit(), None, "png", (33, 17)),
    ]


def image_samples() -> list[Sample]:
    return good_image_samples() + bad_image_samples()


# --------------------------------------------------------------------------- ZIP archives


def make_zip(
    entries: dict[str, bytes] | Iterable[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buf = io.BytesIO()
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in items:
            if isinstance(name, zipfile.ZipInfo):
                if name.compress_type == zipfile.ZIP_STORED and compression != zipfile.ZIP_STORED:
                    name.compress_type = compression
                zf.writestr(name, data)
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def _patch_central(
    data: bytes, *, flag_bits: int | None = None, compress_type: int | None = None, file_size: int | None = None
) -> bytes:
    """Rewrite fields of the first entry in both its local and central headers."""
    out = bytearray(data)
    local = out.index(b"PK\x03\x04")
    central = out.index(b"PK\x01\x02")
    if flag_bits is not None:
        struct.pack_into("<H", out, local + 6, flag_bits)
        struct.pack_into("<H", out, central + 8, flag_bits)
    if compress_type is not None:
        struct.pack_into("<H", out, local + 8, compress_type)
        struct.pack_into("<H", out, central + 10, compress_type)
    if file_size is not None:
        struct.pack_into("<I", out, local + 22, file_size)
        struct.pack_into("<I", out, central + 24, file_size)
    return bytes(out)


def with_zip64_eocd(data: bytes, *, declared_entries: int | None = None) -> bytes:
    """Re-terminate a (comment-less) ZIP with ZIP64 end records, optionally lying about the count."""
    eocd = len(data) - 22
    assert data[eocd : eocd + 4] == b"PK\x05\x06"
    _, _, _, n_disk, n_total, cd_size, cd_offset, _ = struct.unpack_from("<4s4H2LH", data, eocd)
    count = n_total if declared_entries is None else declared_entries
    body = data[:eocd]
    z64_offset = len(body)
    z64 = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, z64_offset, 1)
    end = b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + z64 + locator + end


@dataclass(frozen=True)
class ZipSample:
    name: str
    data: bytes = field(repr=False)
    code: str  # expected ZipError code with default ImageLimits
    when: str = "open"  # "open": iter_zip() raises; "iterate": raised while reading


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


@functools.cache
def zip_bomb() -> bytes:
    """One 8 MB entry of zeros, ~8 KB compressed (ratio ~1000)."""
    return make_zip({"ants/bomb.jpg": bytes(8 * 1024 * 1024)})


@functools.cache
def zip_lying_size() -> bytes:
    """Central directory claims 1000 bytes; the stored entry really holds ~100 KB."""
    real = make_zip({"ants/a.jpg": encode(_noise(200, 200), "JPEG", quality=95)}, compression=zipfile.ZIP_STORED)
    return _patch_central(real, file_size=1000)


def bad_zip_samples() -> list[ZipSample]:
    img = good_jpeg()
    return [
        ZipSample("bomb_ratio", zip_bomb(), "invalid"),
        ZipSample("traversal", make_zip({"ants/a.jpg": img, "../evil.jpg": img}), "invalid"),
        ZipSample("traversal_nested", make_zip({"ants/../../evil.jpg": img}), "invalid"),
        ZipSample("traversal_backslash", make_zip({"..\\..\\evil.jpg": img}), "invalid"),
        ZipSample("absolute_path", make_zip({"/etc/evil.jpg": img}), "invalid"),
        ZipSample("drive_letter", make_zip({"C:/Windows/evil.jpg": img}), "invalid"),
        ZipSample("drive_letter_backslash", make_zip({"C:\\evil.jpg": img}), "invalid"),
        ZipSample(
            "symlink", make_zip([("ants/a.jpg", img), (_symlink_info("ants/link.jpg"), b"/etc/passwd")]), "invalid"
        ),
        ZipSample("encrypted", _patch_central(make_zip({"ants/a.jpg": img}), flag_bits=0x1), "invalid"),
        ZipSample("deflate64", _patch_central(make_zip({"ants/a.jpg": img}), compress_type=9), "invalid"),
        ZipSample("garbage", b"PK\x03\x04" + b"\x00garbage" * 50, "invalid"),
        ZipSample("truncated", make_zip({"ants/a.jpg": img, "bees/b.jpg": img})[:200], "invalid"),
        ZipSample(
            "zip64_lying_count", with_zip64_eocd(make_zip({"ants/a.jpg": img}), declared_entries=10**9), "too_large"
        ),
        ZipSample("lying_size", zip_lying_size(), "invalid", when="iterate"),
    ]
