from django.dispatch import receiver

from labeling.storage import project_prefix, tree_delete
from projects.signals import project_deleted


@receiver(project_deleted)
def _delete_project_files(sender, project_id, **kwargs):
    tree_delete(project_prefix(project_id))
