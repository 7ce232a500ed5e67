from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from projects import services
from projects.models import Project


class Command(BaseCommand):
    help = "Manage projects from the command line."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a project; prints its id.")
        create.add_argument("--name", required=True)
        create.add_argument("--owner", required=True, help="username of the owner")
        create.add_argument("--task", default=Project.Task.SINGLE_LABEL, choices=Project.Task.values)
        create.add_argument("--description", default="")

    def handle(self, *args, action: str, **options):
        if action == "create":
            owner = get_user_model().objects.filter(username=options["owner"]).first()
            if owner is None:
                raise CommandError(f"No user named {options['owner']!r}.")
            try:
                project = services.project_create(
                    name=options["name"],
                    owner=owner,
                    task=options["task"],
                    description=options["description"],
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
            self.stdout.write(str(project.pk))
