"""Reads of batch jobs: batches, progress, results (filtered and rendered), lost work for the sweep."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from batches import sources
from batches.models import Batch, BatchChunk, BatchResult
from projects.access import parse_uuid
from projects.models import Project

RESULTS_PAGE = 1000


def batch_get(*, project: Project, batch_id) -> Batch | None:
    pk = parse_uuid(batch_id)
    if pk is None:
        return None
    return Batch.objects.select_related("model", "project").filter(project=project, pk=pk).first()


def batch_list(*, project: Project) -> QuerySet[Batch]:
    return Batch.objects.select_related("model").filter(project=project).order_by("-created")


def active_seconds(batch: Batch, *, now=None) -> float:
    now = now or timezone.now()
    running = (now - batch.run_since).total_seconds() if batch.run_since else 0.0
    return batch.active_seconds + max(0.0, running)


def items_per_second(batch: Batch) -> float | None:
    seconds = active_seconds(batch)
    processed = batch.done + batch.failed
    if seconds <= 0 or processed == 0:
        return None
    return round(processed / seconds, 3)


def eta_seconds(batch: Batch) -> float | None:
    if batch.status in Batch.FINAL:
        return 0.0
    rate = items_per_second(batch)
    if rate is None or not batch.listed:
        return None
    return round(max(0, batch.total - batch.done - batch.failed) / rate, 1)


def progress(batch: Batch) -> float:
    if batch.status == Batch.Status.SUCCEEDED:
        return 1.0
    return (batch.done + batch.failed) / batch.total if batch.total else 0.0


def source_describe(batch: Batch) -> dict:
    if batch.source_kind == Batch.Kind.UPLOAD:
        return {"kind": "upload", "upload_id": str(batch.upload_id or batch.source_ref)}
    if batch.source_kind == Batch.Kind.FOLDER:
        return {"kind": "folder", "path": batch.source_ref}
    return {"kind": "s3", "uri": batch.source_ref}


def results_filter(
    *, batch: Batch, label: str | None = None, min_confidence: float | None = None, max_confidence: float | None = None
) -> QuerySet[BatchResult]:
    qs = BatchResult.objects.filter(batch=batch)
    if label:
        if batch.project.is_multi_label:
            qs = qs.filter(present__contains=f"|{label}|")
        else:
            qs = qs.filter(label=label)
    if min_confidence is not None:
        qs = qs.filter(confidence__gte=min_confidence)
    if max_confidence is not None:
        qs = qs.filter(confidence__lte=max_confidence)
    return qs.order_by("seq")


def results_page(qs: QuerySet[BatchResult], *, page: int | None, size: int = RESULTS_PAGE) -> QuerySet[BatchResult]:
    if page is None:
        return qs
    start = (page - 1) * size
    return qs[start : start + size]


def result_record(*, batch: Batch, result: BatchResult) -> dict:
    """One item as the API and downloads show it (shared/API.md: key, sha256, label|present, confidence, labels)."""
    if result.error:
        return {"key": result.key, "error": result.error}
    names = batch.model.label_names if batch.model else []

    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    extra = {}
    if result.segments is not None:
        extra["segments"] = [
            {"label": name(i), "startTimeMs": start, "stopTimeMs": stop, "confidence": c}
            for i, start, stop, c in result.segments
        ]
    if batch.project.is_multi_label:
        thresholds = (batch.model.thresholds if batch.model else None) or [0.5] * len(names)
        labels = [
            {
                "label": name(i),
                "confidence": c,
                "threshold": round(float(thresholds[i]), 6),
                "present": bool(c >= thresholds[i]),
            }
            for i, c in result.top
        ]
        present = [p for p in result.present.strip("|").split("|") if p]
        return {
            "key": result.key,
            "sha256": result.sha256,
            "present": present,
            "confidence": result.confidence,
            "labels": labels,
            **extra,
        }
    return {
        "key": result.key,
        "sha256": result.sha256,
        "label": result.label,
        "confidence": result.confidence,
        "labels": [{"label": name(i), "confidence": c} for i, c in result.top],
        **extra,
    }


def result_records(*, batch: Batch, qs: QuerySet[BatchResult]) -> Iterator[dict]:
    for result in qs.iterator(chunk_size=2000):
        yield result_record(batch=batch, result=result)


def series_entries(*, batch: Batch, record: dict) -> list[dict]:
    """The engine output format (shared/API.md ?format=series): one whole-frame entry per label of an
    image (at 0/0), one per label segment of a video (at its real times)."""
    if "error" in record:
        return []
    from inference.services import FULL_FRAME

    pid = str(batch.project_id)
    uri = sources.item_uri(kind=_reader_kind(batch), ref=batch.source_ref, key=record["key"])
    out = []
    spans = record.get("segments")
    for x in record["labels"] if spans is None else spans:
        obj = {"type": "object", "label": x["label"], "confidence": x["confidence"], "libraryId": pid}
        obj["boundingPoly"] = FULL_FRAME
        obj["key"] = record["key"]
        if uri:
            obj["uri"] = uri
        start, stop = (x["startTimeMs"], x["stopTimeMs"]) if spans is not None else (0, 0)
        out.append({"startTimeMs": start, "stopTimeMs": stop, "libraryId": pid, "object": obj})
    return out


def _reader_kind(batch: Batch) -> str:
    return batch.upload.kind if batch.source_kind == Batch.Kind.UPLOAD and batch.upload else batch.source_kind


def result_get(*, batch: Batch, key: str) -> BatchResult | None:
    return BatchResult.objects.filter(batch=batch, key=key).first()


def result_labels(*, batch: Batch) -> list[str]:
    return list(batch.model.label_names) if batch.model else []


# --- for the sweep -------------------------------------------------------------------------------


def _stale():
    return timezone.now() - timedelta(seconds=settings.PICTOR_BATCH_STALE_SECONDS)


def chunks_lost() -> list[int]:
    """Pending chunks of running batches that a worker claimed and never finished (it died), or that
    nobody claimed while the batch made no progress for the stale time (their messages were lost)."""
    stale = _stale()
    claimed_dead = Q(claimed__lt=stale)
    stuck = Q(claimed__isnull=True, batch__progressed__lt=stale) | Q(
        claimed__isnull=True, batch__progressed__isnull=True, created__lt=stale
    )
    return list(
        BatchChunk.objects.filter(status=BatchChunk.Status.PENDING, batch__status__in=Batch.ACTIVE)
        .filter(claimed_dead | stuck)
        .order_by("batch_id", "index")
        .values_list("pk", flat=True)[:2000]
    )


def batches_listing_stalled() -> list:
    """Batches still queued or listing long after they started (the listing task was lost)."""
    stale = _stale()
    return list(
        Batch.objects.filter(listed=False, status__in=(Batch.Status.QUEUED, Batch.Status.LISTING))
        .filter(Q(listing_beat__lt=stale) | Q(listing_beat__isnull=True, created__lt=stale))
        .values_list("pk", flat=True)[:100]
    )


def batches_unfinished_without_pending() -> list:
    return list(
        Batch.objects.filter(status=Batch.Status.RUNNING, listed=True)
        .exclude(chunk_rows__status=BatchChunk.Status.PENDING)
        .values_list("pk", flat=True)[:100]
    )
