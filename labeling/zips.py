"""ZIP import: an archive's image entries, streamed one at a time, with its safety checks.

Django-free, like labeling/images.py, whose limits and errors it shares.

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
"""

from __future__ import annotations

import logging
import re
import struct
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final

import io

from labeling.images import (
    MB,
    ImageError,
    ImageLimits,
    ValidatedImage,
    ZipError,
    _size_message,
    _sniff_allowed,
    validate_image,
)

__all__ = ["IMAGE_EXTENSIONS", "ZipMember", "is_zip", "iter_zip"]

log = logging.getLogger(__name__)


def is_zip(data: bytes) -> bool:
    """True if ``data`` starts like a ZIP archive (local file header or empty archive).

    Only the leading signature counts. ``zipfile.is_zipfile`` searches for the
    end-of-archive record anywhere, which also matches image/ZIP polyglots; those
    start with an image signature and must go through ``validate_image``.
    """
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


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
IMAGE_EXTENSIONS: Final = _IMAGE_EXTENSIONS  # also what batch jobs list from archives, folders and S3
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
    fp: BinaryIO = (
        io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray, memoryview)) else data_or_file
    )
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


def _check_archive(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: ImageLimits
) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Run every whole-archive check and return the image candidates with their parts."""
    files: list[tuple[zipfile.ZipInfo, list[str]]] = []
    total = packed = 0
    for info in infos:
        parts = _entry_parts(info)  # checked for every entry, junk included
        if info.flag_bits & 0x1 or info.compress_type == 99:
            raise ZipError(
                "invalid", f"Archive entry {info.orig_filename!r} is encrypted; upload an unencrypted archive."
            )
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


def _iter_members(
    zf: zipfile.ZipFile, candidates: list[tuple[zipfile.ZipInfo, list[str]]], limits: ImageLimits
) -> Iterator[ZipMember]:
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
                    raise ZipError(
                        "too_large", _size_message(n, limits.zip_max_total_bytes, "Archive expands to more than")
                    )
                chunks.append(chunk)
                if n >= cap:
                    # One more read to reach EOF makes zipfile verify the CRC.
                    if f.read(1):
                        raise ZipError(
                            "invalid", f"Archive entry {info.orig_filename!r} is larger than its header says."
                        )
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


class _Written:
    """Stands for entries whose directory records are already on disk: counted, not iterated."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(())


class DirectoryOnDiskZipFile(zipfile.ZipFile):
    """A ZipFile for writing that keeps its central directory in a temporary file, not one ZipInfo per
    entry in memory (about 600 bytes each), so an export of a million images writes in constant
    memory. Records are serialised by zipfile's own code, a batch at a time."""

    BATCH = 1000

    def __init__(self, *args, **kwargs):
        import tempfile

        super().__init__(*args, **kwargs)
        self._records = tempfile.TemporaryFile()
        self._written = 0

    def _forget_written(self) -> None:
        from types import SimpleNamespace

        if not self.filelist:
            return
        buf = io.BytesIO()
        # zipfile's end-record writer on just this batch: its records, then a 22-byte end record
        # (a batch never needs ZIP64 end records: fewer than 65,535 entries, offset 0)
        batch = SimpleNamespace(filelist=self.filelist, fp=buf, start_dir=0, _allowZip64=True, _comment=b"", mode="w")
        zipfile.ZipFile._write_end_record(batch)
        self._records.write(buf.getvalue()[:-22])
        self._written += len(self.filelist)
        self.filelist = []
        self.NameToInfo = {}

    def writestr(self, *args, **kwargs) -> None:
        super().writestr(*args, **kwargs)
        if len(self.filelist) >= self.BATCH:
            self._forget_written()

    def _write_end_record(self) -> None:
        import shutil
        from types import SimpleNamespace

        self._forget_written()
        self._records.seek(0)
        shutil.copyfileobj(self._records, self.fp)
        self._records.close()
        # the end records (ZIP64 when needed) for every entry, with the directory just copied
        end = SimpleNamespace(
            filelist=_Written(self._written),
            fp=self.fp,
            start_dir=self.start_dir,
            _allowZip64=self._allowZip64,
            _comment=self._comment,
            mode=self.mode,
        )
        zipfile.ZipFile._write_end_record(end)
