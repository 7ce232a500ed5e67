"""Validation, decoding, thumbnails and ZIP import for uploaded images.

Django-free on purpose: the upload page, the REST API and background imports all
call these functions, and the tests run without settings.

Error codes and the HTTP status the API layer should answer with
----------------------------------------------------------------

``ImageError`` (one uploaded file; in a batch it fails only that file):

=========================  ======  ==================================================
code                       status  when
=========================  ======  ==================================================
``too_large``              413     more than ``limits.max_bytes`` bytes. Checked first,
                                   before any parsing, so a huge upload costs nothing.
``unsupported_media_type`` 415     the content is not one of the allowed formats:
                                   not an image at all (text, HTML, PDF, a ZIP sent as
                                   an image...) *or* an image format we don't accept
                                   (PSD, ICO, HEIC, AVIF, SVG, JPEG 2000...), or an
                                   allowed container in a colour mode we cannot turn
                                   into RGB. The message names what was detected.
``invalid_image``          400     zero bytes; an allowed format whose header or pixel
                                   data is corrupt or truncated; zero width/height.
                                   The client sent "an image" but a broken one.
``too_large``              413     more pixels than ``limits.max_pixels`` (a
                                   decompression bomb, or just too big; API.md "Limits").
=========================  ======  ==================================================

``ZipError`` (the whole archive is refused; nothing from it should be imported):

=========================  ======  ==================================================
``invalid``                400     not a readable ZIP, path traversal / absolute paths
                                   / drive letters, symlinks, encrypted entries,
                                   unsupported compression, an entry whose compression
                                   ratio marks a zip bomb, an entry that is larger than
                                   its header claims or fails its CRC.
``too_large``              413     too many entries, or the uncompressed total is over
                                   ``limits.zip_max_total_bytes``.
=========================  ======  ==================================================

Both exceptions carry ``.code``, ``.message`` (a sentence meant for end users) and
``.http_status``. Codes match the public API contract (``shared/API.md``, "Errors").

Formats are detected from the bytes (magic numbers, then Pillow restricted to the
one detected format); a file name is never used to decide what a file is.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import struct
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final

import numpy as np
from PIL import Image, ImageFile

__all__ = [
    "ALLOWED_FORMATS",
    "HTTP_STATUS",
    "ImageError",
    "ImageLimits",
    "UploadError",
    "ValidatedImage",
    "ZipError",
    "ZipMember",
    "is_zip",
    "iter_zip",
    "make_thumbnail",
    "validate_image",
]

log = logging.getLogger(__name__)

KB: Final = 1024
MB: Final = 1024 * KB
GB: Final = 1024 * MB

# Our format name -> (Pillow format name, MIME type). Order matters only for docs.
ALLOWED_FORMATS: Final[dict[str, tuple[str, str]]] = {
    "jpeg": ("JPEG", "image/jpeg"),
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
    "gif": ("GIF", "image/gif"),
    "bmp": ("BMP", "image/bmp"),
    "tiff": ("TIFF", "image/tiff"),
}
_ALLOWED_HUMAN: Final = "JPEG, PNG, WebP, GIF, BMP, TIFF"

HTTP_STATUS: Final[dict[str, int]] = {
    "invalid_image": 400,
    "invalid": 400,
    "too_large": 413,
    "unsupported_media_type": 415,
}


# --------------------------------------------------------------------------- errors


class UploadError(Exception):
    """Common base so the API layer can map both error kinds with one ``except``."""

    codes: frozenset[str] = frozenset()

    def __init__(self, code: str, message: str) -> None:
        if code not in self.codes:
            raise ValueError(f"unknown {type(self).__name__} code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class ImageError(UploadError):
    """One file is not an acceptable image. See the module docstring for codes."""

    codes = frozenset({"invalid_image", "too_large", "unsupported_media_type"})


class ZipError(UploadError):
    """A whole archive is refused. See the module docstring for codes."""

    codes = frozenset({"invalid", "too_large"})


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageLimits:
    max_bytes: int = 20 * MB
    max_pixels: int = 40_000_000
    zip_max_entries: int = 10_000
    zip_max_total_bytes: int = 2 * GB
    zip_max_ratio: float = 100.0
    thumbnail_size: int = 256


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ValidatedImage:
    # repr=False: these can be tens of MB and must not end up in logs or tracebacks.
    data: bytes = field(repr=False)
    sha256: str
    format: str  # key of ALLOWED_FORMATS: "jpeg", "png", ...
    mime_type: str
    width: int  # as displayed, i.e. after EXIF orientation
    height: int
    image: Image.Image = field(repr=False)  # decoded, oriented, mode "RGB"


# --------------------------------------------------------------------------- sniffing


def _sniff_allowed(head: bytes) -> str | None:
    """Return our format name if the leading bytes are one of the allowed formats."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    # "BM" alone is two ASCII letters (any text starting "BMW..." matches), so also
    # require one of the DIB header sizes Pillow understands.
    if head[:2] == b"BM" and len(head) >= 18:
        if struct.unpack_from("<I", head, 14)[0] in (12, 40, 52, 56, 64, 108, 124):
            return "bmp"
    # Classic TIFF and BigTIFF, both byte orders.
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


# Things people actually upload by mistake, so the 415 message can say what it was.
_OTHER_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"PK\x05\x06", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"gimp xcf", "XCF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "PostScript"),
    (b"\x7fELF", "executable"),
)

_HEIF_BRANDS: Final = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def _describe_unsupported(head: bytes) -> str:
    """Best-effort human name for content that is not an allowed image."""
    for magic, kind in _OTHER_MAGIC:
        if head.startswith(magic):
            return kind
    if head[4:8] == b"ftyp":  # ISO base media: HEIC/AVIF photos, MP4/MOV videos
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIC"
        return "video"
    if head[:4] == b"RIFF":
        return {b"AVI ": "video", b"WAVE": "audio"}.get(head[8:12], "RIFF container")
    text = _as_text(head)
    if text is not None:
        t = text.lstrip().lower()
        if t.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in t[:1024]:
            return "HTML"
        if t.startswith("<svg") or (t.startswith("<?xml") and "<svg" in t):
            return "SVG"
        if t.startswith("<?xml"):
            return "XML"
        return "text"
    # Last resort: ask Pillow's per-format *prefix checks* (pure functions over the
    # first 16 bytes). We deliberately don't let other plugins parse the file: more
    # decoders on hostile input is more attack surface, just for an error message.
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN.get(name, (None, None))[1]
        try:
            if accept is not None and accept(head[:16]) is True:
                return name
        except Exception:  # a prefix check must never turn a 415 into a 500
            continue
    return "unknown binary data"


def _as_text(head: bytes) -> str | None:
    """Decode a prefix as text if it plausibly is text (no NULs, few controls)."""
    sample = head[:4096]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 BOM
        return sample[2:].decode("utf-16", errors="replace")
    if not sample or b"\x00" in sample:
        return None
    text: str | None = None
    for cut in range(4):  # the prefix may end inside a multi-byte UTF-8 character
        try:
            text = sample[: len(sample) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        if sum(128 <= b < 160 for b in sample) > len(sample) // 20:
            return None  # C1 control bytes: binary, not Latin-1 prose
        text = sample.decode("latin-1")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\b\x1b")
    return text if controls <= len(text) // 20 else None


def is_zip(data: bytes) -> bool:
    """True if ``data`` starts like a ZIP archive (local file header or empty archive).

    Only the leading signature counts. ``zipfile.is_zipfile`` searches for the
    end-of-archive record anywhere, which also matches image/ZIP polyglots; those
    start with an image signature and must go through ``validate_image``.
    """
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


# --------------------------------------------------------------------------- validation


def _size_message(size: int, limit: int, what: str) -> str:
    unit, name = next(((u, n) for u, n in ((GB, "GB"), (MB, "MB"), (KB, "KB")) if limit >= u), (1, "bytes"))
    if unit == 1 or float(f"{size / unit:.1f}") * unit <= limit:
        # One decimal would make the size look equal to (or under) the limit.
        return f"{what} {size:,} bytes; the limit is {limit:,} bytes."
    lim = f"{limit / unit:.1f}".removesuffix(".0")
    return f"{what} {size / unit:.1f} {name}; the limit is {lim} {name}."


def _effective_max_pixels(limits: ImageLimits) -> int:
    # Pillow's own guard (Image.MAX_IMAGE_PIXELS, ~89 MP by default; warning above it,
    # DecompressionBombError above twice that) stays in place as a second net and we
    # never modify that process-global. If a deployment configures max_pixels above
    # Pillow's, Pillow's is what really applies, so report that number honestly.
    # (To allow bigger images, raise Image.MAX_IMAGE_PIXELS deliberately at startup.)
    pil = Image.MAX_IMAGE_PIXELS
    return limits.max_pixels if pil is None else min(limits.max_pixels, pil)


def _pixels_message(pixels: int | None, limit: int) -> str:
    if pixels is None:
        return f"Image has more pixels than the limit of {limit:,}."
    return f"Image has {pixels:,} pixels; the limit is {limit:,}."


_PIL_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _bomb_error(exc: Exception, limit: int) -> ImageError:
    # Pillow's own guard fired (only above its ~89 MP global). Its exception carries
    # the pixel count only in the message text; if that wording ever changes we still
    # reject, just with a less specific sentence.
    m = _PIL_BOMB_PIXELS.search(str(exc))
    return ImageError("too_large", _pixels_message(int(m[1]) if m else None, limit))

# Broad on purpose: Pillow's decoders raise a zoo of types on hostile input
# (OSError, SyntaxError, ValueError, struct.error, IndexError, EOFError,
# ZeroDivisionError...). For an upload any of them means "not a valid image"; a 500
# would be the wrong answer. MemoryError is an Exception too, but it says the server
# is in trouble, not the file, so every handler re-raises it first.
_DECODE_ERRORS = (Exception,)


def validate_image(data: bytes, *, limits: ImageLimits, filename: str = "") -> ValidatedImage:
    """Check, decode and orient one uploaded image, or raise ``ImageError``.

    ``filename`` is only used for log context, never to decide the format.
    The returned ``image`` is fully decoded RGB (alpha composited on white), oriented
    as displayed, independent of ``data``.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-global that some training code sets to be lenient. With it on,
        # truncated uploads would be silently padded with grey and accepted. Fail
        # loudly rather than store broken files; never flip it back behind the
        # setter's back.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; refusing to validate uploads")

    if not isinstance(data, bytes):
        data = bytes(data)  # bytearray/memoryview: the sniffers use bytes methods
    size = len(data)
    if size == 0:
        raise ImageError("invalid_image", "File is empty.")
    if size > limits.max_bytes:
        raise ImageError("too_large", _size_message(size, limits.max_bytes, "File is"))

    fmt = _sniff_allowed(data[:32])
    if fmt is None:
        kind = _describe_unsupported(data[:4096])
        raise ImageError(
            "unsupported_media_type",
            f"File is not a supported image (detected: {kind}). Supported formats: {_ALLOWED_HUMAN}.",
        )
    pil_format, mime = ALLOWED_FORMATS[fmt]
    max_pixels = _effective_max_pixels(limits)

    # Pillow's DecompressionBombWarning is only a warning; escalate it for this call.
    # Caveat: before Python 3.14, catch_warnings() swaps process-global filter state,
    # so concurrent threads could briefly see each other's filters. That is benign
    # here: the explicit pixel check below is the real guard, the filter is a backstop
    # for the bomb checks Pillow runs inside load() (GIF/TIFF tile extents).
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # formats=[...]: only the plugin for the sniffed format may parse the bytes.
            img = Image.open(io.BytesIO(data), formats=[pil_format])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(exc, max_pixels) from None
        except MemoryError:
            raise
        except _DECODE_ERRORS as exc:
            log.info("unreadable %s header in %r: %r", pil_format, filename, exc)
            raise ImageError(
                "invalid_image", f"File looks like a {pil_format} image but its header is corrupt."
            ) from None

        try:
            # Header only so far: reject by declared size before allocating pixels.
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError("invalid_image", "Image has zero width or height.")
            if width * height > max_pixels:
                raise ImageError("too_large", _pixels_message(width * height, max_pixels))
            try:
                img.load()  # full decode of the first frame: truncation raises here
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _bomb_error(exc, max_pixels) from None
            except MemoryError:
                raise
            except _DECODE_ERRORS as exc:
                log.info("undecodable %s pixel data in %r: %r", pil_format, filename, exc)
                raise ImageError("invalid_image", "Image is truncated or corrupt.") from None

            orientation = _exif_orientation(img)
            rgb = _to_rgb(img, copy=True)
        finally:
            img.close()

    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])

    return ValidatedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        mime_type=mime,
        width=rgb.width,
        height=rgb.height,
        image=rgb,
    )


# Same table as ImageOps.exif_transpose. We apply it ourselves after converting to
# RGB so the conversion and the transpose each make exactly one copy.
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)  # 0x0112 = Orientation (EXIF, or TIFF tag)
        return int(value)
    except Exception as exc:
        # Phones and editors write broken EXIF all the time; a bad tag is no reason to
        # reject pixels that decoded fine. Show the image unrotated instead.
        log.info("ignoring unreadable EXIF: %r", exc)
        return 1


def _to_rgb(img: Image.Image, *, copy: bool) -> Image.Image:
    """Return an 8-bit RGB image; alpha is composited on white (transparent -> white).

    ``copy=True`` guarantees the result shares nothing with ``img`` (needed because
    the caller closes the file-backed source image).
    """
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's convert() clips high-bit-depth values to 255 (a 16-bit scan would be
        # almost all white), so rescale to 8 bits ourselves.
        return Image.fromarray(_to_uint8(np.asarray(img)), "L").convert("RGB")
    # "a" = premultiplied alpha (RGBa, La); "transparency" = palette/tRNS transparency.
    has_alpha = any(b in ("A", "a") for b in img.getbands()) or "transparency" in img.info
    if has_alpha:
        try:
            rgba = img.convert("RGBA")
        except ValueError as exc:
            raise _unsupported_mode(img) from exc
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode == "RGB":
        return img.copy() if copy else img
    try:
        return img.convert("RGB")  # 1, L, P, CMYK (Adobe-inverted handled by Pillow), YCbCr...
    except ValueError as exc:
        raise _unsupported_mode(img) from exc


def _unsupported_mode(img: Image.Image) -> ImageError:
    fmt = img.format or "this"
    return ImageError("unsupported_media_type", f"{fmt} images in {img.mode} colour mode are not supported.")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    arr = arr.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    hi = float(finite.max()) if finite.size else 0.0
    lo = float(finite.min()) if finite.size else 0.0
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0  # float images in [0, 1]
    elif lo >= 0 and hi <= 255:
        scaled = arr
    elif lo >= 0 and hi <= 65535:
        scaled = arr / 257.0  # 16-bit data stored in a 32-bit mode
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo))  # scientific data: stretch to range
    return np.nan_to_num(np.clip(np.rint(scaled), 0, 255)).astype(np.uint8)


# --------------------------------------------------------------------------- thumbnails


def make_thumbnail(image: Image.Image, *, size: int, quality: int = 80) -> bytes:
    """Encode a WebP whose longest side is at most ``size`` (never upscaled).

    No ``draft()`` here: the image is already fully decoded by ``validate_image``
    (which must decode everything to catch truncation), so a JPEG draft would mean a
    second decode and cost more than it saves.
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    im = _to_rgb(image, copy=False)
    w, h = im.size
    if max(w, h) > size:
        scale = size / max(w, h)
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        # Bicubic (what Image.thumbnail uses) is sharp enough for a 256 px grid tile and
        # ~1.5x faster than Lanczos; reducing_gap lets big photos take a cheap integer
        # box-reduce first.
        im = im.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    # method=1: measured on hymenoptera thumbnails, libwebp's default method=4 took
    # ~8 ms per 256 px image for files only ~15% smaller; method 1 takes ~2 ms.
    im.save(out, "WEBP", quality=quality, method=1)
    return out.getvalue()


# --------------------------------------------------------------------------- ZIP import


@dataclass(frozen=True, slots=True, kw_only=True)
class ZipMember:
    """One image-looking entry of an archive.

    ``path`` is the entry's normalised path inside the archive (``/`` separators,
    Unicode NFC), for per-file error reports. ``label`` is the class folder or None.
    ``error`` is set instead of ``data`` when the entry was deliberately not read
    (bigger than ``limits.max_bytes``); ``validate`` raises it like validate_image would.
    """

    path: str
    label: str | None
    data: bytes = field(repr=False)
    error: ImageError | None = None

    def validate(self, *, limits: ImageLimits) -> ValidatedImage:
        if self.error is not None:
            raise ImageError(self.error.code, self.error.message)
        return validate_image(self.data, limits=limits, filename=self.path)


# Entries with these extensions are yielded (so a .heic gets a per-file 415 that the
# user sees, instead of vanishing). Other entries are yielded only if their first
# bytes are an allowed image; README.txt, labels.csv, samples.csv are skipped quietly.
_IMAGE_EXTENSIONS: Final = frozenset(
    """jpg jpeg jpe jfif pjpeg pjp png apng webp gif bmp dib tif tiff
    heic heif avif psd ico cur svg jp2 j2k jpf jxl tga pcx ppm pgm pbm qoi dds
    cr2 cr3 nef arw dng orf rw2 raf""".split()
)
# Nested archives are ignored, never opened: recursion is the classic zip-bomb vector.
_SKIPPED_EXTENSIONS: Final = frozenset("zip 7z rar tar gz tgz bz2 xz zst".split())

# Compression methods zipfile can decode (0 stored, 8 deflate, 12 bzip2, 14 lzma).
_SUPPORTED_COMPRESSION: Final = frozenset({0, 8, 12, 14})
_COMPRESSION_NAMES: Final = {9: "Deflate64", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES-encrypted"}

# The ratio check applies to every entry (and to the archive as a whole), but the compressed size
# is counted as at least this much: a tiny file's ratio says nothing about danger (a 200 KB
# flat-colour BMP legitimately compresses 500:1), while 1 MiB of zeros in 1 KB is refused.
_RATIO_FLOOR_BYTES: Final = 4 * 1024

# The raw entry count (from the end-of-central-directory record) is checked before
# zipfile builds one Python object per entry, to bound memory on hostile archives.
# Directories and macOS "__MACOSX/._x" companions can triple the raw count of an
# honest archive, hence the slack; the user-facing limit counts real files only.
_RAW_ENTRY_SLACK: Final = 3

_READ_CHUNK: Final = 1 * MB


def iter_zip(data_or_file: bytes | bytearray | memoryview | BinaryIO, *, limits: ImageLimits) -> Iterator[ZipMember]:
    """Check a ZIP archive as a whole, then return an iterator over its images.

    Whole-archive checks (everything that can be known from the central directory:
    names, symlinks, encryption, compression methods, entry count, total size,
    per-entry ratio) run *now*, before this function returns, so a hostile archive is
    refused before anything is imported. Corruption that only shows while
    decompressing (bad CRC, an entry larger than its header says) raises ``ZipError``
    during iteration. Entries are decompressed one at a time, as the iterator advances.

    Labels: the top-level folder of each entry is its label; files at the root have
    none. Wrapper folders are peeled first: while *every* image sits at least two
    folders deep under one common top folder (that folder has no images directly in
    it), that folder is dropped. So ``ants/a.jpg`` -> "ants",
    ``hymenoptera/ants/a.jpg`` -> "ants", ``data/train/bees/b.jpg`` -> "bees",
    ``ants/2019/a.jpg`` -> "ants", ``a.jpg`` -> None.

    Skipped: directories, anything under ``__MACOSX/``, hidden files and folders
    (``.DS_Store``, ``._x``, ``.git/``), nested archives, non-image files.

    A file object must be seekable; it is not closed.
    """
    fp: BinaryIO = io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray, memoryview)) else data_or_file
    raw_entries = _declared_entry_count(fp)
    raw_cap = limits.zip_max_entries * _RAW_ENTRY_SLACK
    if raw_entries is not None and raw_entries > raw_cap:
        raise ZipError("too_large", f"Archive has {raw_entries:,} entries; the limit is {limits.zip_max_entries:,}.")
    try:
        fp.seek(0)
        zf = zipfile.ZipFile(fp)
        infos = zf.infolist()
    except MemoryError:
        raise
    except zipfile.BadZipFile:
        raise ZipError("invalid", "File is not a valid ZIP archive; it may be truncated or corrupt.") from None
    except Exception as exc:  # EOFError, struct.error, ValueError, OSError on mangled records
        raise ZipError("invalid", f"File is not a valid ZIP archive ({_exc_text(exc)}).") from None
    try:
        if len(infos) > raw_cap:  # EOCD record lied about the count
            raise ZipError("too_large", f"Archive has {len(infos):,} entries; the limit is {limits.zip_max_entries:,}.")
        candidates = _check_archive(zf, infos, limits)
    except BaseException:
        zf.close()
        raise
    return _iter_members(zf, candidates, limits)


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__


def _declared_entry_count(fp: BinaryIO) -> int | None:
    """Entry count from the end-of-central-directory record (ZIP64 aware), or None.

    None means "couldn't tell"; zipfile then reports the archive as corrupt itself.
    """
    try:
        fp.seek(0, io.SEEK_END)
        end = fp.tell()
        tail_len = min(end, 22 + 0xFFFF + 20)  # EOCD + max comment + ZIP64 locator
        fp.seek(end - tail_len)
        tail = fp.read(tail_len)
        pos = tail.rfind(b"PK\x05\x06")
        if pos < 0 or pos + 22 > len(tail):
            return None
        count = struct.unpack_from("<H", tail, pos + 10)[0]
        if count != 0xFFFF or pos < 20 or tail[pos - 20 : pos - 16] != b"PK\x06\x07":
            return count
        (zip64_offset,) = struct.unpack_from("<Q", tail, pos - 20 + 8)
        fp.seek(zip64_offset)
        rec = fp.read(56)
        if len(rec) < 56 or rec[:4] != b"PK\x06\x06":
            return None
        return struct.unpack_from("<Q", rec, 32)[0]
    except (OSError, struct.error, ValueError):
        return None
    finally:
        try:
            fp.seek(0)
        except (OSError, ValueError):
            pass


_DRIVE = re.compile(r"^[A-Za-z]:")


def _entry_parts(info: zipfile.ZipInfo) -> list[str]:
    """Split an entry name into safe components, or raise ZipError for a hostile one.

    We never write entries to disk, but a name that would escape the extraction
    directory only appears in crafted archives, so the whole archive is refused.
    Backslashes count as separators: old Windows tools write them, and on Windows
    ``..\\..\\x`` is traversal.
    """
    raw = info.orig_filename
    if "\x00" in raw:
        raise ZipError("invalid", f"Archive entry name {raw!r} contains a NUL byte.")
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise ZipError("invalid", f"Archive entry {raw!r} has an absolute path.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    # ".." and Windows' equivalent spellings (".. ", "...") made only of dots/spaces.
    if any(".." in p and not p.strip(". ") for p in parts):
        raise ZipError("invalid", f"Archive entry {raw!r} points outside the archive (path traversal).")
    return [unicodedata.normalize("NFC", p) for p in parts]


def _check_archive(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: ImageLimits) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Run every whole-archive check and return the image candidates with their parts."""
    files: list[tuple[zipfile.ZipInfo, list[str]]] = []
    total = packed = 0
    for info in infos:
        parts = _entry_parts(info)  # checked for every entry, junk included
        if info.flag_bits & 0x1 or info.compress_type == 99:
            raise ZipError("invalid", f"Archive entry {info.orig_filename!r} is encrypted; upload an unencrypted archive.")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise ZipError("invalid", f"Archive entry {info.orig_filename!r} is a symbolic link.")
        if info.is_dir() or info.orig_filename.endswith("\\") or not parts:
            continue
        if info.compress_type not in _SUPPORTED_COMPRESSION:
            method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise ZipError(
                "invalid",
                f"Archive uses an unsupported compression method ({method}); re-create it with standard ZIP (Deflate) compression.",
            )
        if info.file_size > limits.zip_max_ratio * max(info.compress_size, _RATIO_FLOOR_BYTES):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ZipError(
                "invalid",
                f"Archive entry {info.orig_filename!r} expands {ratio:,.0f}x (limit {limits.zip_max_ratio:g}x); "
                "it looks like a zip bomb.",
            )
        total += info.file_size
        packed += info.compress_size
        files.append((info, parts))

    if total > limits.zip_max_total_bytes:
        raise ZipError("too_large", _size_message(total, limits.zip_max_total_bytes, "Archive expands to"))
    if total > limits.zip_max_ratio * max(packed, _RATIO_FLOOR_BYTES):
        raise ZipError(
            "invalid",
            f"Archive expands {total / max(packed, 1):,.0f}x (limit {limits.zip_max_ratio:g}x); it looks like a zip bomb.",
        )

    real = [(i, p) for i, p in files if not _is_junk(p)]
    if len(real) > limits.zip_max_entries:
        raise ZipError("too_large", f"Archive has {len(real):,} files; the limit is {limits.zip_max_entries:,}.")

    return [(i, p) for i, p in real if _looks_like_image(zf, i, p)]


def _is_junk(parts: list[str]) -> bool:
    # __MACOSX holds AppleDouble metadata; dot-files/folders are OS or VCS litter.
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _extension(name: str) -> str:
    return name.rpartition(".")[2].lower() if "." in name else ""


def _looks_like_image(zf: zipfile.ZipFile, info: zipfile.ZipInfo, parts: list[str]) -> bool:
    ext = _extension(parts[-1])
    if ext in _IMAGE_EXTENSIONS:
        return True
    if ext in _SKIPPED_EXTENSIONS or info.file_size < 8:
        return False
    # Name says nothing: peek at the content (32 bytes decompress a single block).
    try:
        with zf.open(info) as f:
            return _sniff_allowed(f.read(32)) is not None
    except MemoryError:
        raise
    except Exception as exc:
        raise ZipError("invalid", f"Archive entry {info.orig_filename!r} is corrupt ({_exc_text(exc)}).") from None


def _wrapper_depth(all_parts: list[list[str]]) -> int:
    """How many leading wrapper folders to drop (see iter_zip's docstring)."""
    depth = 0
    while all_parts and all(len(p) - depth >= 3 for p in all_parts):
        top = {p[depth] for p in all_parts}
        if len(top) != 1:
            break
        depth += 1
    return depth


def _iter_members(zf: zipfile.ZipFile, candidates: list[tuple[zipfile.ZipInfo, list[str]]], limits: ImageLimits) -> Iterator[ZipMember]:
    with zf:
        depth = _wrapper_depth([p for _, p in candidates])
        read_total = 0
        for info, parts in candidates:
            rel = parts[depth:]
            label = rel[0].strip() if len(rel) >= 2 else None
            path = "/".join(parts)
            if info.file_size > limits.max_bytes:
                # Per-file, not whole-archive: report it without decompressing it.
                err = ImageError("too_large", _size_message(info.file_size, limits.max_bytes, "File is"))
                yield ZipMember(path=path, label=label or None, data=b"", error=err)
                continue
            data = _read_entry(zf, info, limits, budget=limits.zip_max_total_bytes - read_total)
            read_total += len(data)
            yield ZipMember(path=path, label=label or None, data=data)


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ImageLimits, *, budget: int) -> bytes:
    """Decompress one entry, never producing more than its header promised.

    zipfile also stops at the declared size and checks the CRC, but we don't rely on
    header sizes for memory: reads are bounded by what the checks above accepted.
    """
    cap = info.file_size  # already known to be <= limits.max_bytes
    chunks: list[bytes] = []
    n = 0
    try:
        with zf.open(info) as f:
            while True:
                chunk = f.read(min(_READ_CHUNK, cap + 1 - n))
                if not chunk:
                    break
                n += len(chunk)
                if n > cap:
                    raise ZipError("invalid", f"Archive entry {info.orig_filename!r} is larger than its header says.")
                if n > budget:
                    raise ZipError("too_large", _size_message(n, limits.zip_max_total_bytes, "Archive expands to more than"))
                chunks.append(chunk)
                if n >= cap:
                    # One more read to reach EOF makes zipfile verify the CRC.
                    if f.read(1):
                        raise ZipError("invalid", f"Archive entry {info.orig_filename!r} is larger than its header says.")
                    break
    except ZipError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile (CRC), EOFError, zlib.error, LZMAError, OSError
        raise ZipError("invalid", f"Archive entry {info.orig_filename!r} is corrupt ({_exc_text(exc)}).") from None
    if n < cap:
        raise ZipError("invalid", f"Archive entry {info.orig_filename!r} is shorter than its header says.")
    return b"".join(chunks)
