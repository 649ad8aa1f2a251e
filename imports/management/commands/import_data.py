"""python manage.py import_data {prompts,samples,pairs} FILE --project SLUG [...]

Validates every record; by default writes nothing when any record is bad (--skip-invalid
commits the good ones and lists the bad ones). Exit status 1 when nothing was written.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project, Round
from imports.services import FileFormat, ImportFailed, ImportKind, ImportOptions, import_run


class Command(BaseCommand):
    help = "Import prompts, samples or ready-made pairs (JSONL, CSV or a JSON array) into a project."

    def add_arguments(self, parser) -> None:
        parser.add_argument("kind", choices=[k.value for k in ImportKind])
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--round", type=int, help="round number (pairs: default creates an import round)")
        parser.add_argument("--source", default="", help="where the data comes from; names outside annotators")
        parser.add_argument("--format", choices=[f.value for f in FileFormat], help="default: from the file name")
        parser.add_argument("--skip-invalid", action="store_true", help="commit good lines, report bad ones")
        parser.add_argument("--model-a", default="model-a", help="pairs: model of response A when a row names none")
        parser.add_argument("--model-b", default="model-b", help="pairs: model of response B when a row names none")
        parser.add_argument(
            "--label-column",
            action="append",
            dest="label_columns",
            help="pairs: a column holding an existing label (repeatable; default: label)",
        )
        parser.add_argument("--tag", action="append", dest="tags", default=[], help="tag added to every prompt")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **opts) -> None:
        try:
            project = Project.objects.get(slug=opts["project"])
        except Project.DoesNotExist as exc:
            raise CommandError(f"no project with slug {opts['project']!r}") from exc
        round_ = None
        if opts["round"] is not None:
            round_ = Round.objects.filter(project=project, number=opts["round"]).first()
            if round_ is None:
                raise CommandError(f"project {project.slug!r} has no round {opts['round']}")
        path: Path = opts["path"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        options = ImportOptions(
            kind=ImportKind(opts["kind"]),
            project=project,
            round=round_,
            source=opts["source"],
            skip_invalid=opts["skip_invalid"],
            file_format=FileFormat(opts["format"]) if opts["format"] else None,
            model_a=opts["model_a"],
            model_b=opts["model_b"],
            label_columns=tuple(opts["label_columns"] or ()),
            extra_tags=tuple(opts["tags"]),
        )
        try:
            with path.open("rb") as stream:
                report = import_run(stream=stream, filename=path.name, options=options)
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            for error in report.errors:
                self.stderr.write(f"{path.name}: {error}")
            if report.error_count > len(report.errors):
                self.stderr.write(f"… and {report.error_count - len(report.errors)} more errors")
            self.stdout.write(report.summary())
        if not report.committed:
            raise CommandError(f"{path.name}: nothing was imported (fix the lines above or use --skip-invalid)")
