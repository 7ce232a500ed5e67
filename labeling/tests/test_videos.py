"""labeling/videos.py on its own: recognising videos, limits, and sampling frames as they decode."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from labeling import videos
from labeling.tests import videos as tv

LIMITS = videos.VideoLimits()


def source(data: bytes, name: str = "v.mp4") -> videos.VideoSource:
    return videos.VideoSource.from_bytes(data, filename=name)


def colours(n: int) -> list[Image.Image]:
    """n frames of distinct flat colours, so each frame can be told apart after encoding."""
    return [Image.new("RGB", (64, 48), (20 * i % 256, 255 - 20 * i % 256, 0)) for i in range(n)]


def red(image: Image.Image) -> int:
    return image.getpixel((32, 24))[0]


@pytest.mark.parametrize("container", ["mp4", "mov", "matroska", "webm"])
def test_it_recognises_the_containers_by_their_bytes(container):
    data = tv.encode(colours(3), container=container, size=(64, 48))
    assert videos.container_of(data[:64]) in ("mov", "matroska")
    assert videos.is_video(data[:64], filename="x.jpg", content_type="image/jpeg")


def test_it_takes_a_declared_video_as_one_and_not_photos_or_text():
    jpeg = tv.hym("train", "ants", 1)[0].read_bytes()
    assert videos.container_of(jpeg[:64]) is None and not videos.is_video(jpeg[:64], filename="a.jpg")
    assert videos.is_video(jpeg[:64], filename="a.MP4") and videos.is_video(b"hello", content_type="video/webm")
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00"
    assert videos.container_of(heic) is None
    with pytest.raises(videos.VideoError) as err:
        videos.video_probe(source(jpeg, "a.mp4"), fps=1, limits=LIMITS)
    assert err.value.code == "invalid_video" and err.value.http_status == 400


def test_it_samples_the_frame_on_screen_at_each_time():
    data = tv.encode(colours(10), fps=5, size=(64, 48))  # 2 s, a new colour every 200 ms
    src = source(data)
    info = videos.video_probe(src, fps=2, limits=LIMITS)
    assert (info.duration_ms, info.frames, info.width, info.height) == (2000, 4, 64, 48)
    frames = list(videos.video_frames(src, info=info, limits=LIMITS))
    assert [f.time_ms for f in frames] == [0, 500, 1000, 1500]
    expected = [red(colours(10)[i]) for i in (0, 2, 5, 7)]  # 500 ms shows the frame of 400 ms, ...
    assert [red(f.image) for f in frames] == pytest.approx(expected, abs=6)
    assert not any(f.repeat for f in frames)


def test_above_the_videos_own_rate_frames_repeat_and_are_converted_once():
    src = source(tv.encode(colours(5), fps=5, size=(64, 48)))
    info = videos.video_probe(src, fps=10, limits=LIMITS)
    frames = list(videos.video_frames(src, info=info, limits=LIMITS))
    assert [f.time_ms for f in frames] == list(range(0, 1000, 100))
    assert [f.repeat for f in frames] == [False, True] * 5
    assert frames[0].image is frames[1].image


def test_it_scales_frames_down_but_never_up():
    src = source(tv.encode(colours(2), fps=5, size=(320, 240)))
    info = videos.video_probe(src, fps=5, limits=LIMITS)
    assert next(videos.video_frames(src, info=info, limits=LIMITS, short_side=120)).image.size == (160, 120)
    assert next(videos.video_frames(src, info=info, limits=LIMITS, short_side=480)).image.size == (320, 240)


@pytest.mark.parametrize(
    "limits, fps, words",
    [
        (videos.VideoLimits(max_seconds=1.5), 1, "lasts 2.0 s"),
        (videos.VideoLimits(max_frames=3), 2, "gives 4 frames"),
        (videos.VideoLimits(max_pixels=64 * 48 - 1), 1, "pixels"),
        (videos.VideoLimits(max_bytes=100), 1, "bytes"),
    ],
)
def test_limits_are_checked_before_decoding(limits, fps, words):
    with pytest.raises(videos.VideoError) as err:
        videos.video_probe(source(tv.encode(colours(10), fps=5, size=(64, 48))), fps=fps, limits=limits)
    assert err.value.code == "too_large" and err.value.http_status == 413 and words in err.value.message


def test_truncated_empty_and_streamless_files_are_invalid():
    webm = tv.encode(colours(20), fps=5, container="webm", size=(64, 48))
    src = source(webm[: len(webm) // 2], "v.webm")
    info = videos.video_probe(src, fps=1, limits=LIMITS)
    with pytest.raises(videos.VideoError, match="truncated"):
        list(videos.video_frames(src, info=info, limits=LIMITS))
    for data in (b"", b"\x1a\x45\xdf\xa3" + b"\x00" * 500):
        with pytest.raises(videos.VideoError) as err:
            videos.video_probe(source(data), fps=1, limits=LIMITS)
        assert err.value.code == "invalid_video"


def test_the_stage_keeps_frames_on_disk_and_the_same_pixels_give_the_same_bytes():
    src = source(tv.encode(colours(3), fps=5, size=(64, 48)))
    info = videos.video_probe(src, fps=5, limits=LIMITS)
    with videos.FrameStage() as stage:
        for frame in videos.video_frames(src, info=info, limits=LIMITS):
            stage.add(frame)
        kept = list(stage)
        assert [t for t, _ in kept] == [0, 200, 400] and all(data[:3] == b"\xff\xd8\xff" for _, data in kept)
        again = next(videos.video_frames(src, info=info, limits=LIMITS))
        assert videos.frame_jpeg(again.image) == kept[0][1]
    assert videos.frame_filename("clip.mp4", 61_250) == "clip.mp4#t=61.250"


def test_a_video_without_a_duration_in_its_header_is_measured_from_its_packets():
    """A live-written WebM (as a browser's recorder makes) says nothing of its length."""
    data = tv.encode(colours(15), fps=5, container="webm", size=(64, 48), options={"live": "1"})
    src = source(data, "rec.webm")
    info = videos.video_probe(src, fps=1, limits=LIMITS)
    assert info.duration_ms == 3000 and info.frames == 3
    assert [f.time_ms for f in videos.video_frames(src, info=info, limits=LIMITS)] == [0, 1000, 2000]
    with pytest.raises(videos.VideoError) as err:
        videos.video_probe(src, fps=1, limits=videos.VideoLimits(max_seconds=2))
    assert err.value.code == "too_large"


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.furthest = 0

    def read(self, n=-1):
        chunk = super().read(n)
        self.furthest = max(self.furthest, self.tell())
        return chunk


def test_frames_come_while_the_file_is_read_not_after():
    """Streaming: the first sampled frame is out long before the decoder has read the whole file."""
    import numpy as np

    rng = np.random.default_rng(1)
    noisy = [Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(200)]
    data = tv.encode(noisy, fps=5, container="matroska", size=(160, 120))
    counting = CountingFile(data)
    src = videos.VideoSource(file=counting, filename="noise.mkv", size=len(data))
    info = videos.video_probe(src, fps=1, limits=LIMITS)
    counting.furthest = 0
    frames = videos.video_frames(src, info=info, limits=LIMITS)
    next(frames)
    assert counting.furthest < len(data) / 2, (counting.furthest, len(data))
    frames.close()


def test_a_portrait_phone_video_is_turned_upright():
    """Stored sideways with a display matrix (90 degrees counter-clockwise): frames come out as shown."""
    picture = Image.new("RGB", (64, 48), (0, 0, 0))
    picture.paste((255, 0, 0), (0, 0, 32, 24))  # red in the stored top-left corner
    src = source(tv.encode([picture] * 5, fps=5, size=(64, 48), rotation=90))
    info = videos.video_probe(src, fps=1, limits=LIMITS)
    image = next(videos.video_frames(src, info=info, limits=LIMITS)).image
    assert image.size == (48, 64)
    assert red(image.crop((0, 40, 24, 64)).resize((64, 48))) > 200 and image.getpixel((40, 5))[0] < 50
