"""Held-out predictions move out of the model version's row into their own table."""

import uuid

import django.db.models.deletion
from django.db import migrations, models


def _names(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def move_predictions(apps, schema_editor):
    ModelVersion = apps.get_model("training", "ModelVersion")
    HeldOutPrediction = apps.get_model("training", "HeldOutPrediction")
    for model in ModelVersion.objects.only("pk", "predictions").iterator(chunk_size=50):
        rows = []
        for entry in model.predictions or []:
            try:
                sid, true, predicted, confidence = entry
                rows.append(
                    HeldOutPrediction(
                        model_id=model.pk,
                        sample_id=uuid.UUID(str(sid)),
                        true=_names(true),
                        predicted=_names(predicted),
                        confidence=float(confidence),
                    )
                )
            except (TypeError, ValueError):  # a malformed entry is dropped, not a failed upgrade
                continue
        HeldOutPrediction.objects.bulk_create(rows, batch_size=2000)


def move_back(apps, schema_editor):
    ModelVersion = apps.get_model("training", "ModelVersion")
    HeldOutPrediction = apps.get_model("training", "HeldOutPrediction")
    for model in ModelVersion.objects.all().iterator(chunk_size=50):
        rows = HeldOutPrediction.objects.filter(model_id=model.pk).order_by("id")
        model.predictions = [
            [
                str(r.sample_id),
                r.true[0] if len(r.true) == 1 else r.true,
                r.predicted[0] if len(r.predicted) == 1 else r.predicted,
                r.confidence,
            ]
            for r in rows
        ]
        model.save(update_fields=["predictions"])


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0003_one_active_full_training"),
    ]

    operations = [
        migrations.CreateModel(
            name="HeldOutPrediction",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("sample_id", models.UUIDField()),
                ("true", models.JSONField(default=list)),
                ("predicted", models.JSONField(default=list)),
                ("confidence", models.FloatField()),
                (
                    "model",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="held_out",
                        to="training.modelversion",
                    ),
                ),
            ],
            options={"indexes": [models.Index(fields=["model", "id"], name="training_he_model_i_4ee674_idx")]},
        ),
        migrations.RunPython(move_predictions, move_back),
        migrations.RemoveField(model_name="modelversion", name="predictions"),
        migrations.AddIndex(
            model_name="embedding",
            index=models.Index(fields=["project_id", "backbone", "id"], name="embedding_sync"),
        ),
    ]
