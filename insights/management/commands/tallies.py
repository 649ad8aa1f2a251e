"""python manage.py tallies [--rebuild]

Checks the dashboards' tallies against a recount of the judgments (exit status 1 when
they differ); --rebuild counts everything again. Needed only after something bypassed the
database's triggers (a TRUNCATE, a partial restore).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from insights.services import tallies_differences, tallies_rebuild


class Command(BaseCommand):
    help = "Check the dashboards' tallies against the judgments, or rebuild them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="count every judgment and edit again")

    def handle(self, *args, **opts) -> None:
        if opts["rebuild"]:
            tallies_rebuild()
            self.stdout.write("Tallies rebuilt from the judgments.")
            return
        differences = tallies_differences()
        for table, rows in differences.items():
            self.stdout.write(f"{table}: {rows} row(s) differ from a recount")
        if any(differences.values()):
            raise CommandError("the tallies differ from the judgments: run `manage.py tallies --rebuild`")
        self.stdout.write("The tallies match the judgments.")
