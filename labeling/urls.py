from django.urls import path

from labeling import views

urlpatterns = [
    path("projects/<uuid:project_id>/samples/", views.sample_browser, name="sample_browser"),
    path("projects/<uuid:project_id>/samples/<uuid:sample_id>/", views.sample_detail, name="sample_detail"),
    path("projects/<uuid:project_id>/samples/<uuid:sample_id>/labels/", views.sample_labels, name="sample_labels"),
    path("projects/<uuid:project_id>/samples/<uuid:sample_id>/delete/", views.sample_delete, name="sample_delete"),
    path("projects/<uuid:project_id>/upload/", views.upload, name="upload"),
]
