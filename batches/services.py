"""Writes of batch jobs: uploads, start (the model is pinned), listing into chunks, chunks classified
into results, pause / resume / cancel, and results sent to labeling.

Concurrency is held by the database: results are unique per (batch, key), one per listing position
(seq), and written with ON CONFLICT DO NOTHING; a chunk's pending → done is a conditional UPDATE and
only the worker that made it adds the chunk's counts (computed from the rows at its positions, not
from its own work), so a redelivered or duplicated chunk changes nothing. State changes of a batch
lock its row.
"""

from __future__ import annotations

import io
import itertools
import logging
import uuid

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from batches import pipeline, sources
from batches.models import Batch, BatchChunk, BatchResult, BatchUpload
from labeling import images, videos
from projects.access import parse_uuid
from projects.models import Project

log = logging.getLogger(__name__)

# Labels kept per item unless the batch asks for more (the results stay compact).
DEFAULT_TOP_K = 10
# Chunk rows created per transaction while listing.
_LIST_GROUP = 16


class BatchInvalid(Exception):
    """A bad source or request (API: 400 invalid, or 413 too_large); nothing was created."""

    def __init__(self, message: str, *, code: str = "invalid", status: int = 400, field: str = "source"):
        super().__init__(message)
        self.message, self.code, self.status, self.field = message, code, status, field


class BatchConflict(Exception):
    """The batch has ended: it cannot be paused, resumed or cancelled any more (API: 409)."""


# --- uploads -------------------------------------------------------------------------------------


class _Capped(io.RawIOBase):
    """A read-only stream that refuses to go past `limit` bytes (the archive upload limit); a real
    io stream, so every storage backend (the filesystem, S3's multipart upload) can consume it."""

    def __init__(self, stream, limit: int):
        super().__init__()
        self.stream, self.limit, self.count = stream, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise BatchInvalid(
                f"The archive is larger than {self.limit:,} bytes (PICTOR_BATCH_MAX_UPLOAD_BYTES).",
                code="too_large",
                status=413,
                field="file",
            )
        buffer[: len(data)] = data
        return len(data)


def batch_upload_create(*, project: Project, fileobj, user=None) -> BatchUpload:
    """Stream a zip or tar (gzip/bz2/xz tars are stored decompressed, for random access) into
    storage, in 1 MiB chunks, and check it can be listed. A refused file leaves nothing behind."""
    fileobj.seek(0)
    head = fileobj.read(512)
    fileobj.seek(0)
    kind = sources.archive_kind(head)
    if kind is None:
        raise BatchInvalid("The file is neither a zip nor a tar archive.", field="file")
    stream = fileobj
    if kind in ("gzip", "bz2", "xz"):
        stream = sources.decompressing(fileobj, kind)
        kind = BatchUpload.Kind.TAR
    upload_id = uuid.uuid4()
    name = f"batches/{project.pk}/{upload_id}.{kind}"
    stored = None
    try:
        stored = default_storage.save(name, File(_Capped(stream, settings.PICTOR_BATCH_MAX_UPLOAD_BYTES)))
        with upload_open(stored) as fp:
            if kind == BatchUpload.Kind.ZIP:
                sources.zip_check(fp)
            else:
                if sources.archive_kind(fp.read(512)) != "tar":
                    raise sources.SourceError("The compressed file does not hold a tar archive.")
                sources.tar_check(fp)
        size = default_storage.size(stored)
        return BatchUpload.objects.create(
            id=upload_id, project=project, storage_name=stored, kind=kind, bytes=size, uploaded_by=user
        )
    except sources.SourceError as exc:
        _delete_quietly(stored)
        raise BatchInvalid(exc.message, field="file") from None
    except (OSError, EOFError) as exc:  # a corrupt gzip/bz2/xz stream
        _delete_quietly(stored or name)
        raise BatchInvalid(f"The archive could not be read ({exc}).", field="file") from None
    except BaseException:
        _delete_quietly(stored or name)
        raise


def _delete_quietly(name: str | None) -> None:
    if name:
        try:
            default_storage.delete(name)
        except OSError:
            log.warning("could not delete %s", name, exc_info=True)


# --- start ---------------------------------------------------------------------------------------


def _source_ref(*, project: Project, source: dict) -> tuple[str, str, BatchUpload | None]:
    kind = source.get("kind")
    try:
        if kind == Batch.Kind.UPLOAD:
            pk = parse_uuid(source.get("upload_id"))
            upload = BatchUpload.objects.filter(project=project, pk=pk).first() if pk else None
            if upload is None:
                raise sources.SourceError("No such upload in this project (POST .../batches/uploads first).")
            try:
                with upload_open(upload.storage_name) as fp:
                    (sources.zip_check if upload.kind == BatchUpload.Kind.ZIP else sources.tar_check)(fp)
            except FileNotFoundError:
                raise sources.SourceError("The uploaded archive is gone from storage.") from None
            return kind, str(upload.pk), upload
        if kind == Batch.Kind.FOLDER:
            return kind, sources.folder_resolve(source.get("path") or "", roots=settings.PICTOR_IMPORT_ROOTS), None
        if kind == Batch.Kind.S3:
            return kind, sources.s3_check(source.get("uri") or "").uri, None
    except sources.SourceError as exc:
        raise BatchInvalid(exc.message) from None
    raise BatchInvalid("The source kind is upload, folder or s3.")


def batch_start(
    *,
    project: Project,
    source: dict,
    model_id: str | None = None,
    top_k: int | None = None,
    fps: float = 1.0,
    user=None,
) -> Batch:
    """Check the source, pin the model (the deployed one unless named) and the videos' sampling rate,
    and queue the listing. Raises inference.services.NoModel / UnknownModel, or BatchInvalid with
    nothing created."""
    from inference.services import model_for_invoke

    if not 0 < fps <= settings.PICTOR_VIDEO_MAX_FPS:
        raise BatchInvalid(
            f"The sampling rate must be above 0 and at most {settings.PICTOR_VIDEO_MAX_FPS:g} fps.", field="fps"
        )
    model = model_for_invoke(project=project, model_id=model_id)
    kind, ref, upload = _source_ref(project=project, source=source)
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            source_kind=kind,
            source_ref=ref,
            upload=upload,
            model=model,
            model_version=model.version,
            top_k=top_k,
            fps=fps,
            chunk_size=max(1, settings.PICTOR_BATCH_CHUNK),
            created_by=user,
        )
        pipeline.batch_listing(batch_id=batch.pk)
    return batch


# --- listing -------------------------------------------------------------------------------------


def upload_open(name: str):
    """A seekable binary file of a stored archive. On S3 media, ranged reads (django-storages would
    download the whole object on every open, that is once per chunk)."""
    bucket = getattr(default_storage, "bucket", None)
    if bucket is not None and hasattr(default_storage, "_normalize_name"):
        from botocore.exceptions import ClientError

        obj = bucket.Object(default_storage._normalize_name(name))
        try:
            obj.load()
        except ClientError:
            raise FileNotFoundError(name) from None
        return io.BufferedReader(sources.RangeFile(obj), buffer_size=256 * 1024)
    return default_storage.open(name, "rb")


def _upload_open(batch: Batch):
    return lambda: upload_open(batch.upload.storage_name)


def _reader_kind(batch: Batch) -> str:
    if batch.source_kind == Batch.Kind.UPLOAD:
        if batch.upload is None:
            raise sources.SourceError("The uploaded archive was deleted.")
        return batch.upload.kind
    return batch.source_kind


def _listing(batch: Batch, *, listed: int, after: str | None):
    """The source's items from the listed-th on. A folder or an S3 prefix restarts after the last key
    listed (it may have changed meanwhile); a stored archive never changes, so its first `listed`
    entries are skipped."""
    kind = _reader_kind(batch)
    if kind == Batch.Kind.FOLDER:
        return sources.folder_iter(batch.source_ref, after=after)
    if kind == Batch.Kind.S3:
        return sources.s3_iter(batch.source_ref, after=after)

    def archive():
        with _upload_open(batch)() as fp:
            yield from (sources.zip_iter(fp) if kind == BatchUpload.Kind.ZIP else sources.tar_iter(fp))

    return itertools.islice(archive(), listed, None)


def batch_listing_run(*, batch_id, listing=None) -> int:
    """List the source into chunk rows and queue each chunk once its rows committed. Resumable: a
    second run (a redelivery, the sweep) goes on after the chunks that exist (see _listing).
    `listing` replaces the source's own (the benchmark's synthetic million keys)."""
    batch = Batch.objects.select_related("upload").filter(pk=batch_id).first()
    if batch is None or batch.listed or batch.status in Batch.FINAL:
        return 0
    now = timezone.now()
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.QUEUED).update(
        status=Batch.Status.LISTING, started=now, run_since=now, listing_beat=now
    )
    size = batch.chunk_size
    # Chunks are committed in whole groups of consecutive indices: the count is the next index.
    index = BatchChunk.objects.filter(batch=batch).count()
    last = (
        BatchChunk.objects.filter(batch=batch, index=index - 1).values_list("items", flat=True).first()
        if index
        else None
    )
    try:
        if listing is not None:
            items = itertools.islice(iter(listing), index * size, None)
        else:
            listed = BatchChunk.objects.filter(batch=batch).aggregate(n=Sum("size"))["n"] or 0
            items = _listing(batch, listed=listed, after=last[-1][0] if last else None)
        group: list[BatchChunk] = []
        while True:
            part = list(itertools.islice(items, size))
            if part:
                group.append(BatchChunk(batch=batch, index=index, items=part, size=len(part)))
                index += 1
            if group and (len(group) >= _LIST_GROUP or not part):
                if _chunks_flush(batch, group) == Batch.Status.CANCELLED:
                    return index
                group = []
            if not part:
                break
    except sources.SourceError as exc:
        batch_fail(batch_id=batch.pk, error=exc.message)
        return index
    with transaction.atomic():
        total = BatchChunk.objects.filter(batch=batch).aggregate(n=Sum("size"))["n"] or 0
        Batch.objects.filter(pk=batch.pk).update(listed=True, total=total, chunks=index, listing_beat=timezone.now())
        Batch.objects.filter(pk=batch.pk, status=Batch.Status.LISTING).update(status=Batch.Status.RUNNING)
    batch_finish_if_done(batch_id=batch.pk)
    return index


def _chunks_flush(batch: Batch, group: list[BatchChunk]) -> str:
    with transaction.atomic():
        BatchChunk.objects.bulk_create(group, ignore_conflicts=True)
        total = BatchChunk.objects.filter(batch=batch).aggregate(n=Sum("size"))["n"] or 0
        Batch.objects.filter(pk=batch.pk).update(total=total, chunks=group[-1].index + 1, listing_beat=timezone.now())
        status = Batch.objects.filter(pk=batch.pk).values_list("status", flat=True).first()
        if status in Batch.ACTIVE:
            ids = BatchChunk.objects.filter(
                batch=batch, index__in=[c.index for c in group], status=BatchChunk.Status.PENDING
            ).values_list("pk", flat=True)
            pipeline.chunks_ready(chunk_ids=list(ids))
    return status


# --- chunks --------------------------------------------------------------------------------------


def batch_reader(batch: Batch) -> sources.Reader:
    kind = _reader_kind(batch)
    return sources.Reader(
        kind=kind,
        ref=batch.source_ref,
        open_upload=_upload_open(batch) if batch.source_kind == Batch.Kind.UPLOAD else None,
        max_bytes=settings.PICTOR_MAX_UPLOAD_BYTES,
        max_ratio=settings.PICTOR_ZIP_MAX_RATIO,
    )


def _error(code: str, message: str) -> dict:
    return {"code": code, "message": message[:500]}


def _classify(batch: Batch, chunk: BatchChunk, group: list[tuple[int, list]], reader) -> list[BatchResult]:
    """Read, decode once, and run one forward pass over a group of items; errors stay per item."""
    from inference.predictors import predict
    from inference.services import InvokeItem, items_validate

    rows: list[BatchResult] = []
    pending: list[tuple[int, list, InvokeItem]] = []
    for pos, item in group:
        seq = chunk.index * batch.chunk_size + pos
        try:
            data = _read(reader, item)
        except images.UploadError as exc:
            rows.append(BatchResult(batch=batch, seq=seq, key=item[0], error=_error(exc.code, exc.message)))
            continue
        if videos.is_video(data[:64], filename=item[0]):
            # Written at once: a video is many forward passes, and a chunk cut short keeps it.
            _results_write([_classify_video(batch, seq, item[0], data)])
            continue
        pending.append((seq, item, InvokeItem(filename=item[0], data=data)))
    items_validate([p[2] for p in pending])
    valid = [(seq, item, inv) for seq, item, inv in pending if inv.error is None]
    for seq, item, inv in pending:
        if inv.error is not None:
            rows.append(
                BatchResult(
                    batch=batch, seq=seq, key=item[0], sha256="", error=_error(inv.error.code, inv.error.message)
                )
            )
    if not valid:
        return rows
    model = batch.model
    prediction = predict(model, [inv.image.image for _, _, inv in valid])
    names = list(model.label_names)
    k = min(len(names), batch.top_k or DEFAULT_TOP_K)
    multi = batch.project.is_multi_label
    thresholds = np.asarray(model.thresholds or [0.5] * len(names), dtype=np.float32)
    for (seq, item, inv), probs in zip(valid, prediction.probs):
        order = np.argsort(-probs)
        best = int(order[0])
        present = ""
        if multi:
            on = [names[i] for i in order if probs[i] >= thresholds[i]]
            present = "|" + "|".join(on) + "|" if on else ""
        rows.append(
            BatchResult(
                batch=batch,
                seq=seq,
                key=item[0],
                sha256=inv.image.sha256,
                label=names[best],
                confidence=round(float(probs[best]), 6),
                present=present[:2000],
                top=[[int(i), round(float(probs[i]), 6)] for i in order[:k]],
            )
        )
        inv.image = None  # the pixels go as soon as the answer is known
    return rows


# BatchResult.key's length; longer names are shortened (and marked with their position, to stay unique).
_KEY_MAX = BatchResult._meta.get_field("key").max_length


def _result_key(name: str, seq: int, *, marked: bool) -> str:
    """The key of the item at listing position seq + 1: its name or, if an earlier twin holds it or it
    is too long for a key, the name marked "#<position>". Marked keys never meet a listed name (those
    end in an image or video extension) nor each other (positions differ)."""
    if not marked and len(name) <= _KEY_MAX:
        return name
    mark = f"#{seq + 1}"
    if len(name) + len(mark) > _KEY_MAX:
        name, mark = name[: _KEY_MAX - len(mark) - 1], "…" + mark
    return name + mark


# Rounds of _results_write before it gives up (each settles at least one twin; a few are plenty).
_WRITE_ROUNDS = 8


def _results_write(rows: list[BatchResult]) -> None:
    """Insert one row per listing position. ON CONFLICT DO NOTHING keeps a redelivered item from being
    written twice. A row whose position still has no result afterwards lost its name to another item
    of the same name (an archive may hold two members "a.png": a zip written twice, a tar appended
    to): both are classified, the earlier in the listing keeps the name (whichever chunk ran first)
    and the later is keyed "a.png#<position>", so neither collapses into the other and
    total == done + failed == the rows."""
    if not rows:
        return
    batch_id = rows[0].batch_id
    for row in rows:
        row.key = _result_key(row.key, row.seq, marked=False)
    for _ in range(_WRITE_ROUNDS):
        BatchResult.objects.bulk_create(rows, ignore_conflicts=True)
        written = BatchResult.objects.filter(batch_id=batch_id, seq__in=[row.seq for row in rows])
        done = set(written.values_list("seq", flat=True))
        rows = [row for row in rows if row.seq not in done]
        if not rows:
            return
        holders = BatchResult.objects.filter(batch_id=batch_id, key__in=[row.key for row in rows])
        holder = dict(holders.values_list("key", "seq"))
        for row in rows:
            held = holder.get(row.key)
            if held is not None and held > row.seq:  # a later twin holds the name: it takes its mark
                BatchResult.objects.filter(batch_id=batch_id, seq=held, key=row.key).update(
                    key=_result_key(row.key, held, marked=True)
                )
            elif held is not None:
                row.key = _result_key(row.key, row.seq, marked=True)
    # Not a twin's conflict: never drop items without a word.
    raise RuntimeError(f"batch {batch_id}: results at positions {[row.seq for row in rows][:10]} cannot be written")


def _read(reader: sources.Reader, item: list) -> bytes:
    """An item's bytes; a video-named one may be as large as a video upload may (PICTOR_VIDEO_MAX_BYTES)."""
    if not item[0].lower().endswith(videos.VIDEO_EXTENSIONS):
        return reader.read(item)
    limit = reader.max_bytes
    reader.max_bytes = max(limit, settings.PICTOR_VIDEO_MAX_BYTES)
    try:
        return reader.read(item)
    finally:
        reader.max_bytes = limit


# Frames for prediction are converted at most this short side, as in invoke (the predictors crop anyway).
_VIDEO_SHORT_SIDE = 448


def _classify_video(batch: Batch, seq: int, key: str, data: bytes) -> BatchResult:
    """A video at the batch's fps, with invoke's limits: its frames in forward passes of
    PICTOR_BATCH_INFER, merged into label segments. The whole-video answer is the label covering the
    most time, its confidence the time-weighted mean of its segments; `top` is the frames' mean."""
    from inference import video
    from inference.predictors import predict
    from labeling.services import video_limits

    model = batch.model
    names = list(model.label_names)
    index = {name: i for i, name in enumerate(names)}
    multi = batch.project.is_multi_label
    thresholds = np.asarray(model.thresholds or [0.5] * len(names), dtype=np.float32)
    limits = video_limits()
    source = videos.VideoSource.from_bytes(data, filename=key)
    step = max(1, settings.PICTOR_BATCH_INFER)
    probs: list[np.ndarray] = []
    times: list[int] = []

    def run(frames: list[videos.Frame]) -> None:
        fresh = [f for f in frames if not f.repeat]
        out = iter(predict(model, [f.image for f in fresh]).probs if fresh else [])
        for frame in frames:  # a repeated frame is the same picture: the same answer
            probs.append(probs[-1] if frame.repeat and probs else next(out))
            times.append(frame.time_ms)

    try:
        info = videos.video_probe(source, fps=batch.fps, limits=limits)
        group: list[videos.Frame] = []
        for frame in videos.video_frames(source, info=info, limits=limits, short_side=_VIDEO_SHORT_SIDE):
            group.append(frame)
            if len(group) >= step:
                run(group)
                group = []
        run(group)
    except videos.VideoError as exc:
        return BatchResult(batch=batch, seq=seq, key=key, error=_error(exc.code, exc.message))
    if not probs:
        return BatchResult(batch=batch, seq=seq, key=key, error=_error("invalid_video", "No frame could be decoded."))
    held = []
    for p in probs:
        if multi:
            held.append({names[i]: float(p[i]) for i in range(len(names)) if p[i] >= thresholds[i]})
        else:
            best = int(np.argmax(p))
            held.append({names[best]: float(p[best])})
    segs = video.segments(held, times, interval_ms=info.interval_ms)
    covered: dict[str, list[float]] = {}  # label -> [ms covered, confidence * ms]
    for seg in segs:
        span = max(1, seg.stop_ms - seg.start_ms)
        acc = covered.setdefault(seg.label, [0.0, 0.0])
        acc[0] += span
        acc[1] += seg.confidence * span
    mean = np.mean(np.stack(probs), axis=0)
    order = np.argsort(-mean)
    if covered:
        label = max(covered, key=lambda name: (covered[name][0], covered[name][1]))
        confidence = covered[label][1] / covered[label][0]
    else:  # multi-label, nothing present in any frame: the most confident label on average
        label, confidence = names[int(order[0])], float(mean[order[0]])
    by_time = sorted(covered, key=lambda name: -covered[name][0])
    k = min(len(names), batch.top_k or DEFAULT_TOP_K)
    return BatchResult(
        batch=batch,
        seq=seq,
        key=key,
        sha256=info.sha256,
        label=label,
        confidence=round(confidence, 6),
        present=("|" + "|".join(by_time) + "|")[:2000] if multi and by_time else "",
        top=[[int(i), round(float(mean[i]), 6)] for i in order[:k]],
        segments=[[index[seg.label], seg.start_ms, seg.stop_ms, seg.confidence] for seg in segs],
    )


def batch_chunk_run(*, chunk_id: int) -> str:
    """Classify one chunk. Items that already have a result are skipped (a redelivery after a crash
    redoes only the rest); pause and cancel stop it between its forward passes."""
    chunk = BatchChunk.objects.select_related("batch__project", "batch__model", "batch__upload").filter(pk=chunk_id)
    chunk = chunk.first()
    if chunk is None:
        return "gone"
    batch = chunk.batch
    if chunk.status == BatchChunk.Status.DONE:
        return "done"
    if batch.status not in Batch.ACTIVE:
        return batch.status
    BatchChunk.objects.filter(pk=chunk.pk).update(claimed=timezone.now(), attempts=F("attempts") + 1)
    # Results are found by listing position, not by name: two items may share a name (see _results_write).
    first = chunk.index * batch.chunk_size
    positions = BatchResult.objects.filter(batch=batch, seq__gte=first, seq__lt=first + len(chunk.items))
    have = set(positions.values_list("seq", flat=True))
    todo = [(pos, item) for pos, item in enumerate(chunk.items) if first + pos not in have]
    step = max(1, settings.PICTOR_BATCH_INFER)
    try:
        with batch_reader(batch) as reader:
            for start in range(0, len(todo), step):
                if start and Batch.objects.filter(pk=batch.pk).values_list("status", flat=True).first() not in (
                    Batch.ACTIVE
                ):
                    return "stopped"
                _results_write(_classify(batch, chunk, todo[start : start + step], reader))
    except sources.SourceError as exc:
        batch_fail(batch_id=batch.pk, error=exc.message)
        return "failed"
    with transaction.atomic():
        if BatchChunk.objects.filter(pk=chunk.pk, status=BatchChunk.Status.PENDING).update(
            status=BatchChunk.Status.DONE
        ):
            counts = positions.aggregate(n=Count("pk"), bad=Count("pk", filter=Q(error__isnull=False)))
            Batch.objects.filter(pk=batch.pk).update(
                done=F("done") + (counts["n"] - counts["bad"]),
                failed=F("failed") + counts["bad"],
                progressed=timezone.now(),
            )
    batch_finish_if_done(batch_id=batch.pk)
    return "done"


def _stop_clock(batch: Batch, now) -> None:
    if batch.run_since:
        batch.active_seconds += max(0.0, (now - batch.run_since).total_seconds())
        batch.run_since = None


def batch_finish_if_done(*, batch_id) -> bool:
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id, status=Batch.Status.RUNNING, listed=True).first()
        if batch is None or BatchChunk.objects.filter(batch=batch, status=BatchChunk.Status.PENDING).exists():
            return False
        now = timezone.now()
        _stop_clock(batch, now)
        batch.status, batch.finished = Batch.Status.SUCCEEDED, now
        batch.save(update_fields=["status", "finished", "active_seconds", "run_since"])
    return True


def batch_fail(*, batch_id, error: str) -> None:
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).exclude(status__in=Batch.FINAL).first()
        if batch is None:
            return
        now = timezone.now()
        _stop_clock(batch, now)
        batch.status, batch.finished, batch.error = Batch.Status.FAILED, now, error[:2000]
        batch.save(update_fields=["status", "finished", "error", "active_seconds", "run_since"])


# --- pause, resume, cancel -----------------------------------------------------------------------


def _locked(batch: Batch) -> Batch:
    return Batch.objects.select_for_update(of=("self",)).select_related("model", "project").get(pk=batch.pk)


@transaction.atomic
def batch_pause(*, batch: Batch) -> Batch:
    batch = _locked(batch)
    if batch.status in Batch.FINAL:
        raise BatchConflict(f"The batch has already ended ({batch.status}).")
    if batch.status != Batch.Status.PAUSED:
        _stop_clock(batch, timezone.now())
        batch.status = Batch.Status.PAUSED
        batch.save(update_fields=["status", "active_seconds", "run_since"])
    return batch


@transaction.atomic
def batch_resume(*, batch: Batch) -> Batch:
    batch = _locked(batch)
    if batch.status in Batch.FINAL:
        raise BatchConflict(f"The batch has already ended ({batch.status}).")
    if batch.status != Batch.Status.PAUSED:
        return batch
    batch.status = Batch.Status.RUNNING if batch.listed else Batch.Status.LISTING
    batch.run_since = timezone.now()
    batch.save(update_fields=["status", "run_since"])
    if not batch.listed:
        pipeline.batch_listing(batch_id=batch.pk)
    pending = BatchChunk.objects.filter(batch=batch, status=BatchChunk.Status.PENDING).order_by("index")
    pipeline.chunks_ready(chunk_ids=list(pending.values_list("pk", flat=True)))
    # Everything may have finished before the pause took hold.
    transaction.on_commit(lambda: batch_finish_if_done(batch_id=batch.pk))
    return batch


@transaction.atomic
def batch_cancel(*, batch: Batch) -> Batch:
    batch = _locked(batch)
    if batch.status in Batch.FINAL:
        raise BatchConflict(f"The batch has already ended ({batch.status}).")
    now = timezone.now()
    _stop_clock(batch, now)
    batch.status, batch.finished = Batch.Status.CANCELLED, now
    batch.save(update_fields=["status", "finished", "active_seconds", "run_since"])
    return batch


# --- items back out: thumbnails, send to labeling ------------------------------------------------


def result_item(*, batch: Batch, result: BatchResult) -> list | None:
    chunk = BatchChunk.objects.filter(batch=batch, index=result.seq // batch.chunk_size).only("items").first()
    if chunk is None:
        return None
    pos = result.seq % batch.chunk_size
    return chunk.items[pos] if pos < len(chunk.items) else None


def result_bytes(*, batch: Batch, result: BatchResult) -> bytes | None:
    """An item's bytes, read again from its source (None if they are gone or unreadable)."""
    item = result_item(batch=batch, result=result)
    if item is None:
        return None
    try:
        with batch_reader(batch) as reader:
            return _read(reader, item)
    except (images.UploadError, sources.SourceError, sources.TransientSourceError):
        return None


def video_poster(*, data: bytes, filename: str = ""):
    """A video item's first sampled frame (a PIL image, at most 448 px on its short side), or None if
    the bytes are no video within invoke's limits."""
    from labeling.services import video_limits

    if not videos.is_video(data[:64], filename=filename):
        return None
    limits = video_limits()
    source = videos.VideoSource.from_bytes(data, filename=filename)
    try:
        info = videos.video_probe(source, fps=min(1.0, limits.max_fps), limits=limits)
        frames = videos.video_frames(source, info=info, limits=limits, short_side=_VIDEO_SHORT_SIDE)
        try:
            first = next(frames, None)
        finally:
            frames.close()
    except videos.VideoError:
        return None
    return first.image if first is not None else None


def to_samples_start(*, batch: Batch, keys: list[str] | None, max_confidence: float | None, user=None) -> int:
    """Queue items (by key, or every answered item at or below a confidence) to become samples.
    Returns how many items that is."""
    qs = BatchResult.objects.filter(batch=batch, error__isnull=True)
    if keys is not None:
        qs = qs.filter(key__in=keys)
    else:
        qs = qs.filter(confidence__lte=max_confidence)
    count = qs.count()
    if count:
        pipeline.to_samples(
            batch_id=batch.pk, keys=keys, max_confidence=max_confidence, user_id=getattr(user, "pk", None)
        )
    return count


def to_samples_run(*, batch_id, keys: list[str] | None, max_confidence: float | None, user_id=None) -> int:
    """Read the chosen items from the source again and ingest them (`"source": "batch"`); duplicates
    of existing samples are found by SHA-256 as in every upload. Safe to run twice."""
    from django.contrib.auth import get_user_model

    from labeling import services as labeling_services
    from labeling.models import Sample

    batch = Batch.objects.select_related("project", "upload").filter(pk=batch_id).first()
    if batch is None:
        return 0
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    qs = BatchResult.objects.filter(batch=batch, error__isnull=True).order_by("seq")
    qs = qs.filter(key__in=keys) if keys is not None else qs.filter(confidence__lte=max_confidence)
    added = 0
    chunk_cache: dict[int, list] = {}
    with batch_reader(batch) as reader:
        results = qs.only("seq", "key").iterator(chunk_size=500)
        while group := list(itertools.islice(results, 16)):
            items = []
            for result in group:
                index, pos = divmod(result.seq, batch.chunk_size)
                if index not in chunk_cache:
                    chunk_cache.clear()  # results come in listing order: one chunk at a time
                    row = BatchChunk.objects.filter(batch=batch, index=index).only("items").first()
                    chunk_cache[index] = row.items if row else []
                refs = chunk_cache[index]
                if pos >= len(refs):
                    continue
                try:
                    data = _read(reader, refs[pos])
                except images.UploadError:
                    continue
                if videos.is_video(data[:64], filename=result.key):  # its frames, at the batch's fps
                    data = videos.VideoSource.from_bytes(data, filename=result.key[-255:])
                items.append(labeling_services.IngestItem(filename=result.key[-255:], data=data))
            report = labeling_services.samples_ingest(
                project=batch.project, items=items, user=user, source=Sample.Source.BATCH, fps=batch.fps
            )
            added += report.accepted
    return added


# --- the sweep (beat) ----------------------------------------------------------------------------


def batches_sweep() -> int:
    """Re-send what a dead worker or a broker outage lost; finish batches whose last chunk is done."""
    from batches import selectors
    from config.dispatch import cache_add

    sent = 0
    for batch_id in selectors.batches_listing_stalled():
        if cache_add(f"batch-list-resent:{batch_id}", 1, timeout=120):
            sent += pipeline.listing_resend(batch_id=batch_id)
    for chunk_id in selectors.chunks_lost():
        if cache_add(f"batch-chunk-resent:{chunk_id}", 1, timeout=120):
            sent += pipeline.chunk_resend(chunk_id=chunk_id)
    for batch_id in selectors.batches_unfinished_without_pending():
        batch_finish_if_done(batch_id=batch_id)
    return sent
