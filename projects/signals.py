from django.dispatch import Signal

# Sent after a project's rows are deleted, with project_id, so apps can remove its stored files.
project_deleted = Signal()

# Apps above projects that hold many rows per project append a callable(project_id, limit) -> int that
# deletes up to `limit` of them and says how many: the background purge calls them until all say 0.
PURGE_STEPS: list = []
