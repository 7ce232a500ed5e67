"""The samples and labels API's contract: input, filter and output serializers.

The views validate with these and render with these, and the OpenAPI schema is generated from the
same classes, so the documentation cannot drift from what runs.
"""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers as s

from config.api import ApiError
from config.schema import ErrorDetailSerializer, ItemErrorSerializer
from labeling import selectors, videos
from labeling.models import Sample

# --- fields --------------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.BYTE)
class Base64Field(s.Field):
    """A file sent as base64 text (a browser's `data:` URL is accepted too) → bytes."""

    default_error_messages = {"invalid": "Not valid base64.", "blank": "This field may not be blank."}

    def to_internal_value(self, data) -> bytes:
        if not isinstance(data, str):
            self.fail("invalid")
        if data.startswith("data:") and "," in data:
            data = data.split(",", 1)[1]
        if not data:
            self.fail("blank")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            self.fail("invalid")

    def to_representation(self, value):
        return base64.b64encode(value).decode()


class CleanTextField(s.CharField):
    """Text with control characters (NUL and friends) dropped rather than refused: file names, filters."""

    def to_internal_value(self, data) -> str:
        from labeling.services import clean_text

        return clean_text(super().to_internal_value(data))


class LabelNamesField(s.ListField):
    """Label names; a single string is taken as a list of one."""

    child = s.CharField(allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data):
        return super().to_internal_value([data] if isinstance(data, str) else data)


def check_item_count(count: int) -> None:
    """More images than one request may carry → 413 too_large, naming the limit (API.md "Limits")."""
    limit = settings.PICTOR_MAX_ITEMS
    if count > limit:
        raise ApiError(
            "too_large",
            f"At most {limit} images per request; this one has {count}.",
            413,
            {"items": [f"at most {limit}"]},
        )


def file_content(f) -> bytes | videos.VideoSource:
    """An uploaded file's bytes; a video (by content, or declared by its media type or name) stays a
    file, so it is decoded from the upload's temporary file and never read whole into memory."""
    f.seek(0)
    head = f.read(64)
    f.seek(0)
    if videos.is_video(head, filename=f.name or "", content_type=getattr(f, "content_type", "") or ""):
        return videos.VideoSource(file=f.file, filename=f.name or "", size=f.size)
    return f.read()


def data_content(data: bytes, *, filename: str = "") -> bytes | videos.VideoSource:
    """Base64 data in JSON: a video when its bytes are one."""
    if videos.container_of(data[:64]) is not None:
        return videos.VideoSource.from_bytes(data, filename=filename)
    return data


def check_video_count(contents) -> None:
    """One video per request: its frames, not the request's item count, are what costs."""
    count = sum(isinstance(c, videos.VideoSource) for c in contents)
    if count > 1:
        raise ApiError(
            "too_large",
            f"At most one video per request; this one has {count}.",
            413,
            {"videos": ["at most 1"]},
        )


def is_file_body(request) -> bool:
    """Multipart parts, or a raw video body (labeling.parsers.VideoParser gives it as one `file`)."""
    return request.content_type.startswith(("multipart/form-data", "video/"))


def validate_fps(value: float) -> float:
    limit = settings.PICTOR_VIDEO_MAX_FPS
    if value > limit:
        raise s.ValidationError(f"At most {limit:g} frames per second (PICTOR_VIDEO_MAX_FPS).")
    return value


def fps_field() -> s.FloatField:
    return s.FloatField(
        required=False,
        default=1.0,
        min_value=0.01,
        validators=[validate_fps],
        help_text="Videos: frames sampled per second (default 1; at most PICTOR_VIDEO_MAX_FPS, default 10).",
    )


VIDEO_BODY = OpenApiTypes.BINARY  # a raw MP4, MOV, WebM or MKV body (Content-Type: video/...)


# --- uploads (POST .../samples) ------------------------------------------------------------------


class UploadItemSerializer(s.Serializer):
    data = Base64Field(help_text="The image file, base64 (a `data:` URL is accepted too).")
    labels = LabelNamesField(required=False, default=list, help_text="Label names; new names are created.")
    filename = CleanTextField(required=False, allow_blank=True, max_length=255)


def _items_limit_text() -> str:
    return "At most PICTOR_MAX_ITEMS images (default 64) per request; more answer 413 `too_large`."


class UploadBatchSerializer(s.Serializer):
    items = UploadItemSerializer(many=True, allow_empty=False, help_text=_items_limit_text())

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            check_item_count(len(data["items"]))
        return super().to_internal_value(data)


class UploadMultipartSerializer(s.Serializer):
    file = s.ListField(
        child=s.FileField(allow_empty_file=True),
        allow_empty=False,
        help_text="One or more image files (repeat the part). " + _items_limit_text(),
    )
    label = s.ListField(
        child=s.CharField(allow_blank=True),
        required=False,
        default=list,
        help_text="Labels for every file (repeatable).",
    )

    def validate_file(self, value):
        check_item_count(len(value))
        return value


UPLOAD_JSON = PolymorphicProxySerializer(
    component_name="SampleUpload",
    serializers=[UploadItemSerializer, UploadBatchSerializer],
    resource_type_field_name=None,
    many=False,
)
UPLOAD_REQUEST = {
    "application/json": UPLOAD_JSON,
    "multipart/form-data": UploadMultipartSerializer,
    "video/*": VIDEO_BODY,
}


class UploadFilterSerializer(s.Serializer):
    fps = fps_field()


def uploaded_files(request) -> list[dict]:
    """The request's images as [{"filename", "data", "labels"}], validated by the serializers above.

    Multipart: repeated `file` parts (+ `label` parts for all). JSON: one item, or `{"items": [...]}`.
    """
    if is_file_body(request):
        files = request.FILES.getlist("file")
        check_item_count(len(files))
        form = UploadMultipartSerializer(data={"file": files, "label": request.data.getlist("label")})
        form.is_valid(raise_exception=True)
        labels = [v for v in form.validated_data["label"] if v.strip()]
        out = [
            {"filename": f.name or "", "data": file_content(f), "labels": list(labels)}
            for f in form.validated_data["file"]
        ]
        check_video_count([x["data"] for x in out])
        return out
    body = request.data
    if not isinstance(body, dict):
        raise s.ValidationError({"non_field_errors": ["Send a JSON object with 'data' or 'items'."]})
    if "items" in body:
        form = UploadBatchSerializer(data=body)
        form.is_valid(raise_exception=True)
        raw = form.validated_data["items"]
    else:
        form = UploadItemSerializer(data=body)
        form.is_valid(raise_exception=True)
        raw = [form.validated_data]
    out = []
    for i, item in enumerate(raw):
        name = item.get("filename") or f"item-{i}"
        out.append(
            {"filename": name, "data": data_content(item["data"], filename=name), "labels": item.get("labels") or []}
        )
    check_video_count([x["data"] for x in out])
    return out


# --- filters -------------------------------------------------------------------------------------


class SampleFilterSerializer(s.Serializer):
    labeled = s.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Only labeled (true) or only unlabeled (false) samples.",
    )
    label = CleanTextField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="Only samples with this label (by name).",
    )
    video = s.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        help_text="Only the frames of this video (its sha256), in time order.",
    )
    page = s.IntegerField(
        required=False,
        min_value=1,
        help_text="Page number, from 1 (an offset: deep pages of a large project are slow; follow `next`).",
    )
    page_size = s.IntegerField(
        required=False, min_value=1, max_value=500, help_text="Results per page (default 50, at most 500)."
    )
    cursor = s.CharField(
        required=False,
        max_length=200,
        help_text="Keyset position from a `next` or `previous` link: every page is as fast as the first.",
    )


class NextFilterSerializer(s.Serializer):
    count = s.IntegerField(
        required=False, default=1, min_value=1, max_value=100, help_text="How many samples, 1 to 100."
    )


# --- inputs --------------------------------------------------------------------------------------


class LabelCreateSerializer(s.Serializer):
    name = s.CharField(max_length=200, help_text="A new label name; an existing name answers 409 `conflict`.")


class SampleLabelsSerializer(s.Serializer):
    labels = s.ListField(
        child=s.CharField(allow_blank=True, trim_whitespace=False),
        allow_empty=True,
        help_text="Label names (single-label projects: one, or [] to clear).",
    )


# --- outputs -------------------------------------------------------------------------------------


class LabelSerializer(s.Serializer):
    id = s.UUIDField()
    name = s.CharField()


class ImagenetMappingSerializer(s.Serializer):
    classes = s.ListField(child=s.CharField(), help_text="The ImageNet-1k classes the name means (WordNet hyponyms).")
    indices = s.ListField(child=s.IntegerField(), help_text="Their indices in ImageNet-1k's output order.")
    wordnet_id = s.CharField(help_text='The WordNet 3.0 noun synset chosen, e.g. "n02206856".')
    definition = s.CharField(help_text="That sense's WordNet gloss.")
    ambiguous = s.BooleanField(help_text="Another common sense of the name means other classes; the first was taken.")
    other_senses = s.ListField(child=s.CharField(), help_text="Those other senses.")
    via = s.CharField(
        allow_null=True,
        help_text='The word whose classes these are when it is not the whole name: "boot" for "ankle boot" '
        '(the last word of a compound WordNet does not know), "t-shirt" for "T-shirt/top" (the first '
        'alternative that maps), "shoe" for "sneaker" (the closest broader sense with ImageNet classes).',
    )
    approximate = s.BooleanField(
        help_text="No ImageNet class is the name itself: a broader meaning stands in (via), so the zero-shot "
        "answer for this label is a rough one."
    )
    own_classes = s.IntegerField(
        help_text="How many of those classes the zero-shot model counts for this label: a class two labels "
        "share goes to the more specific one, and a label left with none keeps the project from a zero-shot model."
    )


class LabelListItemSerializer(LabelSerializer):
    imagenet = ImagenetMappingSerializer(
        allow_null=True,
        help_text="The ImageNet-1k classes the label name maps to through WordNet, null when it maps to none. "
        "When every label maps, a zero-shot model answers before any training.",
    )


class LabelListSerializer(s.Serializer):
    results = LabelListItemSerializer(many=True)


class SampleVideoSerializer(s.Serializer):
    sha256 = s.CharField(help_text="The SHA-256 of the video the frame was sampled from.")
    time_ms = s.IntegerField(help_text="Where in that video, in milliseconds.")


def _absolute(request, name: str, sample: Sample) -> str:
    url = reverse(name, kwargs={"project_id": sample.project_id, "sample_id": sample.pk})
    return request.build_absolute_uri(url) if request is not None else url


class SampleSerializer(s.Serializer):
    """Needs `request` in its context for the absolute URLs."""

    id = s.UUIDField(source="pk")
    sha256 = s.CharField()
    width = s.IntegerField()
    height = s.IntegerField()
    labels = s.SerializerMethodField()
    image_url = s.SerializerMethodField()
    thumbnail_url = s.SerializerMethodField()
    filename = s.CharField(allow_blank=True)
    source = s.ChoiceField(choices=Sample.Source.choices)
    video = s.SerializerMethodField()
    created = s.DateTimeField()

    @extend_schema_field(SampleVideoSerializer(allow_null=True))
    def get_video(self, sample) -> dict | None:
        if not sample.video_sha256:
            return None
        return SampleVideoSerializer({"sha256": sample.video_sha256, "time_ms": sample.video_time_ms}).data

    @extend_schema_field(s.ListField(child=s.CharField()))
    def get_labels(self, sample) -> list[str]:
        return selectors.sample_label_names(sample)

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, sample) -> str:
        return _absolute(self.context.get("request"), "api_sample_image", sample)

    @extend_schema_field(OpenApiTypes.URI)
    def get_thumbnail_url(self, sample) -> str:
        return _absolute(self.context.get("request"), "api_sample_thumbnail", sample)


class SamplePageSerializer(s.Serializer):
    count = s.IntegerField()
    next = s.URLField(allow_null=True)
    previous = s.URLField(allow_null=True)
    results = SampleSerializer(many=True)


class SampleCreatedSerializer(SampleSerializer):
    duplicate = s.BooleanField(help_text="The file was already in the project; this is its existing sample.")


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="SampleUploadEntry",
        serializers=[SampleCreatedSerializer, ItemErrorSerializer],
        resource_type_field_name=None,
        many=False,
    )
)
class UploadEntryField(s.Field):
    """One file's outcome (an IngestResult): the sample, or the file's error."""

    def to_representation(self, result):
        if result.ok:
            sample = result.sample
            sample.duplicate = result.duplicate
            return SampleCreatedSerializer(sample, context=self.context).data
        return {"error": {"code": result.error_code, "message": result.error_message}, "filename": result.filename}


class SamplesCreatedSerializer(s.Serializer):
    samples = s.ListField(child=UploadEntryField(), help_text="In the order sent; a bad file fails only itself.")


class UploadFailedSerializer(s.Serializer):
    error = ErrorDetailSerializer()
    samples = s.ListField(child=UploadEntryField(), required=False, help_text="Every file's error, in order.")


class SuggestionSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()


class NextSampleSerializer(s.Serializer):
    id = s.UUIDField(source="sample.pk")
    image_url = s.SerializerMethodField()
    score = s.FloatField(
        allow_null=True,
        help_text="The active learner's score. null: not ranked (random or oldest order, or an image the "
        "learner has no features for yet, drawn at random in proportion to those).",
    )
    suggestion = SuggestionSerializer(allow_null=True)

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, item) -> str:
        return _absolute(self.context.get("request"), "api_sample_image", item.sample)


class NextSamplesSerializer(s.Serializer):
    results = NextSampleSerializer(many=True)
