"""Writes for exports: create and cancel jobs, and build a job's files (the worker's part).

``export_job_create`` validates everything a job asks for and queues the task after
commit (``export_job_queue``: a broker that is down leaves the job waiting, not the
request failing); ``export_job_run`` claims the job with a conditional update (docs/style.md),
streams judgments in batches (selectors), turns them into rows (builders), writes
shards under temporary names (writers), renames them, and records the files with
their SHA-256. Progress, heartbeat and the cancellation check are one conditional
UPDATE per batch: a job cancelled (or taken over after its worker died) stops at the
next batch and leaves no files behind. A thread beats the heartbeat in between
(``core.tasks.Heartbeat``), so a job is stale only when its worker is gone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone
from pydantic import ValidationError as PydanticValidationError

from annotation.models import Project, Round
from core.tasks import QUEUE_UNREACHABLE, Heartbeat, heartbeat_every, task_queue
from insights.reports import flagged_annotator_ids
from rlhf_export.builders import BuildContext, RowBuilder, schema_for
from rlhf_export.models import (
    ArtifactRole,
    ExportArtifact,
    ExportJob,
    ExportKind,
    ExportStatus,
    FileFormat,
    TextFormat,
)
from rlhf_export.schemas import (
    MARGINS,
    ExportFilters,
    ExportOptions,
    filters_from,
    options_from,
)
from rlhf_export.selectors import (
    grouped_by_comparison,
    source_batches,
    source_count,
    source_query,
    source_state,
)
from rlhf_export.writers import (
    PARQUET_OPTIONS,
    ROW_GROUP_ROWS,
    DatasetWriter,
    Sink,
    export_storage,
    sha256_of,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

try:  # psycopg's own error, raised by the reader connection (not wrapped by Django)
    from psycopg import OperationalError as PsycopgOperationalError
except ImportError:  # pragma: no cover
    PsycopgOperationalError = OperationalError  # type: ignore[misc,assignment]

# Worth another try: the database or the storage went away for a moment.
TEMPORARY_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PsycopgOperationalError,
    ConnectionError,
    TimeoutError,
)


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    FAILED = "failed"
    BUSY = "busy"  # another worker holds the job and its heartbeat is fresh
    SKIPPED = "skipped"  # nothing to do: finished, cancelled or gone


class ExportCancelled(Exception):
    """The job is no longer ours: cancelled, or claimed by another worker after a stale heartbeat."""


# --- Create and cancel ---------------------------------------------------------------------


def _pydantic_errors(prefix: str, exc: PydanticValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "Unknown field."
        errors.setdefault(f"{prefix}.{loc}" if loc else prefix, []).append(message)
    return errors


def export_filters_validate(
    *, project: Project, kind: str, filters: dict | None, options: dict | None
) -> tuple[ExportFilters, ExportOptions]:
    """The filters and options of a new job, checked against the schema and the project."""
    errors: dict[str, list[str]] = {}
    parsed_filters = parsed_options = None
    try:
        parsed_filters = filters_from(filters if isinstance(filters, dict) else None)
        if filters is not None and not isinstance(filters, dict):
            errors["filters"] = ["Expected an object."]
    except PydanticValidationError as exc:
        errors.update(_pydantic_errors("filters", exc))
    try:
        parsed_options = options_from(options if isinstance(options, dict) else None)
        if options is not None and not isinstance(options, dict):
            errors["options"] = ["Expected an object."]
    except PydanticValidationError as exc:
        errors.update(_pydantic_errors("options", exc))
    if parsed_options is not None and parsed_options.margin != "none" and kind != ExportKind.REWARD_MODEL:
        errors.setdefault("options.margin", []).append("A margin applies to reward-model exports only.")
    if parsed_filters is not None:
        known = set(Round.objects.filter(project=project).values_list("number", flat=True))
        missing = [n for n in parsed_filters.rounds if n not in known]
        if missing:
            errors.setdefault("filters.rounds", []).append(
                f"No round {', '.join(map(str, missing))} in project {project.slug!r}."
            )
        if parsed_filters.exclude_annotators:
            found = set(
                get_user_model()
                .objects.filter(username__in=parsed_filters.exclude_annotators)
                .values_list("username", flat=True)
            )
            unknown = [name for name in parsed_filters.exclude_annotators if name not in found]
            if unknown:
                errors.setdefault("filters.exclude_annotators", []).append(f"No such user: {', '.join(unknown)}.")
    if errors:
        raise ValidationError(errors)
    assert parsed_filters is not None and parsed_options is not None
    return parsed_filters, parsed_options


@transaction.atomic
def export_job_create(
    *,
    project: Project,
    kind: str,
    created_by: Any,
    file_format: str = FileFormat.PARQUET,
    text_format: str = TextFormat.STANDARD,
    filters: dict | None = None,
    options: dict | None = None,
) -> ExportJob:
    errors = {}
    if kind not in ExportKind.values:
        errors["kind"] = [f"Choose one of: {', '.join(ExportKind.values)}."]
    if file_format not in FileFormat.values:
        errors["file_format"] = [f"Choose one of: {', '.join(FileFormat.values)}."]
    if text_format not in TextFormat.values:
        errors["text_format"] = [f"Choose one of: {', '.join(TextFormat.values)}."]
    if errors:
        raise ValidationError(errors)
    parsed_filters, parsed_options = export_filters_validate(
        project=project, kind=kind, filters=filters, options=options
    )
    job = ExportJob.objects.create(
        project=project,
        kind=kind,
        file_format=file_format,
        text_format=text_format,
        filters=parsed_filters.model_dump(mode="json"),
        options=parsed_options.model_dump(mode="json"),
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
    )
    job.storage_prefix = f"{settings.EXPORT_STORAGE_PREFIX}/job-{job.pk}"
    job.save(update_fields=["storage_prefix"])
    job_id = job.pk
    transaction.on_commit(lambda: export_job_queue(job_id=job_id))
    return job


def export_job_queue(*, job_id: int) -> bool:
    """Queue the job's task. With the broker unreachable the request that created the
    job still succeeds: the job stays pending with a note that says why (its ``error``
    until a worker claims it) and the sweeper (``tasks.requeue_abandoned_exports``)
    queues it once the broker is back. Returns whether the task was queued."""
    from rlhf_export.tasks import export_job_run_task

    waiting = ExportJob.objects.filter(pk=job_id, status=ExportStatus.PENDING)
    if task_queue(export_job_run_task, job_id):
        waiting.filter(error=QUEUE_UNREACHABLE).update(error="")
        return True
    waiting.update(error=QUEUE_UNREACHABLE)
    return False


def export_jobs_stale(*, limit: int) -> list[int]:
    """Running jobs whose heartbeat is older than ``EXPORT_STALE_SECONDS``: their worker died."""
    stale_before = timezone.now() - timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    return list(
        ExportJob.objects.filter(status=ExportStatus.RUNNING, heartbeat_at__lt=stale_before)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


def export_jobs_waiting(*, limit: int) -> list[int]:
    """Pending jobs no task will start: their queueing failed (the broker was down), or
    they were queued longer than ``JOB_PENDING_REQUEUE_SECONDS`` ago (the message was lost)."""
    queued_before = timezone.now() - timedelta(seconds=settings.JOB_PENDING_REQUEUE_SECONDS)
    return list(
        ExportJob.objects.filter(
            Q(error=QUEUE_UNREACHABLE) | Q(created_at__lt=queued_before), status=ExportStatus.PENDING
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


@transaction.atomic
def export_job_cancel(*, job: ExportJob) -> ExportJob:
    """Stop a pending or running job. A running worker notices at its next batch and
    deletes what it wrote; a job that already finished cannot be cancelled."""
    updated = ExportJob.objects.filter(pk=job.pk, status__in=[ExportStatus.PENDING, ExportStatus.RUNNING]).update(
        status=ExportStatus.CANCELLED, finished_at=timezone.now()
    )
    job.refresh_from_db()
    if not updated:
        raise ValidationError(
            {"status": [f"The job has already {job.status}; only pending or running jobs can be cancelled."]}
        )
    return job


def export_job_fail(*, job_id: int, error: str) -> None:
    """Record a failure that retries could not fix (the task gave up)."""
    ExportJob.objects.filter(pk=job_id, status__in=[ExportStatus.PENDING, ExportStatus.RUNNING]).update(
        status=ExportStatus.FAILED, error=error[:5000], finished_at=timezone.now()
    )


# --- Run (the Celery task's body) ------------------------------------------------------------


def _claim(job_id: int) -> ExportJob | None:
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    claimed = ExportJob.objects.filter(
        Q(status=ExportStatus.PENDING) | Q(status=ExportStatus.RUNNING, heartbeat_at__lt=stale_before), pk=job_id
    ).update(status=ExportStatus.RUNNING, attempt=F("attempt") + 1, heartbeat_at=now, error="")
    if not claimed:
        return None
    job = ExportJob.objects.select_related("project").get(pk=job_id)
    if job.started_at is None:
        ExportJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
        job.started_at = now
    return job


def _beat(job: ExportJob) -> Callable[[], bool]:
    """The heartbeat thread's update: between batches too (a big shard's upload, a slow
    first query), so that only a dead worker's job looks stale."""

    def beat() -> bool:
        return bool(
            ExportJob.objects.filter(pk=job.pk, status=ExportStatus.RUNNING, attempt=job.attempt).update(
                heartbeat_at=timezone.now()
            )
        )

    return beat


def _still_ours(job: ExportJob, **fields: Any) -> None:
    updated = ExportJob.objects.filter(pk=job.pk, status=ExportStatus.RUNNING, attempt=job.attempt).update(
        heartbeat_at=timezone.now(), **fields
    )
    if not updated:
        raise ExportCancelled()


def _pin_source_state(job: ExportJob, filters: ExportFilters) -> dict[str, Any]:
    """What the first attempt saw; every retry reads exactly the same judgments."""
    if job.source_state:
        return job.source_state
    state: dict[str, Any] = source_state(project_id=job.project_id)
    excluded: set[int] = set()
    if filters.exclude_annotators:
        excluded |= set(
            get_user_model().objects.filter(username__in=filters.exclude_annotators).values_list("pk", flat=True)
        )
    flagged: list[int] = []
    if filters.exclude_flagged_annotators:
        rounds = list(Round.objects.filter(project=job.project, number__in=filters.rounds)) if filters.rounds else None
        flagged = sorted(int(pk) for pk in flagged_annotator_ids(project=job.project, rounds=rounds))
        excluded |= set(flagged)
    state["flagged_annotator_ids"] = flagged
    state["excluded_annotator_ids"] = sorted(excluded)
    _still_ours(job, source_state=state)
    job.source_state = state
    return state


@dataclass(frozen=True)
class _File:
    name: str
    role: str
    split: str
    rows: int | None
    size: int
    sha256: str
    path: Path


def export_job_run(*, job_id: int) -> RunOutcome:
    job = _claim(job_id)
    if job is None:
        current = ExportJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
        return RunOutcome.BUSY if current == ExportStatus.RUNNING else RunOutcome.SKIPPED
    sink = Sink(storage=export_storage(), prefix=job.storage_prefix, attempt=job.attempt, job_id=job.pk)
    committed: list[str] = []
    try:
        with Heartbeat(_beat(job), every=heartbeat_every(settings.EXPORT_STALE_SECONDS), name=f"export {job.pk}"):
            _build(job, sink, committed)
    except ExportCancelled:
        logger.info("export %s: cancelled (or taken over) at attempt %s", job.pk, job.attempt)
        _cleanup_if_not_ours(job, sink, committed)
        return RunOutcome.CANCELLED
    except TEMPORARY_ERRORS:
        sink.discard()
        try:  # hand the job back at once; if the database is down, the stale heartbeat does it
            ExportJob.objects.filter(pk=job.pk, status=ExportStatus.RUNNING, attempt=job.attempt).update(
                status=ExportStatus.PENDING, heartbeat_at=None
            )
        except TEMPORARY_ERRORS:
            pass
        raise
    except Exception as exc:
        logger.exception("export %s failed", job.pk)
        failed = ExportJob.objects.filter(pk=job.pk, status=ExportStatus.RUNNING, attempt=job.attempt).update(
            status=ExportStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:5000], finished_at=timezone.now()
        )
        if failed:
            sink.remove(committed)
        else:
            # Taken over meanwhile (our heartbeat went stale): the folder is the new attempt's.
            sink.discard()
        return RunOutcome.FAILED
    return RunOutcome.SUCCEEDED


def _cleanup_if_not_ours(job: ExportJob, sink: Sink, committed: list[str]) -> None:
    status = ExportJob.objects.filter(pk=job.pk).values_list("status", "attempt").first()
    if status is None or status[0] == ExportStatus.CANCELLED:
        sink.remove(committed)
    else:
        sink.discard()  # another attempt owns the folder now: touch only our work files


def _build(job: ExportJob, sink: Sink, committed: list[str]) -> None:
    filters = filters_from(job.filters)
    options = options_from(job.options)
    state = _pin_source_state(job, filters)
    query = source_query(
        project_id=job.project_id,
        filters=filters,
        max_judgment_id=state["max_judgment_id"],
        excluded_annotator_ids=state["excluded_annotator_ids"],
        with_created_at=job.kind == ExportKind.RAW,
    )
    total = source_count(query)
    _still_ours(job, judgments_done=0, judgments_total=total)
    sink.prepare()
    schema = schema_for(job.kind, job.text_format, options)
    writer = DatasetWriter(
        schema=schema, file_format=job.file_format, rows_per_shard=options.rows_per_shard, work_dir=sink.work_dir
    )
    ctx = BuildContext(kind=job.kind, text_format=job.text_format, filters=filters, options=options)
    builder = RowBuilder(ctx)
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done = min(total, done + n)
        _still_ours(job, judgments_done=done)

    batch_size = settings.EXPORT_BATCH_SIZE
    try:
        for group in grouped_by_comparison(source_batches(query, batch_size=batch_size), on_batch):
            for split, row in builder.rows(group):
                writer.write(split, row)
        written = writer.close()
    except BaseException:
        writer.abort()
        raise

    files = [
        _File(
            writer.final_name(w), ArtifactRole.DATA, w.split, w.rows, w.path.stat().st_size, sha256_of(w.path), w.path
        )
        for w in written
    ]
    counts = {"judgments_read": done, **dict(sorted(ctx.counts.items()))}
    rows = dict(sorted(writer.rows.items()))
    card = _write_text(
        sink.work_dir / "README.md", dataset_card(job, filters, options, schema, files, rows, counts, state)
    )
    files.append(_File("README.md", ArtifactRole.CARD, "", None, card.stat().st_size, sha256_of(card), card))
    manifest = _write_text(
        sink.work_dir / "manifest.json", manifest_json(job, filters, options, schema, files, rows, counts, state)
    )
    files.append(
        _File("manifest.json", ArtifactRole.MANIFEST, "", None, manifest.stat().st_size, sha256_of(manifest), manifest)
    )

    _still_ours(job)  # a job cancelled while we wrote never shows final files
    storage_names = {}
    for f in files:  # data first, the card, and the manifest last
        storage_names[f.name] = sink.commit(f.path, f.name)
        committed.append(storage_names[f.name])
    with transaction.atomic():
        updated = ExportJob.objects.filter(pk=job.pk, status=ExportStatus.RUNNING, attempt=job.attempt).update(
            status=ExportStatus.SUCCEEDED,
            judgments_done=total,
            rows_total=sum(rows.values()),
            rows_train=rows.get("train", 0),
            rows_test=rows.get("test", 0),
            counts=counts,
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )
        if not updated:
            raise ExportCancelled()
        ExportArtifact.objects.filter(job=job).delete()
        ExportArtifact.objects.bulk_create(
            ExportArtifact(
                job=job,
                name=f.name,
                role=f.role,
                split=f.split,
                storage_name=storage_names[f.name],
                size=f.size,
                sha256=f.sha256,
                rows=f.rows,
            )
            for f in files
        )
    sink.discard()


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- Manifest and dataset card ------------------------------------------------------------------


def schema_description(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def _load_hint(job: ExportJob, files: list[_File]) -> str:
    builder = "json" if job.file_format == FileFormat.JSONL else "parquet"
    splits: dict[str, list[str]] = {}
    for f in files:
        if f.role == ArtifactRole.DATA:
            splits.setdefault(f.split, []).append(f.name)
    return f"datasets.load_dataset({builder!r}, data_files={json.dumps(splits)})"


def manifest_json(job, filters, options, schema, files, rows, counts, state) -> str:
    """Everything needed to check and reproduce the export. No job id, no time: the
    same filters on the same data give the same manifest, byte for byte."""
    try:
        from importlib.metadata import version

        prefdata_version = version("prefdata")
    except Exception:
        prefdata_version = "unknown"
    manifest = {
        "format_version": FORMAT_VERSION,
        "project": job.project.slug,
        "kind": job.kind,
        "file_format": job.file_format,
        "text_format": job.text_format,
        "filters": filters.model_dump(mode="json"),
        "options": options.model_dump(mode="json"),
        "margin_table": MARGINS.get(options.margin) if job.kind == ExportKind.REWARD_MODEL else None,
        "schema": schema_description(schema),
        "rows": rows,
        "counts": counts,
        "files": [
            {
                "name": f.name,
                "role": f.role,
                "split": f.split or None,
                "rows": f.rows,
                "size": f.size,
                "sha256": f.sha256,
            }
            for f in files
        ],
        "source": {
            "max_judgment_id": state["max_judgment_id"],
            "judgment_count": state["judgment_count"],
            "excluded_annotator_ids": state["excluded_annotator_ids"],
            "flagged_annotator_ids": state.get("flagged_annotator_ids", []),
        },
        "writer": {
            "prefdata": prefdata_version,
            "pyarrow": pa.__version__,
            "parquet_options": PARQUET_OPTIONS if job.file_format == FileFormat.PARQUET else None,
            "row_group_rows": ROW_GROUP_ROWS if job.file_format == FileFormat.PARQUET else None,
        },
        "load": _load_hint(job, files),
    }
    return json.dumps(manifest, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


_KIND_NOTES = {
    ExportKind.REWARD_MODEL: "Preference pairs for reward-model training (TRL `RewardTrainer`, OpenRLHF "
    "`train_rm` with `--prompt_key prompt --chosen_key chosen --rejected_key rejected`, plus "
    "`--apply_chat_template` for the conversational format). The optional `margin` column follows "
    "Llama 2's loss −log σ(r_c − r_r − m(r)).",
    ExportKind.DPO: "Preference pairs for DPO (TRL `DPOTrainer`, OpenRLHF `train_dpo`). Standard format: a "
    "one-turn prompt is its text, a longer conversation an HH-RLHF-style transcript ending in 'Assistant:'.",
    ExportKind.SFT: "Supervised fine-tuning rows from the annotators' teacher-critic rewrites: the conversation "
    "ends in the edited answer (TRL `SFTTrainer`). Every rewrite of a kept judgment is a row; aggregation and "
    "the minimum strength do not apply.",
    ExportKind.LLAMA3: "Llama 3 §4.2.1 expansion: where an annotator rewrote the answer, edited > chosen > "
    "rejected gives the pairs edited>chosen, edited>rejected and chosen>rejected (`pair_type`); a rewrite of a "
    "'both bad' pair beats both answers (edited>both_bad). With majority aggregation only rewrites by annotators "
    "who voted with the majority count. The minimum strength applies to chosen>rejected only.",
    ExportKind.RAW: "One row per judgment, in sample terms (A/B), for audits and reanalysis. Aggregation, the "
    "minimum strength and de-duplication do not apply; `annotators` and `agreement` describe the comparison.",
}


def dataset_card(job, filters, options, schema, files, rows, counts, state) -> str:
    data_files = [f for f in files if f.role == ArtifactRole.DATA]
    splits = sorted({f.split for f in data_files}, key=lambda s: (s != "train", s))
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    ext = "jsonl" if job.file_format == FileFormat.JSONL else "parquet"
    for split in splits:
        lines += [f"  - split: {split}", f"    path: data/{split}-*.{ext}"]
    lines += ["tags:", "- rlhf", "- human-preferences", f"- {job.kind}", "---", ""]
    lines += [
        f"# {job.project.name}: {ExportKind(job.kind).label}",
        "",
        _KIND_NOTES[ExportKind(job.kind)],
        "",
        f"Format: {FileFormat(job.file_format).label}, TRL {TextFormat(job.text_format).label.lower()}.",
        "",
        "## Counts",
        "",
        "| split | rows |",
        "|---|---|",
    ]
    lines += [f"| {split} | {rows.get(split, 0)} |" for split in splits]
    lines += ["", "| what | count |", "|---|---|"]
    lines += [f"| {key.replace('_', ' ')} | {value} |" for key, value in counts.items()]
    lines += [
        "",
        f"Source: judgments up to id {state['max_judgment_id']} ({state['judgment_count']} in the project then).",
        "",
        "## Schema",
        "",
        "| column | type |",
        "|---|---|",
    ]
    lines += [f"| `{f.name}` | `{f.type}` |" for f in schema]
    lines += ["", "## Files", "", "| file | rows | bytes | sha256 |", "|---|---|---|---|"]
    lines += [f"| `{f.name}` | {f.rows} | {f.size} | `{f.sha256}` |" for f in data_files]
    lines += [
        "",
        "## Filters",
        "",
        "```json",
        json.dumps({"filters": filters.model_dump(mode="json"), "options": options.model_dump(mode="json")}, indent=2),
        "```",
        "",
        (
            "The test split holds the prompts whose SHA-256 of `split_seed` and the prompt's content hash falls "
            "below `test_fraction`: no prompt is in both splits, and every rerun splits the same way."
        ),
        "",
        "## Load",
        "",
        "```python",
        "import datasets",
        f"ds = {_load_hint(job, files)}",
        "```",
        "",
        "`manifest.json` lists every file with its SHA-256 (`sha256sum -c` friendly values).",
        "",
    ]
    return "\n".join(lines)
