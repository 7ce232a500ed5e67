from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from projects import keys
from projects.models import Project, ProjectAPIKey


class Command(BaseCommand):
    help = "Create or revoke a project's API keys."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key; prints it once.")
        create.add_argument("--project", required=True)
        create.add_argument("--scope", default=ProjectAPIKey.Scope.FULL, choices=ProjectAPIKey.Scope.values)
        create.add_argument("--name", default="command line")
        revoke = sub.add_parser("revoke", help="Revoke a key by its prefix.")
        revoke.add_argument("--project", required=True)
        revoke.add_argument("--prefix", required=True)

    def _project(self, project_id: str) -> Project:
        try:
            return Project.objects.get(pk=project_id)
        except (Project.DoesNotExist, ValueError, ValidationError):
            raise CommandError(f"No project with id {project_id!r}.") from None

    def handle(self, *args, action: str, **options):
        project = self._project(options["project"])
        if action == "create":
            try:
                _, key = keys.api_key_create(project=project, name=options["name"], scope=options["scope"])
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
            self.stdout.write(key)
            return
        key = ProjectAPIKey.objects.filter(project=project, prefix=options["prefix"]).first()
        if key is None:
            raise CommandError(f"No key with prefix {options['prefix']!r} in this project.")
        keys.api_key_revoke(key=key)
        self.stdout.write(f"Revoked {key.prefix}.")
