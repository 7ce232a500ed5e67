"""Celery tasks: thin, take ids, safe to run twice."""

from celery import shared_task

from training import services


@shared_task(name="training.tasks.embed_project", time_limit=3600, soft_time_limit=3540, acks_late=True)
def embed_project(project_id: str) -> int:
    return services.embeddings_compute(project_id=project_id)


@shared_task(name="training.tasks.embeddings_sweep", time_limit=60)
def embeddings_sweep() -> int:
    """Re-queue projects with samples still lacking vectors (after a worker crash, say)."""
    return services.embeddings_resume_all()
