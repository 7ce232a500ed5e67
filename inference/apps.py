from django.apps import AppConfig


class InferenceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "inference"

    def ready(self) -> None:
        from inference.services import sample_prediction
        from labeling.hooks import PREDICTORS

        PREDICTORS.append(sample_prediction)
