from django.urls import path

from training import api

urlpatterns = [
    path("projects/<str:project_id>/trainings", api.TrainingListView.as_view(), name="api_trainings"),
    path("projects/<str:project_id>/trainings/<str:job_id>", api.TrainingDetailView.as_view(), name="api_training"),
    path(
        "projects/<str:project_id>/trainings/<str:job_id>/cancel",
        api.TrainingCancelView.as_view(),
        name="api_training_cancel",
    ),
    path("projects/<str:project_id>/models", api.ModelListView.as_view(), name="api_models"),
    path("projects/<str:project_id>/models/<str:model_id>", api.ModelDetailView.as_view(), name="api_model"),
    path(
        "projects/<str:project_id>/models/<str:model_id>/deploy", api.ModelDeployView.as_view(), name="api_model_deploy"
    ),
]
