from django.urls import path

from batches import api

urlpatterns = [
    path("projects/<str:project_id>/batches", api.BatchListView.as_view(), name="api_batches"),
    # Before the batch route, which would otherwise take "uploads" for a batch id.
    path("projects/<str:project_id>/batches/uploads", api.BatchUploadView.as_view(), name="api_batch_uploads"),
    path("projects/<str:project_id>/batches/<str:batch_id>", api.BatchDetailView.as_view(), name="api_batch"),
    path(
        "projects/<str:project_id>/batches/<str:batch_id>/pause", api.BatchPauseView.as_view(), name="api_batch_pause"
    ),
    path(
        "projects/<str:project_id>/batches/<str:batch_id>/resume",
        api.BatchResumeView.as_view(),
        name="api_batch_resume",
    ),
    path(
        "projects/<str:project_id>/batches/<str:batch_id>/cancel",
        api.BatchCancelView.as_view(),
        name="api_batch_cancel",
    ),
    path(
        "projects/<str:project_id>/batches/<str:batch_id>/results",
        api.BatchResultsView.as_view(),
        name="api_batch_results",
    ),
    path(
        "projects/<str:project_id>/batches/<str:batch_id>/to-samples",
        api.BatchToSamplesView.as_view(),
        name="api_batch_to_samples",
    ),
]
