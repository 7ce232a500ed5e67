"""Video answers from per-frame results: label segments and the engine's series (shared/API.md "Video").

Plain functions on plain data (no Django): the invoke service classifies the sampled frames and
hands their result objects here. Decoding and sampling live in labeling/videos.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The whole frame, as in the image series (inference/services.py): whole-image labels.
FULL_FRAME = [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 1, "y": 1}, {"x": 0, "y": 1}]


@dataclass(frozen=True, slots=True)
class Segment:
    label: str
    start_ms: int  # the first frame's time
    stop_ms: int  # the last frame's time plus one sampling interval
    confidence: float  # the label's mean confidence over the segment's frames
    first: int  # index of the segment's first frame
    last: int


def held_labels(result: dict) -> dict[str, float]:
    """The labels a frame holds, with their confidences: a single-label result's top label, a
    multi-label result's present ones. `result` must carry every label (no top_k cut)."""
    if "present" in result:
        confidence = {x["label"]: x["confidence"] for x in result["labels"]}
        return {name: confidence[name] for name in result["present"]}
    return {result["label"]: result["confidence"]}


def segments(held: Sequence[dict[str, float]], times_ms: Sequence[int], *, interval_ms: float) -> list[Segment]:
    """Runs of consecutive sampled frames that hold the same label, in order of start (then confidence)."""
    runs: dict[str, list] = {}  # label -> [first, last, confidence sum, frames]
    out: list[Segment] = []

    def close(label: str) -> None:
        first, last, total, n = runs.pop(label)
        out.append(
            Segment(
                label=label,
                start_ms=int(times_ms[first]),
                stop_ms=round(times_ms[last] + interval_ms),
                confidence=round(total / n, 6),
                first=first,
                last=last,
            )
        )

    for i, labels in enumerate(held):
        for label in [name for name in runs if name not in labels]:
            close(label)
        for label, confidence in labels.items():
            run = runs.get(label)
            if run is None:
                runs[label] = [i, i, float(confidence), 1]
            else:
                run[1], run[2], run[3] = i, run[2] + float(confidence), run[3] + 1
    for label in list(runs):
        close(label)
    out.sort(key=lambda seg: (seg.start_ms, -seg.confidence, seg.label))
    return out


def series_entry(seg: Segment, *, library_id: str | None, uri: str | None) -> dict:
    obj = {"type": "object", "label": seg.label, "confidence": seg.confidence, "boundingPoly": FULL_FRAME}
    if library_id:
        obj["libraryId"] = library_id
    if uri:
        obj["uri"] = uri
    entry = {"startTimeMs": seg.start_ms, "stopTimeMs": seg.stop_ms, "object": obj}
    if library_id:
        entry["libraryId"] = library_id
    return entry


def video_series(
    *,
    library_id: str,
    frames: Sequence[dict],
    interval_ms: float,
    pretrained: Sequence[dict[str, float]] | None = None,
    uri_for: Callable[[int], str | None] = lambda index: None,
) -> list[dict]:
    """The engine output for a video: one entry per label segment, trained (library) labels first,
    then the pretrained ImageNet labels' segments (entries without libraryId). `frames` are the
    full per-frame results with their `timeMs`; `uri_for(i)` is frame i's stored image, if stored."""
    times = [f["timeMs"] for f in frames]
    entries = [
        series_entry(seg, library_id=library_id, uri=uri_for(seg.first))
        for seg in segments([held_labels(f) for f in frames], times, interval_ms=interval_ms)
    ]
    if pretrained:
        entries += [
            series_entry(seg, library_id=None, uri=uri_for(seg.first))
            for seg in segments(pretrained, times, interval_ms=interval_ms)
        ]
    return entries


def frames_answer(frames: Sequence[dict], *, top_k: int | None) -> list[dict]:
    """Per-frame results as answered: `labels` cut to the top_k (segments were made before the cut)."""
    if not top_k:
        return list(frames)
    return [{**f, "labels": f["labels"][:top_k]} for f in frames]
