"""Invoke: validate images, pick the model, one forward pass for the batch, shape the answers."""

from __future__ import annotations

import base64
import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings

from config.api import ApiError
from config.sql import RowSelect, db_value

from labeling import images, videos
from labeling import services as labeling_services
from labeling.models import Sample
from projects.access import parse_uuid
from projects.keys import api_key_select, api_key_from_secret
from projects.models import Project
from training.models import ModelVersion

FULL_FRAME = [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 1, "y": 1}, {"x": 0, "y": 1}]


class NoModel(Exception):
    pass


class UnknownModel(Exception):
    pass


class TooLarge(ApiError):
    """More images than a request may carry (413 too_large)."""

    def __init__(self, message: str, *, limit_name: str, limit: int):
        super().__init__("too_large", message, 413, {limit_name: [f"at most {limit}"]})


def request_limits_check(*, count: int, explain: bool = False) -> None:
    """PICTOR_MAX_ITEMS images per request; with explain, PICTOR_MAX_EXPLAIN (explain costs seconds of CPU each)."""
    if count > settings.PICTOR_MAX_ITEMS:
        raise TooLarge(
            f"At most {settings.PICTOR_MAX_ITEMS} images per request (PICTOR_MAX_ITEMS); this one has {count}.",
            limit_name="items",
            limit=settings.PICTOR_MAX_ITEMS,
        )
    if explain and count > settings.PICTOR_MAX_EXPLAIN:
        raise TooLarge(
            f"Explain takes at most {settings.PICTOR_MAX_EXPLAIN} images per request (PICTOR_MAX_EXPLAIN); this one has {count}.",
            limit_name="explain",
            limit=settings.PICTOR_MAX_EXPLAIN,
        )


def capture_check(*, access) -> None:
    """?capture=true stores images: it needs a role that may upload (labeler and up) or a full-scope key.
    (The project's own capture setting is the admin's choice and applies to every caller.)"""
    from django.core.exceptions import PermissionDenied

    from projects.roles import Role

    if not access.can(Role.LABELER):
        raise PermissionDenied(
            "?capture=true stores the image as a sample: it needs the labeler role or an API key with the full scope. "
            "To capture the production traffic of invoke keys, an admin sets the project's capture setting (all or uncertain)."
        )


# Decoded images kept after their batch ran (for ?pretrained=, which resizes to 224 px anyway).
_KEPT_SIDE = 512


def _release_pixels(item: InvokeItem) -> None:
    img = item.image.image
    if max(img.size) > _KEPT_SIDE:
        small = img.copy()
        small.thumbnail((_KEPT_SIDE, _KEPT_SIDE))
        item.image = replace(item.image, image=small)


@dataclass
class InvokeItem:
    filename: str
    data: bytes
    image: images.ValidatedImage | None = None
    error: images.UploadError | None = None
    result: dict = field(default_factory=dict)


def decode_min_side() -> int:
    """The shortest side any model's preprocessing resizes to (the largest backbone's crop): images
    are decoded once, at no more than this needs (JPEG DCT scaling), and every backbone resizes from it."""
    from training.ml import backbone as bb

    return bb.crop_size_for(max(spec.resolution for spec in bb.BACKBONES.values()))


def items_validate(items: list[InvokeItem]) -> None:
    limits = labeling_services.image_limits()
    side = decode_min_side()
    for item in items:
        try:
            item.image = images.validate_image(item.data, limits=limits, filename=item.filename, decode_min_side=side)
        except images.UploadError as exc:
            item.error = exc


# What invoke reads of a model version (its labels, thresholds, features, artifact) never changes
# under its id; only metrics and the deployed flags do. So each process keeps these fields by id and a
# request asks the database only which id answers (one indexed query, never cached): a deploy takes
# effect on the next request, in every process. The other fields stay deferred (read fresh if used).
_MODEL_FIELDS = ("id", "project_id", "version", "mode", "features", "label_names", "thresholds", "artifact_name")
_MODELS_MAX = 64
_models_lock = threading.Lock()
_models: OrderedDict = OrderedDict()


def _model_version(*, pk, project: Project) -> ModelVersion:
    with _models_lock:
        values = _models.get(pk)
        if values is not None:
            _models.move_to_end(pk)
    if values is None:
        row = ModelVersion.objects.filter(pk=pk).values_list(*_MODEL_FIELDS)[:1]
        values = next(iter(row), None)
        if values is None:  # deleted since the id was read
            raise UnknownModel(str(pk))
        with _models_lock:
            _models[pk] = values
            while len(_models) > _MODELS_MAX:
                _models.popitem(last=False)
    # A fresh instance per request (callers may set attributes on it); the JSON lists are copied.
    model = ModelVersion.from_db(ModelVersion.objects.db, list(_MODEL_FIELDS), copy.deepcopy(values))
    model.project = project  # this request's row: its task and capture settings are current
    return model


_DEPLOYED = RowSelect(
    [("m", ModelVersion, ["id"])],
    joins=lambda q, meta: "",
    where=lambda q, meta: (
        f"{q('m')}.{q(meta('m').get_field('project').column)} = %s "
        f"AND {q('m')}.{q(meta('m').get_field('deployed').column)} = %s"
    ),
)


def _deployed_id(*, project: Project):
    """The id of the project's deployed version, or None, as one plain indexed SELECT (building it
    through the ORM costs several times what the database takes). A keyed invoke reads it with its
    key instead (invoke_key_from_secret)."""
    found = _DEPLOYED.fetch([db_value(ModelVersion, "project", project.pk), db_value(ModelVersion, "deployed", True)])
    return found[0].pk if found else None


UNREAD = object()  # "the deployed id was not read with the key": model_for_invoke reads it itself

_KEY_WITH_DEPLOYED = api_key_select(
    tables=[("m", ModelVersion, ["id"])],
    joins=lambda q, meta: (
        f"LEFT JOIN {q(meta('m').db_table)} {q('m')} "
        f"ON {q('m')}.{q(meta('m').get_field('project').column)} = {q('k')}.{q(meta('k').get_field('project').column)} "
        f"AND {q('m')}.{q(meta('m').get_field('deployed').column)} = %s"
    ),
)


def invoke_key_from_secret(*, secret: str):
    """``projects.keys.api_key_from_secret`` that reads the project's deployed version id in the same query
    (every invoke needs it): on ``key.deployed_model_id``, None when nothing is deployed. The partial
    unique index allows one deployed version per project, so the join adds at most one row."""
    key = api_key_from_secret(
        secret=secret, select=_KEY_WITH_DEPLOYED, join_params=[db_value(ModelVersion, "deployed", True)]
    )
    deployed = key.joined_rows[0]
    key.deployed_model_id = deployed.pk if deployed is not None else None
    return key


def model_for_invoke(*, project: Project, model_id: str | None, deployed_id=UNREAD) -> ModelVersion:
    """The version named by `model_id` (UnknownModel if it is not this project's), else the deployed one
    (NoModel if none is). `deployed_id`: the deployed id when this request already read it (with its key)."""
    qs = ModelVersion.objects.filter(project=project).order_by()
    if model_id:
        pk = parse_uuid(model_id)
        found = next(iter(qs.filter(pk=pk).values_list("pk", flat=True)[:1]), None) if pk is not None else None
        if found is None:
            raise UnknownModel(model_id)
    else:
        found = _deployed_id(project=project) if deployed_id is UNREAD else deployed_id
        if found is None:
            raise NoModel()
    try:
        return _model_version(pk=found, project=project)
    except UnknownModel:  # deleted between the two queries
        if model_id:
            raise
        raise NoModel() from None


def result_object(*, model: ModelVersion, probs: np.ndarray, top_k: int | None) -> dict:
    ref = {"id": str(model.pk), "version": model.version, "mode": model.mode}
    order = np.argsort(-probs)
    if model.project.is_multi_label:
        th = model.thresholds or [0.5] * len(model.label_names)
        labels = [
            {
                "label": model.label_names[i],
                "confidence": round(float(probs[i]), 6),
                "threshold": round(float(th[i]), 6),
                "present": bool(probs[i] >= th[i]),
            }
            for i in order
        ]
        present = [x["label"] for x in labels if x["present"]]
        return {"present": present, "labels": labels[:top_k] if top_k else labels, "model": ref}
    labels = [{"label": model.label_names[i], "confidence": round(float(probs[i]), 6)} for i in order]
    best = labels[0]
    return {
        "label": best["label"],
        "confidence": best["confidence"],
        "labels": labels[:top_k] if top_k else labels,
        "model": ref,
    }


def _wants_capture(project: Project, requested: bool, probs: np.ndarray) -> bool:
    if requested or project.capture == Project.Capture.ALL:
        return True
    return project.capture == Project.Capture.UNCERTAIN and float(np.max(probs)) < project.capture_threshold


def invoke(
    *,
    project: Project,
    items: list[InvokeItem],
    model_id: str | None = None,
    top_k: int | None = None,
    capture: bool = False,
    explain: bool = False,
    user=None,
    deployed_id=UNREAD,
) -> ModelVersion:
    """Fill each valid item's `result`; raises NoModel / UnknownModel before touching images, TooLarge
    beyond the per-request limits. Images are decoded and run in batches of PICTOR_INVOKE_BATCH, so
    peak memory follows the batch, not the request. `deployed_id`: as for model_for_invoke."""
    from inference.predictors import predict, predictor_get

    model = model_for_invoke(project=project, model_id=model_id, deployed_id=deployed_id)
    request_limits_check(count=len(items), explain=explain)
    step = max(1, settings.PICTOR_INVOKE_BATCH)
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        items_validate(chunk)
        valid = [i for i in chunk if i.error is None]
        if not valid:
            continue
        prediction = predict(model, [i.image.image for i in valid])
        for item, probs in zip(valid, prediction.probs):
            item.result = result_object(model=model, probs=probs, top_k=top_k)
            if _wants_capture(project, capture, probs):
                report = labeling_services.samples_ingest(
                    project=project,
                    items=[labeling_services.IngestItem(filename=item.filename or "capture", data=item.data)],
                    user=user,
                    source=Sample.Source.CAPTURE,
                )
                (r,) = report.results
                if r.ok:
                    item.result["sample_id"] = str(r.sample.pk)
            if explain:
                from training.ml.explain import heatmap_png, occlusion_map

                predictor = predictor_get(model)
                cls = int(np.argmax(probs))
                heat = occlusion_map(predictor.predict, item.image.image, cls)
                item.result["explanation"] = {
                    "method": "occlusion",
                    "label": model.label_names[cls],
                    "heatmap_png": base64.b64encode(heatmap_png(item.image.image, heat)).decode(),
                }
            _release_pixels(item)
    return model


def stored_uri(*, project: Project, sha256: str, build_uri) -> str | None:
    sample = Sample.objects.filter(project=project, sha256=sha256).only("pk").first()
    return build_uri(sample.pk) if sample else None


def series(*, project: Project, result: dict, uri: str | None, pretrained: list | None) -> dict:
    """The engine output format (seed 000): one whole-frame entry per label, library labels first."""
    pid = str(project.pk)

    def entry(label: str, confidence: float, library: bool) -> dict:
        obj = {"type": "object", "label": label, "confidence": confidence, "boundingPoly": FULL_FRAME}
        if library:
            obj["libraryId"] = pid
        if uri:
            obj["uri"] = uri
        out = {"startTimeMs": 0, "stopTimeMs": 0, "object": obj}
        if library:
            out["libraryId"] = pid
        return out

    entries = [entry(x["label"], x["confidence"], True) for x in result.get("labels", [])]
    for _index, name, p in pretrained or []:
        entries.append(entry(name, round(float(p), 6), False))
    return {"series": entries}


def pretrained_topk(images: list, k: int) -> list:
    from training.embedders import embedder_get

    return embedder_get("lite0").imagenet_topk(images, k=k)


def sample_prediction(sample: Sample) -> dict | None:
    """The deployed model's answer for a stored sample (None when nothing is deployed)."""
    from django.core.files.storage import default_storage

    try:
        model = model_for_invoke(project=sample.project, model_id=None)
    except NoModel:
        return None
    with default_storage.open(sample.image_name, "rb") as f:
        item = InvokeItem(filename=sample.filename, data=f.read())
    invoke(project=sample.project, items=[item], model_id=str(model.pk))
    return item.result or None


# --- video (shared/API.md "Video"): decoding in labeling/videos.py, segments in inference/video.py ---

# Frames for prediction are converted at most this short side (the predictors crop 224-300 px anyway);
# captured frames keep their full size, as captured images do.
_VIDEO_SHORT_SIDE = 448


@dataclass
class VideoItem:
    filename: str
    source: videos.VideoSource
    error: videos.VideoError | None = None
    info: videos.VideoInfo | None = None
    frames: list[dict] = field(default_factory=list)  # full result objects with "timeMs" (and "sample_id")
    pretrained: list[dict] | None = None  # per frame: {ImageNet label: confidence} of the N best


def video_invoke(
    *,
    project: Project,
    item: VideoItem,
    model_id: str | None = None,
    fps: float = 1.0,
    capture: bool = False,
    pretrained: int = 0,
    user=None,
) -> ModelVersion:
    """Classify a video's frames sampled at `fps`, PICTOR_INVOKE_BATCH at a time, as they are decoded.
    Capture (asked for, or the project's setting) stores the chosen frames as samples, once the whole
    video has decoded. A bad video sets `item.error` (nothing stored)."""
    from inference.predictors import predict

    model = model_for_invoke(project=project, model_id=model_id)
    limits = labeling_services.video_limits()
    may_capture = capture or project.capture != Project.Capture.OFF
    step = max(1, settings.PICTOR_INVOKE_BATCH)
    shown: list[int] = []  # per frame: the index of the frame whose picture it is (itself, or earlier)
    staged: list[int] = []  # frames kept for capture, in the stage's order
    item.pretrained = [] if pretrained else None

    def run(batch: list[videos.Frame]) -> None:
        fresh = [f for f in batch if not f.repeat]
        probs = iter(predict(model, [f.image for f in fresh]).probs if fresh else [])
        tops = iter(pretrained_topk([f.image for f in fresh], pretrained) if fresh and pretrained else [])
        for frame in batch:
            if frame.repeat:  # the same picture as the frame before: the same answer
                item.frames.append({**item.frames[-1], "timeMs": frame.time_ms})
                shown.append(shown[-1])
                if item.pretrained is not None:
                    item.pretrained.append(item.pretrained[-1])
                continue
            p = next(probs)
            item.frames.append({"timeMs": frame.time_ms, **result_object(model=model, probs=p, top_k=None)})
            shown.append(len(item.frames) - 1)
            if item.pretrained is not None:
                item.pretrained.append({name: round(float(c), 6) for _i, name, c in next(tops)})
            if stage is not None and _wants_capture(project, capture, p):
                stage.add(frame)
                staged.append(len(item.frames) - 1)

    stage = videos.FrameStage() if may_capture else None
    try:
        item.info = videos.video_probe(item.source, fps=fps, limits=limits)
        batch: list[videos.Frame] = []
        short_side = None if may_capture else _VIDEO_SHORT_SIDE
        for frame in videos.video_frames(item.source, info=item.info, limits=limits, short_side=short_side):
            batch.append(frame)
            if len(batch) >= step:
                run(batch)
                batch = []
        run(batch)
        if stage is not None:
            captured = {}
            for index, (time_ms, data) in zip(staged, stage):
                ingest = labeling_services.IngestItem(
                    filename=videos.frame_filename(item.filename or "capture", time_ms),
                    data=data,
                    video=(item.info.sha256, time_ms),
                )
                report = labeling_services.samples_ingest(
                    project=project, items=[ingest], user=user, source=Sample.Source.CAPTURE
                )
                (r,) = report.results
                if r.ok:
                    captured[index] = str(r.sample.pk)
            for i, frame in enumerate(item.frames):
                if shown[i] in captured:
                    frame["sample_id"] = captured[shown[i]]
    except videos.VideoError as exc:
        item.error, item.frames, item.pretrained = exc, [], None
    finally:
        if stage is not None:
            stage.close()
    return model


def video_answer(*, project: Project, item: VideoItem, format: str, top_k: int | None, build_uri) -> dict:
    """A classified video as answered: its label segments (`series`) or its frames (otherwise)."""
    from inference import video

    info = item.info
    about = {
        "sha256": info.sha256,
        "duration_ms": info.duration_ms,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "frames": len(item.frames),
    }
    if format == "series":

        def uri_for(index: int) -> str | None:
            sample_id = item.frames[index].get("sample_id")
            return build_uri(sample_id) if sample_id else None

        entries = video.video_series(
            library_id=str(project.pk),
            frames=item.frames,
            interval_ms=info.interval_ms,
            pretrained=item.pretrained,
            uri_for=uri_for,
        )
        return {"series": entries, "video": about}
    return {"frames": video.frames_answer(item.frames, top_k=top_k), "video": about}
