"""The background flow of batch jobs, in one place (the batches app's counterpart of training/pipeline.py).

    batch started   → list the source into chunk rows        (queue `batch`, task batch_list)
    chunk row made  → classify its items, write the results  (queue `batch`, task batch_chunk)
    resumed         → every pending chunk again
    sweep (beat)    → chunks whose worker died, listings that stopped, batches that lost messages
    to-samples      → read the chosen items again and ingest them as samples

Tasks are sent after the rows they name committed; every one of them is safe to run twice.
"""

from __future__ import annotations

from django.db import transaction

from config.dispatch import enqueue

LIST = "batches.tasks.batch_list"
CHUNK = "batches.tasks.batch_chunk"
TO_SAMPLES = "batches.tasks.batch_to_samples"


def batch_listing(*, batch_id) -> None:
    transaction.on_commit(lambda: enqueue(LIST, args=[str(batch_id)], queue="batch"))


def chunks_ready(*, chunk_ids: list) -> None:
    ids = [int(i) for i in chunk_ids]
    transaction.on_commit(lambda: [enqueue(CHUNK, args=[i], queue="batch") for i in ids])


def listing_resend(*, batch_id) -> bool:
    """From the sweep, outside any transaction: the listing task was lost."""
    return enqueue(LIST, args=[str(batch_id)], queue="batch")


def chunk_resend(*, chunk_id) -> bool:
    return enqueue(CHUNK, args=[int(chunk_id)], queue="batch")


def to_samples(*, batch_id, keys: list[str] | None, max_confidence: float | None, user_id) -> None:
    args = [str(batch_id), keys, max_confidence, user_id]
    transaction.on_commit(lambda: enqueue(TO_SAMPLES, args=args, queue="batch"))
