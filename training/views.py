from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from projects.access import ProjectAccess
from projects.views import project_view
from training import selectors


@project_view()
def embedding_status(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    progress = selectors.embedding_progress(project_id=access.project.pk)
    from config.dispatch import broker_recently_failed

    down = broker_recently_failed()
    context = {"access": access, "progress": progress, "broker_down": down}
    response = render(request, "training/embedding_status.html", context)
    if request.htmx and progress["complete"] and not down:
        # htmx stops polling on 286; the final state is still swapped in.
        response.status_code = 286
    return response
