import threading

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from inference.api import InvokeView, PretrainedInvokeView
from projects.api import ProjectDetailView


#: drf-spectacular's first generation in a process imports classes lazily and is not thread-safe:
#: concurrent first requests after start-up answered 500 (found by bench/api_learning.py's run).
SCHEMA_LOCK = threading.Lock()


class SchemaView(SpectacularAPIView):
    """The schema as YAML (default) or JSON: `?format=json` (DRF's own ?format= switch is off, since
    format= belongs to the invoke contract) or `Accept: application/vnd.oai.openapi+json`."""

    @extend_schema(exclude=True)  # as the parent's get: the schema endpoint is not in the schema
    def get(self, request, *args, **kwargs):
        with SCHEMA_LOCK:  # one generation at a time per process
            return super().get(request, *args, **kwargs)

    def perform_content_negotiation(self, request, force=False):
        wanted = request.query_params.get("format")
        for renderer in self.get_renderers():
            if wanted and renderer.format == wanted:
                return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)


api_v1 = [
    path("projects/<str:project_id>", ProjectDetailView.as_view(), name="api_project"),
    path("projects/<str:project_id>/invoke", InvokeView.as_view(), name="api_invoke"),
    path("pretrained/imagenet/invoke", PretrainedInvokeView.as_view(), name="api_pretrained_invoke"),
    path("schema", SchemaView.as_view(), name="api_schema"),
    # The split view serves Swagger UI's start-up script from a URL of its own: no inline script (CSP).
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
    path("", include("labeling.api_urls")),
    path("", include("training.api_urls")),
    path("", include("batches.api_urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include(api_v1)),
    path("", include("projects.urls")),
    path("", include("labeling.urls")),
    path("", include("training.urls")),
    path("", include("inference.urls")),
    path("", include("batches.urls")),
]

handler400 = "config.api.handler400"
handler403 = "config.api.handler403"
handler404 = "config.api.handler404"
handler500 = "config.api.handler500"
