"""Imports of prompts, samples and ready-made pairs (with optional existing labels).

Files stream (``imports.readers``): records are read one at a time, validated
(``imports.rows``) and written in batches of ``IMPORT_BATCH_SIZE`` (``imports.writer``);
memory does not grow with the file. Every record is checked and every problem is reported
with its line (or item) and field. The whole import runs in one transaction: by default a
single bad record means nothing is written; with ``skip_invalid`` the bad records are
reported and every good one is committed.
"""

from __future__ import annotations

import time
from typing import IO

from django.db import DatabaseError, DataError, IntegrityError, transaction
from pydantic import ValidationError

from annotation.bulk import analyze, constraints_immediate
from annotation.models import Comparison, Judgment, Prompt, Sample
from imports.readers import Broken, detect_format, iter_records
from imports.report import FileFormat, ImportFailed, ImportKind, ImportOptions, ImportReport, RowError
from imports.rows import ROW_MODELS, PairRow, known_fields, labels_from_record, labels_in_record, pydantic_errors
from imports.writer import Importer, Valid
from models_service.rounds import round_build_comparisons

__all__ = ["FileFormat", "ImportFailed", "ImportKind", "ImportOptions", "ImportReport", "RowError", "import_run"]

# Imports that write at least this many rows refresh the planner's statistics.
ANALYZE_AFTER_ROWS = 10_000


def import_run(*, stream: IO[bytes], filename: str, options: ImportOptions) -> ImportReport:
    """Validate and import one file. Returns a report; raises ImportFailed only for bad options."""
    started = time.perf_counter()
    report = ImportReport(kind=options.kind.value)
    if options.round is not None and options.round.project_id != options.project.pk:
        raise ImportFailed(f"round {options.round.pk} belongs to another project")
    if options.kind == ImportKind.PROMPTS and options.round is not None:
        raise ImportFailed("prompts are imported into a project, not a round")
    head = b""
    if options.file_format is None and hasattr(stream, "seek"):
        head = stream.read(64)
        stream.seek(0)
    file_format = options.file_format or detect_format(filename, head)
    row_model = ROW_MODELS[options.kind]
    known = known_fields(options.kind, options)
    batch_size, max_errors = options.batch_size, options.max_errors
    try:
        with transaction.atomic():
            constraints_immediate()
            importer = Importer(options, report)
            batch: list[Valid] = []
            pairs = options.kind == ImportKind.PAIRS
            for line, record in iter_records(stream, file_format, max_record_bytes=options.max_record_bytes):
                report.records += 1
                if isinstance(record, Broken):
                    importer.error(line, record.field, record.message)
                    if record.fatal:
                        break
                    continue
                if not isinstance(record, dict):
                    importer.error(line, "", f"expected an object, found {type(record).__name__}")
                    continue
                if pairs:
                    report.labels_read += labels_in_record(record, options)
                try:
                    row = row_model.model_validate(record)
                    labels = labels_from_record(record, row, options) if isinstance(row, PairRow) else []
                except ValidationError as exc:
                    for field_name, message in pydantic_errors(exc):
                        importer.error(line, field_name, message)
                    importer.labels_lost(line, labels_in_record(record, options) if pairs else 0)
                    continue
                except ValueError as exc:
                    importer.error(line, "label", str(exc))
                    importer.labels_lost(line, labels_in_record(record, options))
                    continue
                unknown = record.keys() - known
                if unknown:
                    report.ignored_fields.update(unknown)
                report.valid += 1
                # Records are written even after an error (and rolled back at the end) so
                # that references to unknown prompts or taken seeds are reported too; past
                # the error limit an import that will be rolled back only checks structure.
                # With skip_invalid every good record is written, however many were bad.
                if options.skip_invalid or report.error_count < max_errors:
                    batch.append(Valid(line, row, labels))
                    if len(batch) >= batch_size:
                        importer.write(batch)
                        batch = []
            if batch and (options.skip_invalid or report.error_count < max_errors):
                importer.write(batch)
            if options.kind == ImportKind.SAMPLES and options.round is not None and report.error_count == 0:
                report.add("created", "comparisons", round_build_comparisons(round_=options.round))
            if report.error_count and not options.skip_invalid:
                transaction.set_rollback(True)
            else:
                report.committed = True
    except ImportFailed as exc:
        report.error_count += 1
        report.errors.append(RowError(None, "", str(exc)))
        report.committed = False
    except IntegrityError as exc:
        report.error_count += 1
        report.errors.append(
            RowError(None, "", f"the database refused the import (a concurrent import of the same data?): {exc}")
        )
        report.committed = False
    except DataError as exc:  # a value the checks above let through and a column refuses
        report.error_count += 1
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        report.errors.append(RowError(None, "", f"the database refused a value: {reason}"))
        report.committed = False
    except DatabaseError:
        report.committed = False
        raise
    if report.committed and sum(report.created.values()) >= ANALYZE_AFTER_ROWS:
        analyze([Prompt, Sample, Comparison, Judgment])
    report.labels_not_stored_at.sort(key=lambda p: (p.line or 0, p.item or 0))
    if not report.committed:
        report.created = {}
        report.labels_not_stored, report.labels_not_stored_at = report.labels_read, []
        if options.round is None:
            report.round_id = None
    report.seconds = time.perf_counter() - started
    return report
