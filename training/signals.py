from django.dispatch import Signal

# Sent after commit when a project's deployed or newest quick model changed (project_id).
model_changed = Signal()
