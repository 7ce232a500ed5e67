"""Celery tasks of the projects app: thin, take ids, have time limits, safe to run twice."""

from celery import shared_task


@shared_task(name="projects.tasks.project_purge", time_limit=3600, soft_time_limit=3540, acks_late=True)
def project_purge(project_id: str) -> int:
    from projects.services import project_purge as purge

    return purge(project_id=project_id)


@shared_task(name="projects.tasks.projects_purge_sweep", time_limit=60, soft_time_limit=50)
def projects_purge_sweep() -> int:
    from projects.services import projects_purge_sweep as sweep

    return sweep()
