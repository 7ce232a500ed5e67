from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from inference.api import InvokeView, PretrainedInvokeView
from projects.api import ProjectDetailView

api_v1 = [
    path("projects/<str:project_id>", ProjectDetailView.as_view(), name="api_project"),
    path("projects/<str:project_id>/invoke", InvokeView.as_view(), name="api_invoke"),
    path("pretrained/imagenet/invoke", PretrainedInvokeView.as_view(), name="api_pretrained_invoke"),
    path("schema", SpectacularAPIView.as_view(), name="api_schema"),
    # The split view serves Swagger UI's start-up script from a URL of its own: no inline script (CSP).
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
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
    path("", include("inference.urls")),
]

handler400 = "config.api.handler400"
handler403 = "config.api.handler403"
handler404 = "config.api.handler404"
handler500 = "config.api.handler500"
