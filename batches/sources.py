"""Where a batch's items come from: an uploaded zip or tar, a folder under an import root, an S3 prefix.

Each source is listed lazily (a generator of item references, never the whole listing in memory) and
read item by item in place: a zip member by its local header offset, a tar member by its data offset,
a file by its relative path, an S3 object by its key. So a chunk task reads only its own items, and
the listing of a million-entry archive holds one record at a time.

Django-free apart from settings and the storage API.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labeling.images import ImageError
from labeling.videos import VIDEO_EXTENSIONS
from labeling.zips import IMAGE_EXTENSIONS


class SourceError(Exception):
    """The source as a whole is unusable (API: 400 invalid, nothing created)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class TransientSourceError(Exception):
    """The source did not answer this time (network, throttling): the chunk task retries."""


def is_candidate(name: str) -> bool:
    """An image- or video-looking file that is not OS or VCS litter (hidden files, __MACOSX)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return False
    name = parts[-1].lower()
    return name.rpartition(".")[2] in IMAGE_EXTENSIONS or name.endswith(VIDEO_EXTENSIONS)


# --------------------------------------------------------------------------- archives


def archive_kind(head: bytes) -> str | None:
    """ "zip", "tar", a compression ("gzip", "bz2", "xz") to undo first, or None."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    return None


def decompressing(fileobj, kind: str):
    """A stream of the decompressed bytes (tar.gz and friends are stored as plain tar: random access)."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    return {"bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[kind](fileobj, mode="rb")  # these take the file first


def zip_check(fp) -> None:
    _zip_directory(fp)


def tar_check(fp) -> None:
    fp.seek(0)
    try:
        with tarfile.open(fileobj=fp, mode="r:") as tf:
            tf.next()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"The archive is not a readable tar file ({exc}).") from None


def _zip_directory(fp) -> tuple[int, int, int]:
    """(central directory offset, its size, bytes prepended to the archive), or SourceError."""
    try:
        end = zipfile._EndRecData(fp)  # the stdlib's own EOCD / ZIP64 locator reader
    except OSError:
        end = None
    if end is None:
        raise SourceError("The archive is not a readable ZIP file (no end-of-archive record).")
    size_cd, offset_cd = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]
    concat = end[zipfile._ECD_LOCATION] - size_cd - offset_cd
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    if concat < 0:
        raise SourceError("The archive is not a readable ZIP file (bad central directory offset).")
    fp.seek(offset_cd + concat)
    head = fp.read(4)
    if size_cd and head != zipfile.stringCentralDir:
        raise SourceError("The archive is not a readable ZIP file (bad central directory).")
    return offset_cd, size_cd, concat


def _zip64_extra(extra: bytes, file_size: int, compress_size: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if file_size == 0xFFFFFFFF and values:
                file_size = values.pop(0)
            if compress_size == 0xFFFFFFFF and values:
                compress_size = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        pos += 4 + length
    return file_size, compress_size, offset


def zip_iter(fp) -> Iterator[list]:
    """[name, header offset, compressed size, size, method, crc, flags] per image entry, streaming the
    central directory record by record (zipfile.ZipFile would build every entry's object first)."""
    offset_cd, size_cd, concat = _zip_directory(fp)
    fp.seek(offset_cd + concat)
    reader = io.BufferedReader(_Window(fp, size_cd), buffer_size=1 << 16)
    while True:
        rec = reader.read(zipfile.sizeCentralDir)
        if len(rec) < zipfile.sizeCentralDir or rec[:4] != zipfile.stringCentralDir:
            return
        f = struct.unpack(zipfile.structCentralDir, rec)
        raw_name = reader.read(f[zipfile._CD_FILENAME_LENGTH])
        extra = reader.read(f[zipfile._CD_EXTRA_FIELD_LENGTH])
        reader.read(f[zipfile._CD_COMMENT_LENGTH])
        flags = f[zipfile._CD_FLAG_BITS]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        if name.endswith("/") or not is_candidate(name):
            continue
        size, csize, offset = _zip64_extra(
            extra, f[zipfile._CD_UNCOMPRESSED_SIZE], f[zipfile._CD_COMPRESSED_SIZE], f[zipfile._CD_LOCAL_HEADER_OFFSET]
        )
        yield [name, offset + concat, csize, size, f[zipfile._CD_COMPRESS_TYPE], f[zipfile._CD_CRC], flags]


class _Window(io.RawIOBase):
    """The next `size` bytes of fp, as a raw stream (so the central directory is read buffered)."""

    def __init__(self, fp, size: int):
        self.fp, self.left = fp, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.left <= 0:
            return 0
        data = self.fp.read(min(len(b), self.left))
        self.left -= len(data)
        b[: len(data)] = data
        return len(data)


def zip_read(fp, item: list, *, max_bytes: int, max_ratio: float) -> bytes:
    """One member by its local header, bounded and CRC-checked; per-item ImageError on trouble."""
    name, offset, csize, size, method, crc, flags = item
    if flags & 0x1:
        raise ImageError("invalid_image", f"{name} is encrypted.")
    if size > max_bytes:
        raise ImageError("too_large", f"{name} is {size:,} bytes; the limit is {max_bytes:,}.")
    if size > max_ratio * max(csize, 4096):
        raise ImageError("invalid_image", f"{name} expands {size / max(csize, 1):,.0f}x; it looks like a zip bomb.")
    fp.seek(offset)
    header = fp.read(zipfile.sizeFileHeader)
    if len(header) < zipfile.sizeFileHeader or header[:4] != zipfile.stringFileHeader:
        raise ImageError("invalid_image", f"{name}: the archive entry's header is corrupt.")
    h = struct.unpack(zipfile.structFileHeader, header)
    fp.seek(h[zipfile._FH_FILENAME_LENGTH] + h[zipfile._FH_EXTRA_FIELD_LENGTH], os.SEEK_CUR)
    packed = fp.read(csize)
    try:
        if method == zipfile.ZIP_STORED:
            data = packed
        elif method == zipfile.ZIP_DEFLATED:
            data = zlib.decompressobj(-15).decompress(packed, size + 1)
        elif method == zipfile.ZIP_BZIP2:
            data = bz2.BZ2Decompressor().decompress(packed, size + 1)
        elif method == zipfile.ZIP_LZMA:
            data = zipfile.LZMADecompressor().decompress(packed)[: size + 1]
        else:
            raise ImageError("invalid_image", f"{name} uses an unsupported compression method ({method}).")
    except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
        raise ImageError("invalid_image", f"{name} is corrupt ({exc}).") from None
    if len(data) != size or (zlib.crc32(data) & 0xFFFFFFFF) != crc:
        raise ImageError("invalid_image", f"{name} is corrupt (size or CRC mismatch).")
    return data


def tar_iter(fp) -> Iterator[list]:
    """[name, data offset, size] per image member of a plain tar."""
    fp.seek(0)
    try:
        tf = tarfile.open(fileobj=fp, mode="r:")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"The archive is not a readable tar file ({exc}).") from None
    with tf:
        while True:
            try:
                member = tf.next()
            except tarfile.TarError:
                return  # trailing garbage ends the listing like tar itself does
            if member is None:
                return
            tf.members = []  # tarfile keeps every member it read: drop them, memory stays flat
            if member.isreg() and is_candidate(member.name):
                yield [member.name, member.offset_data, member.size]


def tar_read(fp, item: list, *, max_bytes: int) -> bytes:
    name, offset, size = item
    if size > max_bytes:
        raise ImageError("too_large", f"{name} is {size:,} bytes; the limit is {max_bytes:,}.")
    fp.seek(offset)
    data = fp.read(size)
    if len(data) != size:
        raise ImageError("invalid_image", f"{name} is truncated in the archive.")
    return data


# --------------------------------------------------------------------------- folders


def folder_resolve(path: str, *, roots: list[str]) -> str:
    """The real path of a folder under one of the import roots, or SourceError."""
    if not roots:
        raise SourceError("No import roots are configured (PICTOR_IMPORT_ROOTS); folder sources are off.")
    if not path or "\x00" in path:
        raise SourceError("Give the folder's path.")
    real = os.path.realpath(path)
    allowed = [os.path.realpath(r) for r in roots]
    if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in allowed):
        raise SourceError(f"{path} is outside the import roots (PICTOR_IMPORT_ROOTS).")
    if not os.path.isdir(real):
        raise SourceError(f"{path} does not exist or is not a folder.")
    if not os.access(real, os.R_OK | os.X_OK):
        raise SourceError(f"{path} is not readable by the server.")
    return real


def folder_iter(base: str, *, after: str | None = None) -> Iterator[list]:
    """[relative path] per image file, depth first: a folder's files by name, then its subfolders by
    name. A stable order, so a listing resumed after a crash continues `after` the last key it
    listed (files added or removed meanwhile shift nothing). Symlinked folders are not followed."""
    # Each folder to visit with the rest of the resumption point inside it (None: list all of it).
    stack: list[tuple[str, list[str] | None]] = [("", after.split("/") if after else None)]
    while stack:
        rel, rest = stack.pop()
        try:
            with os.scandir(os.path.join(base, rel)) as it:
                entries = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_file()) for e in it)
        except OSError:
            continue
        subdirs: list[tuple[str, list[str] | None]] = []
        for name, is_dir, is_file in entries:
            if name.startswith("."):
                continue
            key = f"{rel}/{name}" if rel else name
            if is_dir:
                if rest is None or len(rest) == 1 or name > rest[0]:
                    subdirs.append((key, None))  # not begun (a folder's subfolders follow its files)
                elif name == rest[0]:
                    subdirs.append((key, rest[1:]))  # where it stopped
            elif is_file and is_candidate(key) and (rest is None or (len(rest) == 1 and name > rest[0])):
                yield [key]
        stack.extend(reversed(subdirs))


def folder_read(base: str, item: list, *, max_bytes: int) -> bytes:
    (key,) = item[:1]
    path = os.path.realpath(os.path.join(base, key))
    if not path.startswith(base.rstrip(os.sep) + os.sep):
        raise ImageError("invalid_image", f"{key} points outside the folder.")
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ImageError("too_large", f"{key} is {size:,} bytes; the limit is {max_bytes:,}.")
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError("invalid_image", f"{key} is gone.") from None
    except OSError as exc:
        raise ImageError("invalid_image", f"{key} could not be read ({exc.strerror or exc}).") from None


# --------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def s3_parse(uri: str) -> S3Location:
    if not uri or not uri.startswith("s3://"):
        raise SourceError("An S3 source looks like s3://bucket/prefix.")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise SourceError("An S3 source needs a bucket: s3://bucket/prefix.")
    return S3Location(bucket=bucket, prefix=prefix)


def s3_client():
    """A boto3 client with the environment's credentials (AWS_*; AWS_ENDPOINT_URL for S3-compatible servers)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise SourceError("S3 sources need boto3: pip install -e '.[s3]'.") from None
    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise SourceError("No S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY on the server.")
    return session.client("s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}))


def s3_check(uri: str) -> S3Location:
    from botocore.exceptions import BotoCoreError, ClientError

    loc = s3_parse(uri)
    client = s3_client()
    try:
        page = client.list_objects_v2(Bucket=loc.bucket, Prefix=loc.prefix, MaxKeys=1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise SourceError(f"{loc.uri} cannot be listed ({code}).") from None
    except BotoCoreError as exc:
        raise SourceError(f"{loc.uri} cannot be reached ({exc}).") from None
    if not page.get("KeyCount"):
        raise SourceError(f"Nothing is stored under {loc.uri}.")
    return loc


# Keys per list_objects_v2 page (S3's maximum).
S3_PAGE = 1000


def s3_iter(uri: str, *, after: str | None = None) -> Iterator[list]:
    """[key] per image object in S3's (lexicographic) order; a resumed listing starts `after` the last
    key it listed, so objects added meanwhile shift nothing and the pages before are not fetched again."""
    loc = s3_parse(uri)
    paginator = s3_client().get_paginator("list_objects_v2")
    start = {"StartAfter": after} if after else {}
    pages = paginator.paginate(Bucket=loc.bucket, Prefix=loc.prefix, PaginationConfig={"PageSize": S3_PAGE}, **start)
    for page in pages:
        for obj in page.get("Contents", []):
            if is_candidate(obj["Key"]):
                yield [obj["Key"]]


def s3_read(client, bucket: str, item: list, *, max_bytes: int) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    (key,) = item[:1]
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        if code in ("NoSuchKey", "404", "AccessDenied", "403"):
            raise ImageError("invalid_image", f"{key} could not be read ({code}).") from None
        raise TransientSourceError(f"{key}: {code}") from None
    except BotoCoreError as exc:
        raise TransientSourceError(f"{key}: {exc}") from None
    size = obj.get("ContentLength") or 0
    body = obj["Body"]
    try:
        if size > max_bytes:
            raise ImageError("too_large", f"{key} is {size:,} bytes; the limit is {max_bytes:,}.")
        return body.read(max_bytes + 1)
    finally:
        body.close()


class RangeFile(io.RawIOBase):
    """A seekable read-only view of an S3 object through ranged GETs: a worker reads a few members
    of a stored archive without downloading all of it (wrap it in io.BufferedReader)."""

    def __init__(self, obj):
        super().__init__()
        self.obj, self.pos, self.size = obj, 0, obj.content_length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        if self.pos >= self.size or not len(buffer):
            return 0
        end = min(self.size, self.pos + len(buffer)) - 1
        data = self.obj.get(Range=f"bytes={self.pos}-{end}")["Body"].read()
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


# --------------------------------------------------------------------------- one reader per chunk


class Reader:
    """Reads the items of one source; open once per chunk (an archive stays open for its members)."""

    def __init__(self, *, kind: str, ref: str, open_upload=None, max_bytes: int, max_ratio: float = 100.0):
        self.kind, self.ref, self.max_bytes, self.max_ratio = kind, ref, max_bytes, max_ratio
        self._fp = None
        self._open_upload = open_upload
        self._client = None
        self._loc = None

    def read(self, item: list) -> bytes:
        if self.kind == "folder":
            return folder_read(self.ref, item, max_bytes=self.max_bytes)
        if self.kind == "s3":
            if self._client is None:
                self._loc, self._client = s3_parse(self.ref), s3_client()
            return s3_read(self._client, self._loc.bucket, item, max_bytes=self.max_bytes)
        if self._fp is None:
            self._fp = self._open_upload()
        if self.kind == "zip":
            return zip_read(self._fp, item, max_bytes=self.max_bytes, max_ratio=self.max_ratio)
        return tar_read(self._fp, item, max_bytes=self.max_bytes)

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def item_uri(*, kind: str, ref: str, key: str) -> str | None:
    """Where an item lives, for the series format's `uri` (uploads have no address of their own)."""
    if kind == "s3":
        return f"s3://{s3_parse(ref).bucket}/{key}"
    if kind == "folder":
        return Path(ref, key).as_uri()
    return None
