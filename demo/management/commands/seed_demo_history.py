"""python manage.py seed_demo_history [--password X]

Seeds the demo project (like ``seed_demo``) and then gives its lead dashboard real
numbers: a closed pilot round (demo-chat-v0 → demo-chat-v1) judged by two earlier
annotators (carol and dave, who cannot log in), and their judgments on two thirds of the
open round's pairs, leaving twenty pairs for alice and bob. ``dev.py run`` runs it.
Safe to run again.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from demo.seed import demo_seed_history


class Command(BaseCommand):
    help = "Seed the demo project with judged rounds for the lead dashboard (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password", help="password for demo users created by this run")

    def handle(self, *args, **opts) -> None:
        password = opts["password"]
        if password is not None and not password.strip():
            raise CommandError("--password must not be empty")
        history = demo_seed_history(password=password)
        self.stdout.write(
            f'Pilot round "{history.pilot}" and the open round judged: {history.judgments_created} new judgments; '
            f"{history.open_round_judged} pairs of the open round have judgments. "
            f"Dashboard: /projects/{history.pilot.project.slug}/dashboard/"
        )
