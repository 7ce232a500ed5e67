"""OpenAPI documentation of the public REST API (shared/API.md), for drf-spectacular.

Nothing here runs on a request: the serializers below only describe request and response bodies
(the views build their JSON by hand and validate their input themselves), and the extensions tell
drf-spectacular how our two authentication classes look on the wire. The API modules import this
module for their @extend_schema annotations, which also registers the extensions before any schema
is generated.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers as s

# --- authentication ------------------------------------------------------------------------------


class ProjectKeyScheme(OpenApiAuthenticationExtension):
    target_class = "projects.api_auth.ProjectKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "Pictor API key",
            "description": "A project API key: `Authorization: Bearer <api key>`. It works only on its own "
            "project (404 elsewhere). Scope `invoke` reaches only `POST .../invoke` and `GET /projects/{id}` "
            "(and the ImageNet endpoint); scope `full` reaches every endpoint.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "projects.api_auth.SessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A signed-in browser session of a project member (with the member's role); unsafe "
            "methods also need the CSRF token in `X-CSRFToken`.",
        }


# --- the error envelope --------------------------------------------------------------------------


class ErrorDetailSerializer(s.Serializer):
    code = s.CharField(
        help_text="snake_case: unauthenticated, forbidden, not_found, invalid, invalid_image, too_large, "
        "unsupported_media_type, throttled, no_model, conflict, method_not_allowed, server_error."
    )
    message = s.CharField(help_text="A human sentence.")
    fields = s.DictField(
        child=s.ListField(child=s.CharField()), required=False,
        help_text="Validation errors by parameter or field name.",
    )


class ErrorSerializer(s.Serializer):
    error = ErrorDetailSerializer()


class ItemErrorSerializer(s.Serializer):
    """One failed image of a batch."""

    error = ErrorDetailSerializer()
    filename = s.CharField()


_ERRORS = {
    400: "`invalid` (`fields` names what is wrong) or `invalid_image`.",
    401: "`unauthenticated`: missing, invalid or revoked API key.",
    403: "`forbidden`: the key's scope or the member's role is too low (or the CSRF token is missing).",
    404: "`not_found`: no such project for this key or user (never revealed), or no such object in it.",
    409: "`conflict`.",
    413: "`too_large`: the image is over the size or pixel limit.",
    415: "`unsupported_media_type`: not an image format we read, or a body type we don't parse.",
    429: "`throttled`: too many requests for this key; retry after `Retry-After` seconds.",
}

RETRY_AFTER = OpenApiParameter(
    "Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[429],
    description="Seconds to wait before the next request.",
)


def errors(*codes: int, **overrides) -> dict:
    """Error responses for `codes` plus the ones every endpoint can give (401, 403, 404, 429).
    overrides: e.g. r409="`no_model`: ..." or r400=OpenApiResponse(...)."""
    out = {}
    for code in sorted({401, 403, 404, 429, *codes}):
        value = overrides.get(f"r{code}", _ERRORS[code])
        out[code] = value if isinstance(value, OpenApiResponse) else OpenApiResponse(ErrorSerializer, description=value)
    return out


def endpoint(operation_id: str, *, tag: str, summary: str, responses: dict, parameters=(), request=None, **kwargs):
    """@extend_schema for one API operation; every operation may answer 429 with Retry-After."""
    return extend_schema(
        operation_id=operation_id, tags=[tag], summary=summary, parameters=[*parameters, RETRY_AFTER],
        request=request, responses=responses, **kwargs,
    )


# --- parameters ----------------------------------------------------------------------------------


def path(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=description)


PROJECT = path("project_id", "The project's id.")
SAMPLE = path("sample_id", "The sample's id.")
JOB = path("job_id", "The training's id.")
MODEL = path("model_id", "The model version's id.")


def query(name: str, type_, description: str, **kwargs) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description, **kwargs)


SAMPLES_QUERY = [
    query("labeled", OpenApiTypes.BOOL, "Only labeled (true) or only unlabeled (false) samples."),
    query("label", OpenApiTypes.STR, "Only samples with this label (by name)."),
    query("page", OpenApiTypes.INT, "Page number, from 1."),
    query("page_size", OpenApiTypes.INT, "Results per page (default 50, at most 500)."),
]
NEXT_QUERY = [query("count", OpenApiTypes.INT, "How many samples, 1 to 100 (default 1).")]
INVOKE_QUERY = [
    query("top_k", OpenApiTypes.INT, "Return only the N most confident labels (1 to 10000; default all)."),
    query("format", OpenApiTypes.STR, "`series`: the engine output format.", enum=["json", "series"]),
    query("pretrained", OpenApiTypes.INT, "With format=series: add the N best ImageNet labels (1 to 20)."),
    query("explain", OpenApiTypes.BOOL, "Add an occlusion heat map of the top label (slow)."),
    query("capture", OpenApiTypes.BOOL, "Store the image as an unlabeled sample of the project; adds `sample_id`."),
    query("model", OpenApiTypes.UUID, "Answer with this model version instead of the deployed one."),
]
PRETRAINED_QUERY = [query("top_k", OpenApiTypes.INT, "How many ImageNet labels (1 to 1000; default 5).")]

# --- shared shapes -------------------------------------------------------------------------------


class LabelSerializer(s.Serializer):
    id = s.UUIDField()
    name = s.CharField()


class LabelListSerializer(s.Serializer):
    results = LabelSerializer(many=True)


class LabelCreateSerializer(s.Serializer):
    name = s.CharField(help_text="A new label name; an existing name answers 409 `conflict`.")


class ModelRefSerializer(s.Serializer):
    id = s.UUIDField()
    version = s.IntegerField()


class ProjectSamplesSerializer(s.Serializer):
    total = s.IntegerField()
    labeled = s.IntegerField()


class ProjectSerializer(s.Serializer):
    id = s.UUIDField()
    name = s.CharField()
    task = s.ChoiceField(choices=["single_label", "multi_label"])
    labels = LabelSerializer(many=True)
    samples = ProjectSamplesSerializer()
    deployed_model = ModelRefSerializer(allow_null=True)


# --- samples -------------------------------------------------------------------------------------


class SampleSerializer(s.Serializer):
    id = s.UUIDField()
    sha256 = s.CharField()
    width = s.IntegerField()
    height = s.IntegerField()
    labels = s.ListField(child=s.CharField())
    image_url = s.URLField()
    thumbnail_url = s.URLField()
    filename = s.CharField(allow_blank=True)
    source = s.ChoiceField(choices=["upload", "api", "capture"])
    created = s.DateTimeField()


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
class _SampleUploadEntryField(s.JSONField):
    pass


class SamplesCreatedSerializer(s.Serializer):
    samples = s.ListField(child=_SampleUploadEntryField(), help_text="In the order sent; a bad file fails only itself.")


class UploadFailedSerializer(ErrorSerializer):
    samples = s.ListField(child=ItemErrorSerializer(), required=False, help_text="Every file's error, in order.")


class SamplePageSerializer(s.Serializer):
    count = s.IntegerField()
    next = s.URLField(allow_null=True)
    previous = s.URLField(allow_null=True)
    results = SampleSerializer(many=True)


class SingleLabelScoreSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()


class MultiLabelScoreSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()
    threshold = s.FloatField()
    present = s.BooleanField()


class ExplanationSerializer(s.Serializer):
    method = s.CharField()
    label = s.CharField()
    heatmap_png = s.CharField(help_text="A PNG heat map over the image, base64.")


class SingleLabelResultSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()
    labels = SingleLabelScoreSerializer(many=True, help_text="Sorted by confidence; confidences sum to 1.")
    model = ModelRefSerializer()
    sample_id = s.UUIDField(required=False, help_text="With capture: the stored sample.")
    explanation = ExplanationSerializer(required=False)


class MultiLabelResultSerializer(s.Serializer):
    present = s.ListField(child=s.CharField(), help_text="Labels whose confidence is at least their threshold.")
    labels = MultiLabelScoreSerializer(many=True)
    model = ModelRefSerializer()
    sample_id = s.UUIDField(required=False)
    explanation = ExplanationSerializer(required=False)


_RESULT = PolymorphicProxySerializer(
    component_name="Prediction",
    serializers=[SingleLabelResultSerializer, MultiLabelResultSerializer],
    resource_type_field_name=None,
    many=False,
    allow_null=True,
)


@extend_schema_field(_RESULT)
class _PredictionField(s.JSONField):
    pass


class SampleDetailSerializer(SampleSerializer):
    prediction = _PredictionField(allow_null=True, help_text="The deployed model's answer; null when none is deployed.")


class SampleLabelsSerializer(s.Serializer):
    labels = s.ListField(child=s.CharField(), help_text="Label names (single-label projects: one, or [] to clear).")


class SuggestionSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()


class NextSampleSerializer(s.Serializer):
    id = s.UUIDField()
    image_url = s.URLField()
    score = s.FloatField(allow_null=True)
    suggestion = SuggestionSerializer(allow_null=True)


class NextSamplesSerializer(s.Serializer):
    results = NextSampleSerializer(many=True)


# Uploads: JSON (one image or a batch, base64) or multipart (repeated `file` parts).

_PNG_8x8 = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8UaHBgA0wMeAAg1MCAB4nAXgllso1AAAAAElFTkSuQmCC"


@extend_schema_field(OpenApiTypes.BYTE)
class _Base64Field(s.CharField):
    pass


class UploadItemSerializer(s.Serializer):
    data = _Base64Field(help_text="The image file, base64 (a `data:` URL is accepted too).")
    labels = s.ListField(child=s.CharField(), required=False, help_text="Label names; new names are created.")
    filename = s.CharField(required=False)


class UploadBatchSerializer(s.Serializer):
    items = UploadItemSerializer(many=True)


class UploadMultipartSerializer(s.Serializer):
    file = s.ListField(child=s.FileField(), help_text="One or more image files (repeat the part).")
    label = s.ListField(child=s.CharField(), required=False, help_text="Labels for every file (repeatable).")


SAMPLE_UPLOAD = {
    "application/json": PolymorphicProxySerializer(
        component_name="SampleUpload",
        serializers=[UploadItemSerializer, UploadBatchSerializer],
        resource_type_field_name=None,
        many=False,
    ),
    "multipart/form-data": UploadMultipartSerializer,
}


class InvokeItemSerializer(s.Serializer):
    data = _Base64Field(help_text="The image file, base64 (a `data:` URL is accepted too).")


class InvokeBatchSerializer(s.Serializer):
    items = InvokeItemSerializer(many=True)


class InvokeMultipartSerializer(s.Serializer):
    file = s.ListField(child=s.FileField(), help_text="One or more image files (repeat the part).")


INVOKE_REQUEST = {
    "application/json": PolymorphicProxySerializer(
        component_name="Invoke",
        serializers=[InvokeItemSerializer, InvokeBatchSerializer],
        resource_type_field_name=None,
        many=False,
    ),
    "multipart/form-data": InvokeMultipartSerializer,
}
IMAGE_EXAMPLES = [
    OpenApiExample("one image", value={"data": _PNG_8x8}, request_only=True, media_type="application/json"),
    OpenApiExample(
        "two images", value={"items": [{"data": _PNG_8x8}, {"data": _PNG_8x8}]}, request_only=True,
        media_type="application/json",
    ),
]

# --- invoke --------------------------------------------------------------------------------------


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


class SeriesResultSerializer(s.Serializer):
    series = SeriesEntrySerializer(many=True, help_text="Trained (library) labels first, then pretrained ones.")
    sample_id = s.UUIDField(required=False)
    explanation = ExplanationSerializer(required=False)


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="InvokeBatchEntry",
        serializers=[SingleLabelResultSerializer, MultiLabelResultSerializer, SeriesResultSerializer, ItemErrorSerializer],
        resource_type_field_name=None,
        many=False,
    )
)
class _InvokeEntryField(s.JSONField):
    pass


class InvokeBatchResultSerializer(s.Serializer):
    results = s.ListField(child=_InvokeEntryField(), help_text="One entry per image, in order.")


class InvokeFailedSerializer(ErrorSerializer):
    results = s.ListField(child=ItemErrorSerializer(), required=False, help_text="Every image's error, in order.")


INVOKE_OK = PolymorphicProxySerializer(
    component_name="InvokeResponse",
    serializers=[SingleLabelResultSerializer, MultiLabelResultSerializer, SeriesResultSerializer,
                 InvokeBatchResultSerializer],
    resource_type_field_name=None,
    many=False,
)


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


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="PretrainedBatchEntry",
        serializers=[PretrainedResultSerializer, ItemErrorSerializer],
        resource_type_field_name=None,
        many=False,
    )
)
class _PretrainedEntryField(s.JSONField):
    pass


class PretrainedBatchSerializer(s.Serializer):
    results = s.ListField(child=_PretrainedEntryField())


PRETRAINED_OK = PolymorphicProxySerializer(
    component_name="PretrainedResponse",
    serializers=[PretrainedResultSerializer, PretrainedBatchSerializer],
    resource_type_field_name=None,
    many=False,
)


def image_errors(*codes: int, failed=InvokeFailedSerializer, **overrides) -> dict:
    """Errors of endpoints that take images: 400/413/415 carry the per-item errors when all failed."""
    out = errors(400, 413, 415, *codes, **overrides)
    for code in (400, 413, 415):
        out[code] = OpenApiResponse(failed, description=_ERRORS[code] + " When every image of a batch failed, "
                                    "the body also lists each one's error.")
    return out


# --- trainings and models ------------------------------------------------------------------------


class TrainingCreateSerializer(s.Serializer):
    mode = s.ChoiceField(choices=["quick", "full"])


class TrainingCreatedSerializer(s.Serializer):
    id = s.UUIDField()
    status = s.ChoiceField(choices=["queued", "running", "succeeded", "failed", "cancelled"])
    mode = s.ChoiceField(choices=["quick", "full"])


class TrainingSerializer(TrainingCreatedSerializer):
    progress = s.FloatField(help_text="0 to 1.")
    message = s.CharField(allow_blank=True)
    error = s.CharField(allow_null=True)
    model = ModelRefSerializer(allow_null=True)
    created = s.DateTimeField()
    finished = s.DateTimeField(allow_null=True)


class TrainingListSerializer(s.Serializer):
    results = TrainingSerializer(many=True, help_text="The 50 most recent trainings.")


class LabelMetricsSerializer(s.Serializer):
    precision = s.FloatField(allow_null=True)
    recall = s.FloatField(allow_null=True)
    f1 = s.FloatField(allow_null=True)
    support = s.IntegerField()


class ConfusionMatrixSerializer(s.Serializer):
    labels = s.ListField(child=s.CharField())
    matrix = s.ListField(child=s.ListField(child=s.IntegerField()))


class MetricsSerializer(s.Serializer):
    accuracy = s.FloatField(allow_null=True)
    macro_f1 = s.FloatField(allow_null=True)
    per_label = s.DictField(child=LabelMetricsSerializer())
    confusion_matrix = ConfusionMatrixSerializer()
    evaluation = s.JSONField(allow_null=True, help_text="How the metrics were measured.")


class ModelSerializer(s.Serializer):
    id = s.UUIDField()
    version = s.IntegerField()
    mode = s.ChoiceField(choices=["quick", "full"])
    created = s.DateTimeField()
    deployed = s.BooleanField()
    features = s.CharField()
    labels = s.ListField(child=s.CharField())
    n_train = s.IntegerField()
    metrics = MetricsSerializer()


class ModelListSerializer(s.Serializer):
    results = ModelSerializer(many=True)


NO_CONTENT = OpenApiResponse(None, description="Done.")
