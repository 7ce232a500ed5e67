"""The invoke API's contract: query filters, image bodies and the answers, as DRF serializers the
views validate and render with, and the schema is generated from."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers as s

from config.api import render
from config.schema import ErrorDetailSerializer, ItemErrorSerializer
from labeling.serializers import (
    VIDEO_BODY,
    Base64Field,
    check_item_count,
    check_video_count,
    data_content,
    file_content,
    fps_field,
    is_file_body,
)
from training.serializers import (
    ExplanationSerializer,
    MultiLabelResultSerializer,
    SingleLabelResultSerializer,
    render_result,
)

# --- query ---------------------------------------------------------------------------------------


class InvokeFilterSerializer(s.Serializer):
    top_k = s.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=10_000,
        help_text="Return only the N most confident labels (default all).",
    )
    format = s.ChoiceField(
        choices=["json", "series", "frames"],
        required=False,
        default="json",
        help_text="`series`: the engine output format (a video: one entry per label segment, with its start and "
        'stop times). `frames`: `{"frames": [{"timeMs", <result object>}...]}`, a video\'s per-frame results '
        "(an image is one frame at 0 ms); a video answers so by default too.",
    )
    fps = fps_field()
    pretrained = s.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=20,
        help_text="With format=series: add the N best ImageNet labels.",
    )
    explain = s.BooleanField(
        required=False,
        default=False,
        help_text="Add an occlusion heat map of the top label (slow: at most PICTOR_MAX_EXPLAIN images per request).",
    )
    capture = s.BooleanField(
        required=False,
        default=False,
        help_text="Store the image as an unlabeled sample of the project; adds `sample_id`.",
    )
    model = s.UUIDField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Answer with this model version instead of the deployed one.",
    )

    def validate(self, attrs):
        attrs["format"] = attrs.get("format") or "json"
        return attrs


class PretrainedFilterSerializer(s.Serializer):
    top_k = s.IntegerField(
        required=False, default=5, min_value=1, max_value=1000, help_text="How many ImageNet labels."
    )


# --- bodies --------------------------------------------------------------------------------------


class InvokeItemSerializer(s.Serializer):
    data = Base64Field(help_text="The image file, base64 (a `data:` URL is accepted too).")


class InvokeBatchSerializer(s.Serializer):
    items = InvokeItemSerializer(
        many=True,
        allow_empty=False,
        help_text="At most PICTOR_MAX_ITEMS images (default 64); more answer 413 `too_large`.",
    )

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            check_item_count(len(data["items"]))
        return super().to_internal_value(data)


class InvokeMultipartSerializer(s.Serializer):
    file = s.ListField(
        child=s.FileField(allow_empty_file=True),
        allow_empty=False,
        help_text="One or more image files (repeat the part); at most PICTOR_MAX_ITEMS.",
    )


PRETRAINED_REQUEST = {
    "application/json": PolymorphicProxySerializer(
        component_name="Invoke",
        serializers=[InvokeItemSerializer, InvokeBatchSerializer],
        resource_type_field_name=None,
        many=False,
    ),
    "multipart/form-data": InvokeMultipartSerializer,
}
INVOKE_REQUEST = {**PRETRAINED_REQUEST, "video/*": VIDEO_BODY}


def invoke_files(request) -> list[tuple[str, bytes]]:
    """The request's images as (filename, bytes), validated by the serializers above; a video comes as
    (filename, labeling.videos.VideoSource), at most one per request."""
    if is_file_body(request):
        files = request.FILES.getlist("file")
        check_item_count(len(files))
        form = InvokeMultipartSerializer(data={"file": files})
        form.is_valid(raise_exception=True)
        out = [(f.name or "", file_content(f)) for f in form.validated_data["file"]]
        check_video_count([c for _, c in out])
        return out
    body = request.data
    if not isinstance(body, dict):
        raise s.ValidationError({"non_field_errors": ["Send a JSON object with 'data' or 'items'."]})
    form = InvokeBatchSerializer(data=body) if "items" in body else InvokeItemSerializer(data=body)
    form.is_valid(raise_exception=True)
    raw = form.validated_data["items"] if "items" in body else [form.validated_data]
    out = [(f"item-{i}", data_content(item["data"], filename=f"item-{i}")) for i, item in enumerate(raw)]
    check_video_count([c for _, c in out])
    return out


# --- answers -------------------------------------------------------------------------------------


class PointSerializer(s.Serializer):
    x = s.FloatField()
    y = s.FloatField()


class SeriesObjectSerializer(s.Serializer):
    type = s.CharField()
    label = s.CharField()
    confidence = s.FloatField()
    libraryId = s.CharField(required=False, help_text="The project id; absent on pretrained labels.")
    uri = s.URLField(required=False, help_text="The stored image, when it is stored.")
    boundingPoly = PointSerializer(many=True, help_text="The full frame: whole-image labels.")


class SeriesEntrySerializer(s.Serializer):
    startTimeMs = s.IntegerField()
    stopTimeMs = s.IntegerField()
    libraryId = s.CharField(required=False)
    object = SeriesObjectSerializer()


class VideoAboutSerializer(s.Serializer):
    sha256 = s.CharField(help_text="The video file's SHA-256 (its frames' samples carry it too).")
    duration_ms = s.IntegerField()
    width = s.IntegerField()
    height = s.IntegerField()
    fps = s.FloatField(help_text="The sampling rate used.")
    frames = s.IntegerField(help_text="How many frames were sampled and classified.")


class SeriesResultSerializer(s.Serializer):
    series = SeriesEntrySerializer(
        many=True,
        help_text="Trained (library) labels first, then pretrained ones. A video: one entry per label segment "
        "(consecutive sampled frames with that label): startTimeMs = its first frame's time, stopTimeMs = its last "
        "frame's time plus one sampling interval, confidence = the mean over the segment.",
    )
    sample_id = s.UUIDField(required=False)
    explanation = ExplanationSerializer(required=False)
    video = VideoAboutSerializer(required=False, help_text="Present when the file was a video.")


class SingleLabelFrameSerializer(SingleLabelResultSerializer):
    timeMs = s.IntegerField(help_text="The frame's time in the video (k / fps).")


class MultiLabelFrameSerializer(MultiLabelResultSerializer):
    timeMs = s.IntegerField(help_text="The frame's time in the video (k / fps).")


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="FrameResult",
        serializers=[SingleLabelFrameSerializer, MultiLabelFrameSerializer],
        resource_type_field_name=None,
        many=False,
    )
)
class FrameField(s.Field):
    def to_representation(self, value):
        serializer = MultiLabelFrameSerializer if "present" in value else SingleLabelFrameSerializer
        return serializer(value).data


class FramesResultSerializer(s.Serializer):
    frames = s.ListField(child=FrameField(), help_text="One result object per sampled frame, in time order.")
    video = VideoAboutSerializer(required=False, help_text="Present when the file was a video.")


class PretrainedScoreSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()
    index = s.IntegerField(help_text="The ImageNet-1k class index.")


class PretrainedModelSerializer(s.Serializer):
    id = s.CharField()
    version = s.CharField()


class PretrainedResultSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()
    labels = PretrainedScoreSerializer(many=True)
    model = PretrainedModelSerializer()


def _error_entry(item) -> dict:
    return {"error": {"code": item.error.code, "message": item.error.message}, "filename": item.filename}


def render_answer(body: dict) -> dict:
    """One image's answer (a result object, a series, or a pretrained result) through its serializer."""
    if "series" in body:
        return render(SeriesResultSerializer, body)
    if "frames" in body:
        return render(FramesResultSerializer, body)
    if isinstance(body.get("model"), dict) and body["model"].get("id") == "imagenet":
        return render(PretrainedResultSerializer, body)
    return render_result(body)


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="InvokeBatchEntry",
        serializers=[
            SingleLabelResultSerializer,
            MultiLabelResultSerializer,
            SeriesResultSerializer,
            FramesResultSerializer,
            ItemErrorSerializer,
        ],
        resource_type_field_name=None,
        many=False,
    )
)
class InvokeEntryField(s.Field):
    """(item, answer body or None): the answer, or the image's error."""

    def to_representation(self, value):
        item, body = value
        return _error_entry(item) if item.error is not None else render_answer(body)


class InvokeBatchResultSerializer(s.Serializer):
    results = s.ListField(child=InvokeEntryField(), help_text="One entry per image, in order.")


class InvokeFailedSerializer(s.Serializer):
    error = ErrorDetailSerializer()
    results = s.ListField(child=InvokeEntryField(), required=False, help_text="Every image's error, in order.")


INVOKE_OK = PolymorphicProxySerializer(
    component_name="InvokeResponse",
    serializers=[
        SingleLabelResultSerializer,
        MultiLabelResultSerializer,
        SeriesResultSerializer,
        FramesResultSerializer,
        InvokeBatchResultSerializer,
    ],
    resource_type_field_name=None,
    many=False,
)


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="PretrainedBatchEntry",
        serializers=[PretrainedResultSerializer, ItemErrorSerializer],
        resource_type_field_name=None,
        many=False,
    )
)
class PretrainedEntryField(InvokeEntryField):
    pass


class PretrainedBatchSerializer(s.Serializer):
    results = s.ListField(child=PretrainedEntryField())


class PretrainedFailedSerializer(s.Serializer):
    error = ErrorDetailSerializer()
    results = s.ListField(child=PretrainedEntryField(), required=False, help_text="Every image's error, in order.")


PRETRAINED_OK = PolymorphicProxySerializer(
    component_name="PretrainedResponse",
    serializers=[PretrainedResultSerializer, PretrainedBatchSerializer],
    resource_type_field_name=None,
    many=False,
)
