from django.urls import path

from batches import views

urlpatterns = [
    path("projects/<uuid:project_id>/batches/", views.batches_page, name="batches_page"),
    path("projects/<uuid:project_id>/batches/start/", views.batch_start, name="batch_start"),
    path("projects/<uuid:project_id>/batches/<uuid:batch_id>/", views.batch_detail, name="batch_detail"),
    path("projects/<uuid:project_id>/batches/<uuid:batch_id>/status/", views.batch_status, name="batch_status"),
    path("projects/<uuid:project_id>/batches/<uuid:batch_id>/thumb/", views.batch_thumbnail, name="batch_thumbnail"),
    path(
        "projects/<uuid:project_id>/batches/<uuid:batch_id>/to-samples/",
        views.batch_to_samples,
        name="batch_to_samples",
    ),
    path("projects/<uuid:project_id>/batches/<uuid:batch_id>/<str:action>/", views.batch_control, name="batch_control"),
]
