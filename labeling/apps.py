from django.apps import AppConfig


class LabelingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "labeling"

    def ready(self) -> None:
        from labeling import receivers  # noqa: F401
        from labeling.selectors import project_sample_figures
        from labeling.services import samples_purge_chunk
        from projects.selectors import SUMMARY_PROVIDERS
        from projects.signals import PURGE_STEPS

        SUMMARY_PROVIDERS.append(project_sample_figures)
        PURGE_STEPS.append(samples_purge_chunk)
