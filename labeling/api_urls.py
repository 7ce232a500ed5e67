from django.urls import path

from labeling import api

urlpatterns = [
    path("projects/<str:project_id>/export", api.ProjectExportView.as_view(), name="api_export"),
    path("projects/<str:project_id>/labels", api.LabelListView.as_view(), name="api_labels"),
    path("projects/<str:project_id>/samples", api.SampleListView.as_view(), name="api_samples"),
    # Before the sample route, which would otherwise take "next" for a sample id.
    path("projects/<str:project_id>/samples/next", api.SampleNextView.as_view(), name="api_samples_next"),
    path("projects/<str:project_id>/samples/<str:sample_id>", api.SampleDetailView.as_view(), name="api_sample"),
    path(
        "projects/<str:project_id>/samples/<str:sample_id>/labels",
        api.SampleLabelsView.as_view(),
        name="api_sample_labels",
    ),
    path(
        "projects/<str:project_id>/samples/<str:sample_id>/image",
        api.SampleImageView.as_view(),
        name="api_sample_image",
    ),
    path(
        "projects/<str:project_id>/samples/<str:sample_id>/thumbnail",
        api.SampleThumbnailView.as_view(),
        name="api_sample_thumbnail",
    ),
]
