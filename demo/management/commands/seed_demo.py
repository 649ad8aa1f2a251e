"""python manage.py seed_demo [--password X]

Creates the demo project (30 prompts, two model versions, an open round with one pair
per prompt) and the demo users, then prints what it made and the logins. Safe to run
again: what is already there is left as it is.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from demo.seed import DEFAULT_PASSWORD, DemoResult, demo_seed


class Command(BaseCommand):
    help = "Seed the demo project, model versions, open round and demo users (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--password",
            help=f"password for the demo users created by this run (default: {DEFAULT_PASSWORD})",
        )

    def handle(self, *args, **opts) -> None:
        password = opts["password"]
        if password is not None and not password.strip():
            raise CommandError("--password must not be empty")
        result = demo_seed(password=password)
        self.stdout.write(self._summary(result))

    def _summary(self, r: DemoResult) -> str:
        c = r.created

        def new(count: int) -> str:
            return f"({count} new)" if count else "(already there)"

        lines = [
            f'Demo project "{r.project.name}" (slug {r.project.slug}): '
            + ("created" if c["project"] else "already there"),
            f"  model versions  {r.baseline.name} -> {r.candidate.name}  {new(c['versions'])}",
            f"  prompts         {r.prompt_count}  {new(c['prompts'])}",
            f"  samples         {r.sample_count}  {new(c['samples'])}",
            f'  round {r.round_.number:<9} "{r.round_.name}", {r.round_.get_status_display().lower()}, '
            f"{r.comparison_count} comparisons, {r.project.overlap} judgments each  {new(c['comparisons'])}",
            "",
            "Logins:",
        ]
        rows = [("username", "role", "password")]
        for login in r.logins:
            if login.password_works:
                shown = r.password
            else:
                shown = "(existing user: password unchanged)"
            rows.append((login.username, login.roles, shown))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for index, row in enumerate(rows):
            lines.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
            if index == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        if r.password_is_default:
            lines += [
                "",
                f"These users share the default password {DEFAULT_PASSWORD!r}: fine on your own machine,",
                "not on a server others can reach (choose one with --password on the first run).",
            ]
        return "\n".join(lines)
