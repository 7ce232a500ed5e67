import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pictor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="pictor.ping", time_limit=30)
def ping(value: str = "pong") -> str:
    """Round-trip probe used by the smoke tests and `manage.py` health checks."""
    return value
