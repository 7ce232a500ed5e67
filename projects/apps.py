from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "projects"

    def ready(self) -> None:
        from projects.keys import api_requests_today
        from projects.selectors import SUMMARY_PROVIDERS

        SUMMARY_PROVIDERS.append(api_requests_today)
