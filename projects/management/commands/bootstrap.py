import os
import sys

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the first admin if no superuser exists: from PICTOR_ADMIN_PASSWORD "
        "(and PICTOR_ADMIN_USERNAME, PICTOR_ADMIN_EMAIL), or by prompting on a terminal."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already.")
            return
        password = os.environ.get("PICTOR_ADMIN_PASSWORD", "")
        username = os.environ.get("PICTOR_ADMIN_USERNAME", "admin")
        email = os.environ.get("PICTOR_ADMIN_EMAIL", "")
        if password:
            User.objects.create_superuser(username=username, email=email, password=password)
            self.stdout.write(f"Created admin user {username!r} from PICTOR_ADMIN_PASSWORD.")
            return
        if sys.stdin.isatty():
            self.stdout.write("No admin account yet: create the first one.")
            call_command("createsuperuser", interactive=True)
            return
        self.stderr.write(
            "No admin account exists and there is no terminal to ask on: set PICTOR_ADMIN_PASSWORD "
            "(and optionally PICTOR_ADMIN_USERNAME) and run again."
        )
        sys.exit(2)
