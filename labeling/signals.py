from django.dispatch import Signal

# Sent after commit when samples were added to a project (project_id, sample_ids), so the
# training app can schedule embeddings without this app knowing about it.
samples_added = Signal()
# Sent after commit when a project's labels changed (project_id), e.g. to retrain the quick model.
labels_changed = Signal()
# Sent after commit when the active learner's batch ran out (project_id): time to pick the next one.
queue_exhausted = Signal()
# Sent after commit when a project's set of label names changed (project_id): created, renamed,
# merged or deleted (e.g. to map the names to a zero-shot model).
label_set_changed = Signal()
