"""python manage.py demo_setup [--password X]

What ``dev.py run`` does before it serves: ``migrate``, ``seed_demo`` and
``seed_demo_history``, in one process, so that Django starts once instead of three times
(most of a cold start is start-up). Prints what ``seed_demo`` and ``seed_demo_history``
print. Safe to run again, like each of them.
"""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Migrate the database, then seed the demo project and its history (idempotent): what `dev.py run` does."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password", help="password for the demo users created by this run")

    def handle(self, *args, **opts) -> None:
        password = opts["password"]
        if password is not None and not password.strip():
            raise CommandError("--password must not be empty")
        seed = {"password": password} if password is not None else {}
        # The system checks ran once, before handle(); call_command skips them.
        call_command("migrate", interactive=False, verbosity=max(0, opts["verbosity"] - 1), stdout=self.stdout)
        call_command("seed_demo", stdout=self.stdout, **seed)
        # A judged pilot round and part of the open one, so the lead dashboard has numbers.
        call_command("seed_demo_history", stdout=self.stdout, **seed)
