from django.contrib import admin
from django.urls import include, path

from projects.api import ProjectDetailView

api_v1 = [
    path("projects/<str:project_id>", ProjectDetailView.as_view(), name="api_project"),
    path("", include("labeling.api_urls")),
    path("", include("training.api_urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include(api_v1)),
    path("", include("projects.urls")),
    path("", include("labeling.urls")),
    path("", include("training.urls")),
]

handler400 = "config.api.handler400"
handler403 = "config.api.handler403"
handler404 = "config.api.handler404"
handler500 = "config.api.handler500"
