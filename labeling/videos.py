"""Video files: recognise them, check their limits, and sample their frames one at a time (PyAV).

Django-free like labeling/images.py: uploads (frames become samples) and invoke (frames are
classified) both use it, and the tests run it without settings.

A file is a video when its bytes say so (an ISO-BMFF `ftyp` box: MP4, MOV; an EBML header: WebM,
MKV), or when the client declares one (a video/* media type or a video file name) — then bytes
that are anything else are refused as ``invalid_video``, never silently read as a photo. Only
FFmpeg's mov and matroska demuxers ever see the bytes: a playlist or any other demuxer that could
open further files is never chosen by the content.

Decoding streams: one decoded frame is held (the one on screen at the next sampling time), so
memory follows the frame size, never the video's length.

=================  ======  =======================================================================
code               status  when
=================  ======  =======================================================================
``too_large``      413     over ``max_bytes``, ``max_seconds``, ``max_pixels`` (per frame), or
                           more than ``max_frames`` sampled frames at the requested rate.
``invalid_video``  400     not MP4/MOV/WebM/MKV, no video stream, undecodable, or it ends well
                           before its header says (truncated).
=================  ======  =======================================================================
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from PIL import Image

from labeling.images import MB, UploadError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: Final = (".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv")
_FORMATS_HUMAN: Final = "MP4, MOV, WebM or MKV"
# Still-image brands of the same ISO box format (HEIF/AVIF photos): not videos.
_IMAGE_BRANDS: Final = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
# Old QuickTime files start with an atom other than ftyp.
_QT_ATOMS: Final = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


class VideoError(UploadError):
    """One video is refused. See the module docstring for codes."""

    codes = frozenset({"invalid_video", "too_large"})

    @property
    def http_status(self) -> int:
        return 413 if self.code == "too_large" else 400


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoLimits:
    max_bytes: int = 512 * MB
    max_seconds: float = 300.0
    max_frames: int = 600
    max_pixels: int = 3840 * 2160
    max_fps: float = 10.0


@dataclass
class VideoSource:
    """A video to read: a seekable binary file (an upload's temporary file, or bytes in memory)."""

    file: BinaryIO = field(repr=False)
    filename: str = ""
    size: int | None = None

    @classmethod
    def from_bytes(cls, data: bytes, *, filename: str = "") -> VideoSource:
        return cls(file=io.BytesIO(data), filename=filename, size=len(data))

    def head(self, n: int = 64) -> bytes:
        self.file.seek(0)
        data = self.file.read(n)
        self.file.seek(0)
        return data

    def byte_size(self) -> int:
        if self.size is None:
            self.file.seek(0, os.SEEK_END)
            self.size = self.file.tell()
            self.file.seek(0)
        return self.size


@dataclass(frozen=True, slots=True)
class VideoInfo:
    sha256: str
    container: str  # "mov" (MP4, MOV) or "matroska" (WebM, MKV): the only demuxers used
    width: int
    height: int
    duration_ms: int
    fps: float  # the sampling rate asked for
    frames: int  # how many frames that rate samples

    @property
    def interval_ms(self) -> float:
        return 1000.0 / self.fps


@dataclass(slots=True)
class Frame:
    index: int  # the k-th sampling time
    time_ms: int  # k / fps, in ms: the frame on screen then
    image: Image.Image = field(repr=False)  # RGB
    repeat: bool = False  # the same decoded frame as the previous sample (fps above the video's)


def container_of(head: bytes) -> str | None:
    """The FFmpeg demuxer for these leading bytes, if they are one of the accepted containers."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return None if head[8:12] in _IMAGE_BRANDS else "mov"
    if len(head) >= 8 and head[4:8] in _QT_ATOMS:
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


def declared_video(*, filename: str = "", content_type: str = "") -> bool:
    return (content_type or "").lower().startswith("video/") or (filename or "").lower().endswith(VIDEO_EXTENSIONS)


def is_video(head: bytes, *, filename: str = "", content_type: str = "") -> bool:
    """Treat this upload as a video: its content is one, or the client says it is one."""
    return container_of(head) is not None or declared_video(filename=filename, content_type=content_type)


def _too_large(message: str) -> VideoError:
    return VideoError("too_large", message)


def _sha256(file: BinaryIO) -> str:
    file.seek(0)
    digest = hashlib.file_digest(file, "sha256").hexdigest()
    file.seek(0)
    return digest


def _open(source: VideoSource, container: str):
    import av

    source.file.seek(0)
    return av.open(source.file, mode="r", format=container)


def _duration_s(box, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if box.duration is not None and box.duration > 0:
        return box.duration / 1_000_000  # AV_TIME_BASE
    return None


def _demuxed_duration_s(source: VideoSource, container: str, max_seconds: float) -> float:
    """No duration in the header (a browser's recorded WebM): read the packets, without decoding."""
    box = _open(source, container)
    try:
        stream = box.streams.video[0]
        first = last = None
        for packet in box.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * stream.time_base)
            end = t + float((packet.duration or 0) * stream.time_base)
            first = t if first is None else min(first, t)
            last = end if last is None else max(last, end)
            if last - first > max_seconds:
                break  # long enough to refuse; no need to read on
        if first is None:
            raise VideoError("invalid_video", "The video holds no frames.")
        return last - first
    finally:
        box.close()


def video_probe(source: VideoSource, *, fps: float, limits: VideoLimits) -> VideoInfo:
    """Open the video and check every limit before any frame is decoded, or raise ``VideoError``."""
    import av

    size = source.byte_size()
    if size == 0:
        raise VideoError("invalid_video", "The file is empty.")
    if size > limits.max_bytes:
        raise _too_large(f"The video is {size:,} bytes; the limit is {limits.max_bytes:,} bytes.")
    if not 0 < fps <= limits.max_fps:
        raise VideoError("invalid_video", f"The sampling rate must be above 0 and at most {limits.max_fps:g} fps.")
    container = container_of(source.head(64))
    if container is None:
        raise VideoError("invalid_video", f"The file is not a video this server reads ({_FORMATS_HUMAN}).")
    try:
        box = _open(source, container)
    except av.FFmpegError as exc:
        log.info("unreadable video %r: %s", source.filename, exc)
        raise VideoError("invalid_video", "The video cannot be read: its container is corrupt or truncated.") from None
    try:
        if not box.streams.video:
            raise VideoError("invalid_video", "The file holds no video stream.")
        stream = box.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        duration = _duration_s(box, stream)
    finally:
        box.close()
    if width <= 0 or height <= 0:
        raise VideoError("invalid_video", "The video stream has no picture size.")
    if width * height > limits.max_pixels:
        raise _too_large(f"The video's frames have {width * height:,} pixels; the limit is {limits.max_pixels:,}.")
    if duration is None:
        try:
            duration = _demuxed_duration_s(source, container, limits.max_seconds)
        except av.FFmpegError:
            raise VideoError("invalid_video", "The video cannot be read: it is corrupt.") from None
    if duration > limits.max_seconds:
        raise _too_large(f"The video lasts {duration:.1f} s; the limit is {limits.max_seconds:g} s.")
    frames = max(1, math.ceil(round(duration * fps, 6)))
    if frames > limits.max_frames:
        raise _too_large(
            f"At {fps:g} fps this {duration:.1f} s video gives {frames} frames; the limit is {limits.max_frames} "
            "(ask for a lower ?fps=)."
        )
    return VideoInfo(
        sha256=_sha256(source.file),
        container=container,
        width=width,
        height=height,
        duration_ms=round(duration * 1000),
        fps=fps,
        frames=frames,
    )


def _scaled(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side or min(width, height) <= short_side:
        return width, height
    ratio = short_side / min(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))


# A phone's portrait video is stored sideways with a display matrix: degrees counter-clockwise.
_ROTATE: Final = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def _upright(image: Image.Image, rotation) -> Image.Image:
    turn = _ROTATE.get(round(rotation or 0) % 360)
    return image.transpose(turn) if turn is not None else image


def video_frames(
    source: VideoSource, *, info: VideoInfo, limits: VideoLimits, short_side: int | None = None
) -> Iterator[Frame]:
    """The frame on screen at each sampling time k / fps, in order, decoded as the file is read.

    ``short_side`` scales frames down (never up) during the colour conversion, which is cheaper than
    converting the full frame and resizing it afterwards. Raises ``VideoError`` for a video that
    breaks while decoding or lies about its limits in its header.
    """
    import av

    interval = info.interval_ms
    try:
        box = _open(source, info.container)
    except av.FFmpegError:
        raise VideoError("invalid_video", "The video cannot be read: its container is corrupt.") from None
    try:
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        origin = None
        prev = None  # the last decoded frame: on screen until the next one starts
        prev_image = None  # its conversion, made once however many samples show it
        last_ms = 0.0
        step_ms = 0.0
        k = 0

        def sample(frame) -> Frame:
            nonlocal prev_image
            repeat = prev_image is not None
            if prev_image is None:
                w, h = _scaled(frame.width, frame.height, short_side)
                prev_image = _upright(frame.to_image(width=w, height=h), frame.rotation)
            return Frame(index=k, time_ms=round(k * interval), image=prev_image, repeat=repeat)

        try:
            for frame in box.decode(stream):
                if frame.width * frame.height > limits.max_pixels:
                    raise _too_large(
                        f"A frame has {frame.width * frame.height:,} pixels; the limit is {limits.max_pixels:,}."
                    )
                t = frame.time
                if t is None:  # no timestamp: assume the stream's nominal rate
                    t = (last_ms + (step_ms or 40.0)) / 1000 + (origin or 0.0)
                if origin is None:
                    origin = t
                t_ms = (t - origin) * 1000
                if t_ms > limits.max_seconds * 1000 + 1000:
                    raise _too_large(f"The video lasts longer than the limit of {limits.max_seconds:g} s.")
                if prev is not None and t_ms > last_ms:
                    step_ms = t_ms - last_ms
                # Every sampling time before this frame starts shows the previous frame.
                while prev is not None and k < info.frames and k * interval < t_ms:
                    yield sample(prev)
                    k += 1
                if prev is None or t_ms >= last_ms:
                    prev, prev_image, last_ms = frame, None, t_ms
            if prev is None:
                raise VideoError("invalid_video", "The video holds no decodable frames.")
            end_ms = last_ms + (step_ms or interval)
            if end_ms < 0.9 * info.duration_ms - 500:
                raise VideoError(
                    "invalid_video",
                    f"The video ends at {end_ms / 1000:.1f} s but says it lasts {info.duration_ms / 1000:.1f} s: "
                    "it is truncated or corrupt.",
                )
            while k < info.frames and k * interval < end_ms:
                yield sample(prev)
                k += 1
        except (av.FFmpegError, ValueError) as exc:  # ValueError: a pixel format PyAV cannot convert
            log.info("video %r broke while decoding: %s", source.filename, exc)
            raise VideoError("invalid_video", "The video is corrupt: a frame could not be decoded.") from None
    finally:
        box.close()


def frame_jpeg(image: Image.Image, *, quality: int = 90) -> bytes:
    """A sampled frame as a JPEG file; the same pixels always give the same bytes (so the same SHA-256)."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class FrameStage:
    """Sampled frames kept as JPEG files in a temporary folder until the whole video has decoded,
    so a video that breaks halfway stores nothing; memory holds one frame at a time."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="pictor-frames-")
        self.times: list[int] = []

    def add(self, frame: Frame) -> None:
        with open(os.path.join(self._dir.name, f"{len(self.times)}.jpg"), "wb") as f:
            f.write(frame_jpeg(frame.image))
        self.times.append(frame.time_ms)

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for i, time_ms in enumerate(self.times):
            with open(os.path.join(self._dir.name, f"{i}.jpg"), "rb") as f:
                yield time_ms, f.read()

    def close(self) -> None:
        self._dir.cleanup()

    def __enter__(self) -> FrameStage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frame_filename(video_filename: str, time_ms: int) -> str:
    """`clip.mp4#t=3.000`: the media-fragment way to name a moment of a video."""
    return f"{video_filename or 'video'}#t={time_ms / 1000:.3f}"
