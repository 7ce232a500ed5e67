from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"

    def ready(self) -> None:
        from labeling.hooks import SAMPLE_EXTRAS
        from training import receivers  # noqa: F401
        from projects.selectors import SUMMARY_PROVIDERS
        from training.selectors import project_training_figures, sample_similar_context

        SAMPLE_EXTRAS.append(sample_similar_context)
        SUMMARY_PROVIDERS.append(project_training_figures)
