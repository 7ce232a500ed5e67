from django.urls import path

from inference import views

urlpatterns = [
    path("projects/<uuid:project_id>/api/", views.api_page, name="api_page"),
    path("projects/<uuid:project_id>/api/keys/", views.api_key_create, name="api_key_create"),
    path("projects/<uuid:project_id>/api/try/", views.api_try, name="api_try"),
    path("projects/<uuid:project_id>/api/keys/<str:prefix>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("projects/<uuid:project_id>/samples/<uuid:sample_id>/explain/", views.sample_explain, name="sample_explain"),
]
