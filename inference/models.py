from django.db import models


class RateCounter(models.Model):
    """One fixed-window request counter (the throttle's store when there is no Redis)."""

    key = models.CharField(max_length=200, primary_key=True)
    n = models.PositiveIntegerField(default=0)
    expires = models.FloatField(db_index=True)  # unix time the window ends
