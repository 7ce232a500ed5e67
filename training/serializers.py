"""The trainings and models API's contract, and the shape of a model's answer (the result object).

Result objects are built by the inference services; they are the training app's output (a model
version's prediction), so their serializers live here, below both the labeling API (a sample's
`prediction`) and the inference API (invoke).
"""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers as s

from config.api import render
from training.models import ModelVersion, TrainingJob

# --- model references and result objects ---------------------------------------------------------


class ModelRefSerializer(s.Serializer):
    id = s.CharField(help_text="The model version's id.")
    version = s.IntegerField()
    mode = s.ChoiceField(choices=ModelVersion.Mode.choices, required=False)


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
    sample_id = s.UUIDField(required=False, help_text="With capture: the stored sample.")
    explanation = ExplanationSerializer(required=False)


def render_result(result: dict) -> dict:
    """A result object through its serializer: single-label ones carry `label`, multi-label `present`."""
    serializer = MultiLabelResultSerializer if "present" in result else SingleLabelResultSerializer
    return render(serializer, result)


PREDICTION = PolymorphicProxySerializer(
    component_name="Prediction",
    serializers=[SingleLabelResultSerializer, MultiLabelResultSerializer],
    resource_type_field_name=None,
    many=False,
)


@extend_schema_field(PREDICTION)
class PredictionField(s.Field):
    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return render_result(value)


# --- trainings -----------------------------------------------------------------------------------


TRAINED_MODE_CHOICES = [(m.value, m.label) for m in ModelVersion.TRAINED_MODES]


class TrainingCreateSerializer(s.Serializer):
    mode = s.ChoiceField(choices=TRAINED_MODE_CHOICES)


class TrainingCreatedSerializer(s.Serializer):
    id = s.UUIDField(source="pk")
    status = s.ChoiceField(choices=TrainingJob.Status.choices)
    mode = s.ChoiceField(choices=TRAINED_MODE_CHOICES)


class TrainingSerializer(TrainingCreatedSerializer):
    progress = s.SerializerMethodField(help_text="0 to 1.")
    message = s.CharField(allow_blank=True)
    error = s.SerializerMethodField()
    model = s.SerializerMethodField()
    created = s.DateTimeField()
    finished = s.DateTimeField(allow_null=True)

    def get_progress(self, job) -> float:
        return round(job.progress, 4)

    @extend_schema_field(s.CharField(allow_null=True))
    def get_error(self, job) -> str | None:
        return job.error or None

    @extend_schema_field(ModelRefSerializer(allow_null=True))
    def get_model(self, job) -> dict | None:
        model = job.model if job.model_id else None
        return {"id": str(model.pk), "version": model.version} if model else None


class TrainingListSerializer(s.Serializer):
    results = TrainingSerializer(many=True, help_text="The 50 most recent trainings.")


# --- model versions ------------------------------------------------------------------------------


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
    evaluation = s.CharField(allow_null=True, help_text="How the metrics were measured.")


class ModelDeploySerializer(s.Serializer):
    force = s.BooleanField(
        default=False,
        help_text="Deploy a full model even though it scored below the quick model on its own held-out "
        "split (`worse_than_quick`); without it that deploy answers 409 `conflict` and nothing changes.",
    )


class ModelSerializer(s.Serializer):
    id = s.UUIDField(source="pk")
    version = s.IntegerField()
    mode = s.ChoiceField(choices=ModelVersion.Mode.choices)
    created = s.DateTimeField()
    deployed = s.BooleanField()
    features = s.CharField()
    labels = s.ListField(child=s.CharField(), source="label_names")
    n_train = s.IntegerField()
    metrics = s.SerializerMethodField()
    worse_than_quick = s.SerializerMethodField(
        help_text="A full model that scored below the quick model on the same held-out split: it is not "
        'deployed without `{"force": true}`.'
    )

    def get_worse_than_quick(self, model) -> bool:
        from training.services import worse_than_quick

        return worse_than_quick(model=model)

    @extend_schema_field(MetricsSerializer)
    def get_metrics(self, model) -> dict:
        m = model.metrics or {}
        return MetricsSerializer(
            {
                "accuracy": m.get("accuracy"),
                "macro_f1": m.get("macro_f1"),
                "per_label": m.get("per_label", {}),
                "confusion_matrix": m.get("confusion_matrix", {"labels": [], "matrix": []}),
                "evaluation": m.get("evaluation"),
            }
        ).data


class ModelListSerializer(s.Serializer):
    results = ModelSerializer(many=True)
