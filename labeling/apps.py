from django.apps import AppConfig


class LabelingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "labeling"

    def ready(self) -> None:
        from labeling import receivers  # noqa: F401
        from labeling.selectors import project_sample_figures
        from projects.selectors import SUMMARY_PROVIDERS

        SUMMARY_PROVIDERS.append(project_sample_figures)
