from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"

    def ready(self) -> None:
        from labeling.hooks import SAMPLE_EXTRAS
        from training import receivers  # noqa: F401
        from training.selectors import sample_similar_context

        SAMPLE_EXTRAS.append(sample_similar_context)
