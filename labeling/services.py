"""Writes for samples and labels: ingest (validate, store, dedupe), labels, deletion."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling import images, videos, zips
from labeling.models import Label, LabelEvent, Lease, Sample, SampleLabel
from labeling.signals import label_set_changed, labels_changed, samples_added
from labeling.storage import files_delete, files_write, sample_names
from projects.models import Project
from projects.roles import Role

log = logging.getLogger(__name__)

# Keys 1-9 first, then letters; s and z are the labeling page's skip and undo keys.
SHORTCUT_KEYS = "123456789abcdefghijklmnopqrtuvwxy"
PALETTE = ["#2457d6", "#d63e24", "#1f8a4c", "#b07d00", "#8e3ccb", "#0a8da3", "#c2417f", "#5d6b00", "#7a4f2a", "#4a5568"]


# Who may create labels, on the labels page, through the API and by uploading with new label names
# alike: labelers and up (uploads create missing labels, so a stricter page rule would be a fiction).
# Renaming, recolouring, merging and deleting labels stay with admins.
LABEL_CREATE_ROLE = Role.LABELER


class Conflict(Exception):
    """The request clashes with existing data (API: 409 conflict)."""


def image_limits() -> images.ImageLimits:
    return images.ImageLimits(
        max_bytes=settings.PICTOR_MAX_UPLOAD_BYTES,
        max_pixels=settings.PICTOR_MAX_PIXELS,
        zip_max_entries=settings.PICTOR_ZIP_MAX_ENTRIES,
        zip_max_total_bytes=settings.PICTOR_ZIP_MAX_BYTES,
        zip_max_ratio=settings.PICTOR_ZIP_MAX_RATIO,
    )


def video_limits() -> videos.VideoLimits:
    return videos.VideoLimits(
        max_bytes=settings.PICTOR_VIDEO_MAX_BYTES,
        max_seconds=settings.PICTOR_VIDEO_MAX_SECONDS,
        max_frames=settings.PICTOR_VIDEO_MAX_FRAMES,
        max_pixels=settings.PICTOR_VIDEO_MAX_PIXELS,
        max_fps=settings.PICTOR_VIDEO_MAX_FPS,
    )


# Bidirectional controls (embeddings, overrides, isolates, marks): they make "gpj.exe" look like "exe.jpg".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def clean_text(value: str) -> str:
    """Drop control characters (NUL and friends) and bidi controls: databases, zip names and CSV all choke on them."""
    import unicodedata

    return "".join(c for c in str(value or "") if unicodedata.category(c) != "Cc" and c not in _BIDI_CONTROLS)


def csv_cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP: prefix a single quote)."""
    value = str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _clean_label_name(name: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in str(name or "") if c not in " \t"):
        raise ValidationError({"name": "Label names cannot contain control characters."})
    name = " ".join(str(name or "").split())
    if not name:
        raise ValidationError({"name": "A label needs a name."})
    if len(name) > 100:
        raise ValidationError({"name": "Label names are at most 100 characters."})
    return name


def _next_look(project: Project) -> tuple[str, str]:
    used = set(Label.objects.filter(project=project).values_list("shortcut", flat=True))
    count = Label.objects.filter(project=project).count()
    shortcut = next((k for k in SHORTCUT_KEYS if k not in used), "")
    return PALETTE[count % len(PALETTE)], shortcut


def label_create(*, project: Project, name: str) -> Label:
    name = _clean_label_name(name)
    try:
        with transaction.atomic():
            color, shortcut = _next_look(project)
            label = Label.objects.create(project=project, name=name, color=color, shortcut=shortcut)
    except IntegrityError:
        raise Conflict(f"A label named {name!r} exists already.") from None
    _label_set_changed(project.pk)
    return label


def _label_set_changed(project_id) -> None:
    transaction.on_commit(lambda: label_set_changed.send(sender=Label, project_id=project_id))


def labels_get_or_create(*, project: Project, names: list[str]) -> list[Label]:
    """The labels with these names, created when missing; order kept, duplicates dropped."""
    wanted: list[str] = []
    for raw in names:
        name = _clean_label_name(raw)
        if name not in wanted:
            wanted.append(name)
    existing = {label.name: label for label in Label.objects.filter(project=project, name__in=wanted)}
    result = []
    for name in wanted:
        label = existing.get(name)
        if label is None:
            try:
                label = label_create(project=project, name=name)
            except Conflict:  # created concurrently by someone else: use theirs
                label = Label.objects.get(project=project, name=name)
        result.append(label)
    return result


def _check_label_count(project: Project, labels: list[Label]) -> None:
    if not project.is_multi_label and len(labels) > 1:
        raise ValidationError({"labels": "This is a single-label project: give at most one label."})


@transaction.atomic
def sample_labels_set(*, sample: Sample, names: list[str], user: AbstractBaseUser | None, via: str = "web") -> Sample:
    """Replace a sample's labels, keep labeled_at in step and record the change in the audit trail."""
    project = sample.project
    labels = labels_get_or_create(project=project, names=names)
    _check_label_count(project, labels)
    # Lock the sample so two people labeling it at once serialise instead of interleaving.
    sample = Sample.objects.select_for_update().select_related("project").get(pk=sample.pk)
    old = sorted(SampleLabel.objects.filter(sample=sample).values_list("label__name", flat=True))
    new = sorted(label.name for label in labels)
    if old == new:
        return sample
    SampleLabel.objects.filter(sample=sample).exclude(label__in=labels).delete()
    have = set(SampleLabel.objects.filter(sample=sample).values_list("label_id", flat=True))
    SampleLabel.objects.bulk_create(
        [SampleLabel(sample=sample, label=label, created_by=user) for label in labels if label.pk not in have]
    )
    sample.labeled_at = (sample.labeled_at or timezone.now()) if labels else None
    sample.save(update_fields=["labeled_at"])
    if labels:
        # A labeled sample leaves the queue, whoever held it.
        Lease.objects.filter(sample=sample).delete()
    LabelEvent.objects.create(sample=sample, user=user, old=old, new=new, via=via)
    transaction.on_commit(lambda: labels_changed.send(sender=Sample, project_id=project.pk))
    return sample


def label_undo(*, project: Project, user: AbstractBaseUser) -> Sample | None:
    """Undo the user's last label change in the project, if nobody changed that sample since."""
    with transaction.atomic():
        event = (
            LabelEvent.objects.select_for_update()
            .filter(sample__project=project, user=user, undone=False)
            .exclude(via=LabelEvent.Via.UNDO)
            .order_by("-created", "-id")
            .first()
        )
        if event is None:
            return None
        current = sorted(SampleLabel.objects.filter(sample=event.sample).values_list("label__name", flat=True))
        event.undone = True
        event.save(update_fields=["undone"])
        if current != sorted(event.new):
            return None
        return sample_labels_set(sample=event.sample, names=list(event.old), user=user, via=LabelEvent.Via.UNDO)


@transaction.atomic
def samples_label_bulk(
    *, project: Project, sample_ids: list, label_name: str, user: AbstractBaseUser | None, mode: str = "add"
) -> int:
    """Grid labeling: give many samples a label (single-label: it replaces theirs). Returns the count."""
    label = labels_get_or_create(project=project, names=[label_name])[0]
    samples = list(Sample.objects.filter(project=project, pk__in=sample_ids))
    for sample in samples:
        names = [label.name]
        if project.is_multi_label:
            have = list(SampleLabel.objects.filter(sample=sample).values_list("label__name", flat=True))
            names = sorted(set(have) - {label.name}) if mode == "remove" else sorted(set(have) | {label.name})
        elif mode == "remove":
            have = list(SampleLabel.objects.filter(sample=sample).values_list("label__name", flat=True))
            names = [n for n in have if n != label.name]
        sample_labels_set(sample=sample, names=names, user=user, via=LabelEvent.Via.GRID)
    return len(samples)


def _label_clean_shortcut(project: Project, label: Label, shortcut: str) -> str:
    shortcut = (shortcut or "").strip().lower()
    if not shortcut:
        return ""
    if len(shortcut) != 1 or shortcut not in SHORTCUT_KEYS:
        raise ValidationError({"shortcut": "Shortcuts are one key: 1-9 or a letter other than s and z."})
    if Label.objects.filter(project=project, shortcut=shortcut).exclude(pk=label.pk).exists():
        raise ValidationError({"shortcut": f"Key {shortcut} belongs to another label."})
    return shortcut


@transaction.atomic
def label_update(*, label: Label, name: str, color: str, shortcut: str) -> Label:
    project = label.project
    new_name = _clean_label_name(name)
    if new_name != label.name and Label.objects.filter(project=project, name=new_name).exists():
        raise ValidationError({"name": f"A label named {new_name!r} exists; merge into it instead."})
    color = (color or "").strip()
    if not (len(color) == 7 and color.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in color[1:])):
        raise ValidationError({"color": "Colours look like #1a2b3c."})
    renamed = new_name != label.name
    label.name, label.color = new_name, color.lower()
    label.shortcut = _label_clean_shortcut(project, label, shortcut)
    label.save()
    if renamed:
        _label_set_changed(project.pk)
    return label


@transaction.atomic
def label_merge(*, source: Label, target: Label, user: AbstractBaseUser | None) -> int:
    """Move every sample of `source` to `target`, then delete `source`. Returns samples moved."""
    if source.project_id != target.project_id or source.pk == target.pk:
        raise ValidationError({"target": "Merge into a different label of the same project."})
    moved = 0
    for sample in Sample.objects.filter(sample_labels__label=source).distinct():
        names = set(SampleLabel.objects.filter(sample=sample).values_list("label__name", flat=True))
        names = (names - {source.name}) | {target.name}
        sample_labels_set(sample=sample, names=sorted(names), user=user, via=LabelEvent.Via.MERGE)
        moved += 1
    source.delete()
    _label_set_changed(source.project_id)
    return moved


@transaction.atomic
def label_delete(*, label: Label, user: AbstractBaseUser | None) -> int:
    """Remove the label from every sample (recorded in their history), then delete it."""
    affected = 0
    for sample in Sample.objects.filter(sample_labels__label=label).distinct():
        names = [
            n
            for n in SampleLabel.objects.filter(sample=sample).values_list("label__name", flat=True)
            if n != label.name
        ]
        sample_labels_set(sample=sample, names=names, user=user, via=LabelEvent.Via.LABEL_DELETE)
        affected += 1
    project_id = label.project_id
    label.delete()
    _label_set_changed(project_id)
    return affected


# ----------------------------------------------------------------------------- ingest


@dataclass
class IngestItem:
    filename: str
    data: bytes | videos.VideoSource  # a video expands into its sampled frames
    labels: list[str] = field(default_factory=list)
    video: tuple[str, int] | None = None  # a frame's (video sha256, time in ms)


@dataclass
class IngestResult:
    filename: str
    sample: Sample | None = None
    duplicate: bool = False
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass
class IngestReport:
    results: list[IngestResult] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.ok and not r.duplicate)

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.results if r.ok and r.duplicate)

    @property
    def rejected(self) -> int:
        return sum(1 for r in self.results if not r.ok)


def video_frames_expand(item: IngestItem, *, fps: float) -> Iterator[IngestItem | IngestResult]:
    """A video's frames at `fps` as image items. Every frame is decoded (to a temporary folder) before
    the first is yielded, so a video that breaks halfway becomes one error result and stores nothing."""
    limits = video_limits()
    source = item.data
    with videos.FrameStage() as stage:
        try:
            info = videos.video_probe(source, fps=fps, limits=limits)
            for frame in videos.video_frames(source, info=info, limits=limits):
                if not frame.repeat:  # the same picture again would only come back as a duplicate
                    stage.add(frame)
        except videos.VideoError as exc:
            yield IngestResult(filename=item.filename, error_code=exc.code, error_message=exc.message)
            return
        for time_ms, data in stage:
            yield IngestItem(
                filename=videos.frame_filename(item.filename, time_ms),
                data=data,
                labels=list(item.labels),
                video=(info.sha256, time_ms),
            )


def expand_uploads(
    items: list[IngestItem], *, limits: images.ImageLimits, fps: float = 1.0
) -> Iterator[IngestItem | IngestResult]:
    """Replace each zip archive by its image entries (folder name → label), one entry at a time, and
    each video by its frames sampled at `fps`.

    A refused archive becomes one error result; nothing of it is imported. Entries are decompressed
    lazily, so memory holds one entry, not the archive's contents.
    """
    for item in items:
        if isinstance(item.data, videos.VideoSource):
            yield from video_frames_expand(item, fps=fps)
            continue
        if not zips.is_zip(item.data):
            yield item
            continue
        try:
            members = zips.iter_zip(item.data, limits=limits)
        except images.UploadError as exc:
            yield IngestResult(filename=item.filename, error_code=exc.code, error_message=exc.message)
            continue
        empty = True
        while True:
            try:
                m = next(members)
            except StopIteration:
                break
            except images.UploadError as exc:  # corruption found while decompressing
                yield IngestResult(filename=item.filename, error_code=exc.code, error_message=exc.message)
                break
            empty = False
            labels = list(item.labels) + ([m.label] if m.label else [])
            if m.error is not None:
                yield IngestResult(filename=m.path, error_code=m.error.code, error_message=m.error.message)
            else:
                yield IngestItem(filename=m.path, data=m.data, labels=labels)
        if empty:
            yield IngestResult(
                filename=item.filename,
                error_code="invalid",
                error_message="The archive holds no images (hidden files, __MACOSX and non-image files are skipped).",
            )


def _existing(project: Project, sha: str) -> Sample | None:
    return Sample.objects.filter(project=project, sha256=sha).first()


def sample_ingest_one(
    *,
    project: Project,
    item: IngestItem,
    user: AbstractBaseUser | None,
    source: str,
    limits: images.ImageLimits,
) -> IngestResult:
    item.filename = clean_text(item.filename)[-255:]
    result = IngestResult(filename=item.filename)
    try:
        image = images.validate_image(item.data, limits=limits, filename=item.filename)
        # A savepoint: labels of a rejected item are not left behind.
        with transaction.atomic():
            label_objs = labels_get_or_create(project=project, names=item.labels) if item.labels else []
            _check_label_count(project, label_objs)
    except images.UploadError as exc:
        result.error_code, result.error_message = exc.code, exc.message
        return result
    except ValidationError as exc:
        result.error_code, result.error_message = "invalid", " ".join(exc.messages)
        return result

    existing = _existing(project, image.sha256)
    if existing is None:
        sample_id = uuid.uuid4()
        ext = "jpg" if image.format == "jpeg" else ("tif" if image.format == "tiff" else image.format)
        image_name, thumb_name = sample_names(project_id=project.pk, sample_id=sample_id, ext=ext)
        thumb = images.make_thumbnail(image.image, size=limits.thumbnail_size)
        # Files first, then the row that points at them; if the row fails, the files go again.
        written = files_write([(image_name, image.data), (thumb_name, thumb)])
        try:
            with transaction.atomic():
                existing = Sample.objects.create(
                    id=sample_id,
                    project=project,
                    sha256=image.sha256,
                    image_name=image_name,
                    thumbnail_name=thumb_name,
                    filename=item.filename[-255:],
                    format=image.format,
                    width=image.width,
                    height=image.height,
                    size_bytes=len(image.data),
                    source=source,
                    uploaded_by=user,
                    video_sha256=item.video[0] if item.video else "",
                    video_time_ms=item.video[1] if item.video else None,
                )
        except IntegrityError:
            files_delete(written)
            existing = _existing(project, image.sha256)
            if existing is None:
                raise
            result.duplicate = True
        except BaseException:
            files_delete(written)
            raise
    else:
        result.duplicate = True
    if label_objs:
        existing = sample_labels_set(sample=existing, names=[lab.name for lab in label_objs], user=user, via=source)
    result.sample = existing
    return result


def samples_ingest(
    *,
    project: Project,
    items: list[IngestItem],
    user: AbstractBaseUser | None,
    source: str = Sample.Source.UPLOAD,
    fps: float = 1.0,
) -> IngestReport:
    """Validate, store and register a batch; each bad file fails only itself. Videos give their frames
    at `fps` (source "video", unless captured)."""
    limits = image_limits()
    report = IngestReport()
    new_ids: list = []
    for entry in expand_uploads(items, limits=limits, fps=fps):
        if isinstance(entry, IngestResult):
            report.results.append(entry)
            continue
        src = Sample.Source.VIDEO if entry.video and source != Sample.Source.CAPTURE else source
        result = sample_ingest_one(project=project, item=entry, user=user, source=src, limits=limits)
        report.results.append(result)
        if result.ok and not result.duplicate:
            new_ids.append(result.sample.pk)
    if new_ids:
        transaction.on_commit(lambda: samples_added.send(sender=Sample, project_id=project.pk, sample_ids=new_ids))
    return report


def sample_delete(*, sample: Sample) -> None:
    names = [sample.image_name, sample.thumbnail_name]
    project_id, was_labeled = sample.project_id, sample.labeled_at is not None
    with transaction.atomic():
        sample.delete()
        # Files go only once the row is surely gone, so a rollback never leaves a row without its file.
        transaction.on_commit(lambda: files_delete(names))
        if was_labeled:
            transaction.on_commit(lambda: labels_changed.send(sender=Sample, project_id=project_id))


def _safe_folder(name: str) -> str:
    """A label name as one zip path segment: no separators, no dot-only names."""
    cleaned = name.replace("/", "_").replace("\\", "_").strip(". ")
    return cleaned or "_"


def project_export_zip(*, project: Project, fileobj) -> int:
    """Write the dataset as a zip into fileobj: a folder per label (single-label) or labels.csv
    (multi-label), unlabeled images under unlabeled/, and samples.csv. Returns the sample count."""
    import csv
    import tempfile
    import zipfile

    from django.core.files.storage import default_storage

    samples = Sample.objects.filter(project=project).prefetch_related("labels").order_by("created", "id")
    # The CSVs and the zip's central directory grow with the project: they go to temporary files,
    # not memory (what remains in memory is one chunk of rows and one image).
    index = tempfile.TemporaryFile("w+", newline="", encoding="utf-8")
    index_writer = csv.writer(index)
    index_writer.writerow(["id", "sha256", "filename", "labels", "created"])
    multi = tempfile.TemporaryFile("w+", newline="", encoding="utf-8")
    multi_writer = csv.writer(multi)
    multi_writer.writerow(["filename", "labels"])
    count = 0
    from labeling.zips import DirectoryOnDiskZipFile

    with DirectoryOnDiskZipFile(fileobj, "w", compression=zipfile.ZIP_STORED) as zf:
        for sample in samples.iterator(chunk_size=500):
            names = sorted(label.name for label in sample.labels.all())
            ext = sample.image_name.rsplit(".", 1)[-1]
            # The sample id keeps names unique; the label folder name is made path-safe.
            base = f"{sample.pk}.{ext}"
            if project.is_multi_label:
                path = f"images/{base}"
                multi_writer.writerow([csv_cell(path), csv_cell(";".join(names))])
            else:
                folder = _safe_folder(names[0]) if names else "unlabeled"
                path = f"{folder}/{base}"
            with default_storage.open(sample.image_name, "rb") as f:
                zf.writestr(path, f.read())
            index_writer.writerow(
                [str(sample.pk), sample.sha256, csv_cell(path), csv_cell(";".join(names)), sample.created.isoformat()]
            )
            count += 1
        for name, handle in (("samples.csv", index), ("labels.csv", multi)):
            if name == "labels.csv" and not project.is_multi_label:
                continue
            handle.seek(0)
            with zf.open(name, "w", force_zip64=True) as out:
                while chunk := handle.read(1 << 16):
                    out.write(chunk.encode("utf-8"))
    index.close()
    multi.close()
    return count


def samples_purge_chunk(project_id, limit: int) -> int:
    """Delete up to ``limit`` samples of a project being deleted (with their labels, events, leases,
    vectors by cascade); the project purge calls this until it answers 0. Files go with the project."""
    chunk = list(Sample.objects.filter(project_id=project_id).values_list("pk", flat=True)[:limit])
    if chunk:
        Sample.objects.filter(pk__in=chunk).delete()
    return len(chunk)
