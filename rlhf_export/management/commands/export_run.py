"""Run one export job in this process, as the Celery task would (operations, debugging).

    manage.py export_run 42

Claims the job like a worker does: a job another worker holds with a fresh heartbeat
is left alone (exit status 3); one whose worker died is taken over once its heartbeat
is older than EXPORT_STALE_SECONDS.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from rlhf_export.services import RunOutcome, export_job_run

EXIT = {
    RunOutcome.SUCCEEDED: 0,
    RunOutcome.FAILED: 1,
    RunOutcome.CANCELLED: 2,
    RunOutcome.BUSY: 3,
    RunOutcome.SKIPPED: 4,
}


class Command(BaseCommand):
    help = "Run one export job in this process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id", type=int)

    def handle(self, *args, job_id: int, **options) -> None:
        outcome = export_job_run(job_id=job_id)
        self.stdout.write(f"export {job_id}: {outcome}")
        if outcome != RunOutcome.SUCCEEDED:
            raise CommandError(f"export {job_id} {outcome}", returncode=EXIT[outcome])
