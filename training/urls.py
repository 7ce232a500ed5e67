from django.urls import path

from training import ui_views, views

urlpatterns = [
    path("projects/<uuid:project_id>/embeddings/status/", views.embedding_status, name="embedding_status"),
    path("projects/<uuid:project_id>/models/", ui_views.models_page, name="models_page"),
    path("projects/<uuid:project_id>/models/<uuid:model_id>/", ui_views.model_detail, name="model_detail"),
    path("projects/<uuid:project_id>/models/<uuid:model_id>/deploy/", ui_views.model_deploy, name="model_deploy"),
    path("projects/<uuid:project_id>/models/<uuid:model_id>/delete/", ui_views.model_delete, name="model_delete"),
    path("projects/<uuid:project_id>/models/<uuid:model_id>/download/", ui_views.model_download, name="model_download"),
    path("projects/<uuid:project_id>/models/<uuid:model_id>/<str:kind>.png", ui_views.model_plot, name="model_plot"),
    path("projects/<uuid:project_id>/trainings/", ui_views.training_start, name="training_start"),
    path("projects/<uuid:project_id>/trainings/<uuid:job_id>/status/", ui_views.job_status, name="job_status"),
    path(
        "projects/<uuid:project_id>/trainings/<uuid:job_id>/cancel/", ui_views.training_cancel, name="training_cancel"
    ),
    path("projects/<uuid:project_id>/review/", ui_views.review_page, name="review_page"),
    path("projects/<uuid:project_id>/review/decide/", ui_views.review_decide, name="review_decide"),
]
