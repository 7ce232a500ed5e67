"""inference/video.py on its own: label segments from per-frame results, and the series they make."""

from __future__ import annotations

import pytest

from inference import video


def single(t, label, confidence):
    other = "bees" if label == "ants" else "ants"
    return {
        "timeMs": t,
        "label": label,
        "confidence": confidence,
        "labels": [{"label": label, "confidence": confidence}, {"label": other, "confidence": 1 - confidence}],
        "model": {"id": "m", "version": 1},
    }


def multi(t, present):
    labels = [{"label": n, "confidence": c, "threshold": 0.5, "present": c >= 0.5} for n, c in present.items()]
    return {"timeMs": t, "present": [n for n, c in present.items() if c >= 0.5], "labels": labels, "model": {}}


def test_consecutive_frames_with_the_same_label_merge():
    frames = [single(0, "ants", 0.9), single(500, "ants", 0.7), single(1000, "bees", 0.8), single(1500, "ants", 0.6)]
    segs = video.segments([video.held_labels(f) for f in frames], [f["timeMs"] for f in frames], interval_ms=500)
    assert [(s.label, s.start_ms, s.stop_ms) for s in segs] == [
        ("ants", 0, 1000),
        ("bees", 1000, 1500),
        ("ants", 1500, 2000),
    ]
    assert segs[0].confidence == pytest.approx(0.8) and (segs[0].first, segs[0].last) == (0, 1)


def test_multi_label_segments_overlap_and_use_present_labels():
    frames = [
        multi(0, {"sky": 0.9, "sea": 0.2}),
        multi(1000, {"sky": 0.7, "sea": 0.6}),
        multi(2000, {"sky": 0.3, "sea": 0.8}),
    ]
    segs = video.segments([video.held_labels(f) for f in frames], [0, 1000, 2000], interval_ms=1000)
    assert [(s.label, s.start_ms, s.stop_ms, s.confidence) for s in segs] == [
        ("sky", 0, 2000, 0.8),
        ("sea", 1000, 3000, 0.7),
    ]


def test_the_series_carries_real_times_library_ids_and_uris():
    frames = [single(0, "ants", 1.0), single(333, "bees", 0.5)]
    entries = video.video_series(
        library_id="p1",
        frames=frames,
        interval_ms=1000 / 3,
        pretrained=[{"ant": 0.6}, {"bee": 0.4}],
        uri_for=lambda i: f"http://x/{i}" if i == 1 else None,
    )
    library, pretrained = entries[:2], entries[2:]
    assert [(e["startTimeMs"], e["stopTimeMs"], e["object"]["label"]) for e in library] == [
        (0, 333, "ants"),
        (333, 666, "bees"),
    ]
    assert "uri" not in library[0]["object"] and library[1]["object"]["uri"] == "http://x/1"
    assert all(e["libraryId"] == "p1" == e["object"]["libraryId"] for e in library)
    assert [e["object"]["label"] for e in pretrained] == ["ant", "bee"] and not any(
        "libraryId" in e for e in pretrained
    )
    assert library[0]["object"]["boundingPoly"] == [
        {"x": 0, "y": 0},
        {"x": 1, "y": 0},
        {"x": 1, "y": 1},
        {"x": 0, "y": 1},
    ]


def test_top_k_cuts_the_frames_labels_only_when_answering():
    frames = [single(0, "ants", 0.9)]
    assert len(video.frames_answer(frames, top_k=1)[0]["labels"]) == 1
    assert len(frames[0]["labels"]) == 2 and video.frames_answer(frames, top_k=None) == frames
