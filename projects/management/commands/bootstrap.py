import os
import secrets
import sys

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the first admin if no superuser exists: from PICTOR_ADMIN_PASSWORD "
        "(and PICTOR_ADMIN_USERNAME, PICTOR_ADMIN_EMAIL), by prompting on a terminal, or else with a "
        "random password written once to <data dir>/admin_password."
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
        # No terminal (a service manager, CI, a pipe): `make run` must still start, so the first
        # admin gets a random password, kept readable only by this user beside the data it guards.
        from django.conf import settings

        password = secrets.token_urlsafe(12)
        path = settings.DATA_DIR / "admin_password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(
            f"Created admin user {username!r} with a random password, saved in {path} "
            "(sign in and change it, then delete the file)."
        )
