from django.urls import path

from labeling import label_views, schema_views, views

urlpatterns = [
    path("projects/<uuid:project_id>/samples/", views.sample_browser, name="sample_browser"),
    path("projects/<uuid:project_id>/samples/<uuid:sample_id>/", views.sample_detail, name="sample_detail"),
    path("projects/<uuid:project_id>/samples/<uuid:sample_id>/labels/", views.sample_labels, name="sample_labels"),
    path("projects/<uuid:project_id>/samples/<uuid:sample_id>/delete/", views.sample_delete, name="sample_delete"),
    path("projects/<uuid:project_id>/upload/", views.upload, name="upload"),
    path("projects/<uuid:project_id>/label/", label_views.label_session, name="label_session"),
    path("projects/<uuid:project_id>/label/undo/", label_views.label_undo, name="label_undo"),
    path("projects/<uuid:project_id>/label/history/<int:back>/", label_views.label_history, name="label_history"),
    path("projects/<uuid:project_id>/label/<uuid:sample_id>/", label_views.label_submit, name="label_submit"),
    path("projects/<uuid:project_id>/label/<uuid:sample_id>/skip/", label_views.label_skip, name="label_skip"),
    path("projects/<uuid:project_id>/labels/", schema_views.label_schema, name="label_schema"),
    path("projects/<uuid:project_id>/labels/add/", schema_views.label_add, name="label_add"),
    path("projects/<uuid:project_id>/labels/<uuid:label_id>/edit/", schema_views.label_edit, name="label_edit"),
    path("projects/<uuid:project_id>/labels/<uuid:label_id>/merge/", schema_views.label_merge, name="label_merge"),
    path("projects/<uuid:project_id>/labels/<uuid:label_id>/delete/", schema_views.label_delete, name="label_delete"),
    path("projects/<uuid:project_id>/samples/bulk-label/", views.samples_bulk_label, name="samples_bulk_label"),
]
