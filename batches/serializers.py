"""The batch jobs API's contract (shared/API.md "Batch jobs"): input, filter and output serializers,
the same classes the views validate and render with and the schema is generated from."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers as s

from batches import selectors
from batches.models import Batch
from config.schema import ErrorDetailSerializer
from labeling.serializers import fps_field

MAX_KEYS = 10_000


# --- input ---------------------------------------------------------------------------------------


class UploadSourceSerializer(s.Serializer):
    kind = s.ChoiceField(choices=["upload"])
    upload_id = s.UUIDField(help_text="From POST .../batches/uploads.")


class FolderSourceSerializer(s.Serializer):
    kind = s.ChoiceField(choices=["folder"])
    path = s.CharField(max_length=1000, help_text="A folder under one of the import roots (PICTOR_IMPORT_ROOTS).")


class S3SourceSerializer(s.Serializer):
    kind = s.ChoiceField(choices=["s3"])
    uri = s.CharField(max_length=1100, help_text="s3://bucket/prefix; credentials come from the server's environment.")


SOURCE = PolymorphicProxySerializer(
    component_name="BatchSource",
    serializers={"upload": UploadSourceSerializer, "folder": FolderSourceSerializer, "s3": S3SourceSerializer},
    resource_type_field_name="kind",
    many=False,
)

_SOURCES = {"upload": UploadSourceSerializer, "folder": FolderSourceSerializer, "s3": S3SourceSerializer}


@extend_schema_field(SOURCE)
class SourceField(s.JSONField):
    """One of the three source objects, validated by its own serializer."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if not isinstance(data, dict) or data.get("kind") not in _SOURCES:
            raise s.ValidationError('An object whose "kind" is upload, folder or s3.')
        form = _SOURCES[data["kind"]](data=data)
        if not form.is_valid():
            raise s.ValidationError(
                [f"{k}: {' '.join(str(x) for x in v)}" for k, v in form.errors.items()]  # flat, for the envelope
            )
        out = dict(form.validated_data)
        if "upload_id" in out:
            out["upload_id"] = str(out["upload_id"])
        return out


class BatchCreateSerializer(s.Serializer):
    source = SourceField()
    model = s.UUIDField(required=False, allow_null=True, help_text="A model version's id; default: the deployed one.")
    top_k = s.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=100, help_text="Labels kept per item (default 10)."
    )
    fps = fps_field()


class BatchUploadFormSerializer(s.Serializer):
    file = s.FileField(help_text="A zip or tar (also .tar.gz, .tar.bz2, .tar.xz), streamed to storage.")


class ResultsFilterSerializer(s.Serializer):
    format = s.ChoiceField(choices=["csv", "jsonl", "series"], default="jsonl")
    label = s.CharField(
        required=False, max_length=100, help_text="Only items predicted (multi-label: present) as this."
    )
    min_confidence = s.FloatField(required=False, min_value=0, max_value=1)
    max_confidence = s.FloatField(required=False, min_value=0, max_value=1)
    page = s.IntegerField(
        required=False,
        min_value=1,
        help_text=f"Pages of {selectors.RESULTS_PAGE} items in listing order; default: all.",
    )


class ToSamplesSerializer(s.Serializer):
    keys = s.ListField(child=s.CharField(max_length=1024), required=False, max_length=MAX_KEYS, allow_empty=False)
    max_confidence = s.FloatField(required=False, min_value=0, max_value=1)

    def validate(self, attrs):
        if ("keys" in attrs) == ("max_confidence" in attrs):
            raise s.ValidationError({"keys": ['Give either "keys" or "max_confidence".']})
        return attrs


# --- output --------------------------------------------------------------------------------------


class BatchModelSerializer(s.Serializer):
    id = s.CharField()
    version = s.IntegerField()


class BatchCreatedSerializer(s.Serializer):
    id = s.UUIDField()
    status = s.ChoiceField(choices=Batch.Status.choices)
    model = s.SerializerMethodField()

    def get_model(self, batch) -> BatchModelSerializer:
        return {"id": str(batch.model_id), "version": batch.model_version}


class BatchSerializer(s.Serializer):
    id = s.UUIDField()
    status = s.ChoiceField(choices=Batch.Status.choices)
    source = s.SerializerMethodField()
    model = s.SerializerMethodField()
    total = s.IntegerField(help_text="Items listed so far (final once the status is past listing).")
    done = s.IntegerField()
    failed = s.IntegerField()
    items_per_second = s.SerializerMethodField()
    eta_seconds = s.SerializerMethodField()
    fps = s.FloatField(help_text="Videos in the source: frames sampled per second (fixed for the batch's life).")
    error = s.CharField()
    created = s.DateTimeField()
    finished = s.DateTimeField(allow_null=True)

    def get_source(self, batch) -> SOURCE:
        return selectors.source_describe(batch)

    def get_model(self, batch) -> BatchModelSerializer:
        return {"id": str(batch.model_id) if batch.model_id else "", "version": batch.model_version}

    def get_items_per_second(self, batch) -> float | None:
        return selectors.items_per_second(batch)

    def get_eta_seconds(self, batch) -> float | None:
        return selectors.eta_seconds(batch)


class BatchListSerializer(s.Serializer):
    results = BatchSerializer(many=True)


class ToSamplesAcceptedSerializer(s.Serializer):
    items = s.IntegerField(help_text="How many items are on their way to becoming samples.")


class _ScoreSerializer(s.Serializer):
    label = s.CharField()
    confidence = s.FloatField()
    threshold = s.FloatField(required=False)
    present = s.BooleanField(required=False)


class _SegmentSerializer(s.Serializer):
    label = s.CharField()
    startTimeMs = s.IntegerField()  # noqa: N815 (the engine format's spelling)
    stopTimeMs = s.IntegerField()  # noqa: N815
    confidence = s.FloatField(help_text="The label's mean confidence over the segment's frames.")


class ResultRecordSerializer(s.Serializer):
    """One JSONL line (the CSV has the same columns, `labels` as label:confidence pairs and `segments`
    as label@startMs-stopMs:confidence items joined by `;`)."""

    key = s.CharField()
    sha256 = s.CharField(required=False)
    label = s.CharField(required=False)
    present = s.ListField(child=s.CharField(), required=False)
    confidence = s.FloatField(required=False)
    labels = _ScoreSerializer(many=True, required=False)
    segments = _SegmentSerializer(
        many=True,
        required=False,
        help_text="Videos only: runs of sampled frames holding the same label. The whole-video `label` is "
        "the one covering the most time, `confidence` its time-weighted mean, `labels` the frames' mean.",
    )
    error = ErrorDetailSerializer(required=False)


class _SeriesObjectSerializer(s.Serializer):
    type = s.CharField()
    label = s.CharField()
    confidence = s.FloatField()
    libraryId = s.CharField()  # noqa: N815 (the engine format's spelling)
    key = s.CharField()
    uri = s.CharField(required=False)
    boundingPoly = s.ListField(child=s.DictField(child=s.FloatField()))  # noqa: N815


class _SeriesEntrySerializer(s.Serializer):
    startTimeMs = s.IntegerField()  # noqa: N815
    stopTimeMs = s.IntegerField()  # noqa: N815
    libraryId = s.CharField()  # noqa: N815
    object = _SeriesObjectSerializer()


class BatchSeriesSerializer(s.Serializer):
    series = _SeriesEntrySerializer(many=True)
