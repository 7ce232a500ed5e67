from django.urls import path

from training import views

urlpatterns = [
    path("projects/<uuid:project_id>/embeddings/status/", views.embedding_status, name="embedding_status"),
]
