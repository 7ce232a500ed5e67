from rest_framework.response import Response
from rest_framework.views import APIView

from config import schema as doc
from labeling.selectors import label_list
from projects.api_auth import api_access
from projects.selectors import project_summary
from projects.serializers import ProjectSerializer


class ProjectDetailView(APIView):
    @doc.endpoint(
        "projects_retrieve",
        tag="projects",
        parameters=[doc.PROJECT],
        summary="The project: labels, sample counts and the deployed model (invoke keys may read it too)",
        responses={200: ProjectSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        # Invoke-scoped keys may read this too: clients need the label names to use results.
        access = api_access(request, project_id, invoke=True)
        project = access.project
        summary = project_summary(project=project, role=access.role)
        body = {
            "id": project.pk,
            "name": project.name,
            "task": project.task,
            "labels": label_list(project=project),
            "samples": {"total": summary.samples, "labeled": summary.labeled},
            "deployed_model": summary.extra.get("deployed_model"),
        }
        return Response(ProjectSerializer(body).data)
