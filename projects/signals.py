from django.dispatch import Signal

# Sent after a project's rows are deleted, with project_id, so apps can remove its stored files.
project_deleted = Signal()
