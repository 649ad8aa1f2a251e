"""Reads for exports: jobs, their files, and the judgment stream an export is built from.

The stream is one SQL statement over judgments joined with everything a row needs,
ordered by comparison, read from a server-side cursor in fixed-size batches: memory
stays flat however many judgments there are. On PostgreSQL it runs on a connection of
its own in a REPEATABLE READ, READ ONLY transaction (one snapshot for the whole export)
while progress and heartbeats are written through the default connection.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import QuerySet

from annotation.models import (
    Comparison,
    Edit,
    Judgment,
    Preference,
    Prompt,
    Round,
    Safety,
    Sample,
)
from models_service.models import ModelVersion
from rlhf_export.models import ExportArtifact, ExportJob
from rlhf_export.schemas import ExportFilters

# --- Jobs ------------------------------------------------------------------------------


def export_job_list(*, user: Any = None, project: Any = None) -> QuerySet[ExportJob]:
    qs = ExportJob.objects.select_related("project", "created_by").order_by("-created_at", "-id")
    if project is not None:
        qs = qs.filter(project=project)
    return qs


def export_job_get(*, pk: int) -> ExportJob | None:
    return export_job_list().filter(pk=pk).first()


def export_artifact_list(*, job: ExportJob) -> QuerySet[ExportArtifact]:
    return ExportArtifact.objects.filter(job=job).order_by("id")


def export_artifact_get(*, job: ExportJob, name: str) -> ExportArtifact | None:
    return export_artifact_list(job=job).filter(name=name).first()


# --- The judgment stream ------------------------------------------------------------------

# Positions in a source row (one judgment with its comparison, prompt, samples, edit).
(
    J_ID,
    COMPARISON_ID,
    ANNOTATOR_ID,
    PREFERRED,
    STRENGTH,
    SAFETY,
    LEFT,
    TIME_MS,
    RATIONALE,
    SOURCE,
    CREATED_AT,
    EDIT_TEXT,
    EDIT_BASE,
    SAMPLE_A,
    SAMPLE_B,
    IS_GOLD,
    ROUND,
    PROMPT_ID,
    MESSAGES,
    TAGS,
    PROMPT_HASH,
    TEXT_A,
    TEXT_B,
    HASH_A,
    HASH_B,
    MODEL_A,
    MODEL_B,
    USERNAME,
) = range(28)


def _t(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _user_table() -> str:
    return connection.ops.quote_name(get_user_model()._meta.db_table)


@dataclass(frozen=True)
class SourceQuery:
    where: str
    params: list[Any]
    # Only raw exports write judgment times: parsing a timestamp per row is not free.
    with_created_at: bool = False


def _in(column: str, values: Sequence[Any], *, negate: bool = False) -> tuple[str, Any]:
    """``column IN values`` with the whole list as one parameter (array / JSON list)."""
    import json

    if connection.vendor == "postgresql":
        return (f"NOT ({column} = ANY(%s))" if negate else f"{column} = ANY(%s)"), list(values)
    op = "NOT IN" if negate else "IN"
    return f"{column} {op} (SELECT value FROM json_each(%s))", json.dumps(list(values))


def source_query(
    *,
    project_id: int,
    filters: ExportFilters,
    max_judgment_id: int,
    excluded_annotator_ids: Sequence[int],
    with_created_at: bool = False,
) -> SourceQuery:
    """The WHERE clause shared by the count (progress bar) and the stream."""
    where = ["r.project_id = %s", "j.id <= %s"]
    params: list[Any] = [project_id, max_judgment_id]
    if filters.rounds:
        clause, value = _in("r.number", filters.rounds)
        where.append(clause)
        params.append(value)
    if excluded_annotator_ids:
        clause, value = _in("j.annotator_id", sorted(excluded_annotator_ids), negate=True)
        where.append(clause)
        params.append(value)
    dropped = [
        choice
        for choice, drop in (
            (Preference.TIE, filters.drop_ties),
            (Preference.BOTH_BAD, filters.drop_both_bad),
            (Preference.CANT_JUDGE, filters.drop_cant_judge),
        )
        if drop
    ]
    if dropped:
        clause, value = _in("j.preferred", [str(d) for d in dropped], negate=True)
        where.append(clause)
        params.append(value)
    if filters.drop_chosen_unsafe:
        where.append("j.safety <> %s")
        params.append(str(Safety.CHOSEN_UNSAFE_OTHER_SAFE))
    if not filters.include_gold:
        where.append("c.is_gold = %s")
        params.append(False)
    return SourceQuery(where=" AND ".join(where), params=params, with_created_at=with_created_at)


def _from_clause() -> str:
    return (
        f" FROM {_t(Judgment)} j"
        f" JOIN {_t(Comparison)} c ON c.id = j.comparison_id"
        f" JOIN {_t(Round)} r ON r.id = c.round_id"
    )


def source_count(query: SourceQuery) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*)" + _from_clause() + " WHERE " + query.where, query.params)
        return int(cursor.fetchone()[0])


def source_state(*, project_id: int) -> dict[str, int]:
    """What the database holds for the project now: pinned by the first attempt of a job."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(MAX(j.id), 0), COUNT(*)" + _from_clause() + " WHERE r.project_id = %s", [project_id]
        )
        max_id, count = cursor.fetchone()
    return {"max_judgment_id": int(max_id), "judgment_count": int(count)}


def _created_at(query: SourceQuery) -> str:
    if not query.with_created_at:
        return "NULL"
    if connection.vendor == "postgresql":
        # Formatted by the server: a Python datetime per row costs more than the row.
        return "to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    return "j.created_at"


def _stream_sql(query: SourceQuery) -> str:
    return (
        'SELECT j.id, j.comparison_id, j.annotator_id, j.preferred, j.strength, j.safety, j."left",'
        " j.time_spent_ms, j.rationale, j.source, " + _created_at(query) + ", e.text, e.base_sample_id,"
        " c.sample_a_id, c.sample_b_id, c.is_gold, r.number, p.id, p.messages, p.tags, p.content_hash,"
        " sa.text, sb.text, sa.text_hash, sb.text_hash, ma.name, mb.name, u.username"
        + _from_clause()
        + f" JOIN {_t(Prompt)} p ON p.id = c.prompt_id"
        f" JOIN {_t(Sample)} sa ON sa.id = c.sample_a_id"
        f" JOIN {_t(Sample)} sb ON sb.id = c.sample_b_id"
        f" JOIN {_t(ModelVersion)} ma ON ma.id = sa.model_version_id"
        f" JOIN {_t(ModelVersion)} mb ON mb.id = sb.model_version_id"
        f" JOIN {_user_table()} u ON u.id = j.annotator_id"
        f" LEFT JOIN {_t(Edit)} e ON e.judgment_id = j.id"
        " WHERE "
        + query.where
        # (comparison, annotator) is unique: a total, stable order on every run.
        + " ORDER BY j.comparison_id, j.annotator_id"
    )


def source_batches(query: SourceQuery, *, batch_size: int) -> Iterator[list[tuple]]:
    """The judgment rows in batches of ``batch_size``, from a server-side cursor."""
    sql = _stream_sql(query)
    if connection.vendor != "postgresql":
        # SQLite steps through the result as rows are fetched; nothing is materialised.
        with connection.cursor() as cursor:
            cursor.execute(sql, query.params)
            while batch := cursor.fetchmany(batch_size):
                yield batch
        return
    if connection.in_atomic_block:
        # The caller holds a transaction (tests, an export started inside one): read in
        # it, so the rows it wrote are visible. A named cursor without WITH HOLD.
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(sql, query.params)
            while batch := cursor.fetchmany(batch_size):
                yield batch
        finally:
            cursor.close()
        return
    # A connection of its own: one consistent snapshot for the whole stream, while the
    # default connection commits progress after every batch. Without a transaction a
    # named cursor must be WITH HOLD, which makes PostgreSQL materialise the whole result.
    default = connections[DEFAULT_DB_ALIAS]
    settings_dict = {**default.settings_dict}

    def fetch(put) -> None:
        # Made in the reading thread: Django connections belong to the thread that made them.
        reader = type(default)(settings_dict, alias="rlhf_export_reader")
        try:
            reader.ensure_connection()
            raw = reader.connection
            with raw.transaction():
                raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                with raw.cursor(name="rlhf_export_stream") as cursor:
                    cursor.itersize = batch_size
                    cursor.execute(sql, query.params)
                    while batch := cursor.fetchmany(batch_size):
                        if not put(batch):
                            return
        finally:
            reader.close()

    # The server computes the next batch while this process turns the last one into
    # rows: two cores instead of one taking turns. At most two batches wait in memory.
    yield from _prefetched(fetch, depth=2)


_DONE = object()


def _prefetched(fetch, *, depth: int) -> Iterator[list[tuple]]:
    """Run ``fetch(put)`` in a thread; yield what it puts. Errors are raised here; closing
    the generator (a cancelled export) stops the thread at its next batch."""
    batches: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            fetch(put)
        except BaseException as exc:  # handed to the consumer
            put(exc)
        else:
            put(_DONE)

    thread = threading.Thread(target=run, name="rlhf-export-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = batches.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)


def grouped_by_comparison(batches: Iterator[list[tuple]], on_batch) -> Iterator[list[tuple]]:
    """Consecutive rows of one comparison together; ``on_batch(n)`` after each batch is consumed."""
    pending: list[tuple] = []
    for batch in batches:
        for comparison_id, group in itertools.groupby(batch, key=lambda row: row[COMPARISON_ID]):
            rows = list(group)
            if pending and pending[0][COMPARISON_ID] != comparison_id:
                yield pending
                pending = []
            pending.extend(rows)
        # The last comparison of a batch may go on in the next one: hold it back.
        on_batch(len(batch))
    if pending:
        yield pending
