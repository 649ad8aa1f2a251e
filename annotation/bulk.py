"""Fast row writes for imports: ids allocated up front, rows streamed in.

On PostgreSQL rows go through ``COPY … FROM STDIN`` (psycopg 3), an order of
magnitude faster than INSERT … VALUES, with ids taken from the table's sequence
in one round trip so that child rows can reference parents without RETURNING.
On SQLite the same calls use ``executemany`` and the AUTOINCREMENT counter.
Both run inside the caller's transaction: a rollback leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
from django.db import connection
from django.db.models import Model


def _table(model: type[Model]) -> str:
    return model._meta.db_table


_SEQUENCES: dict[str, str] = {}


def constraints_immediate() -> None:
    """Check foreign keys per statement instead of at commit (PostgreSQL).

    Django declares its FKs DEFERRABLE INITIALLY DEFERRED; a bulk import would queue
    one trigger event per row and check them all at COMMIT, which is slower and
    reports a violation only at the very end.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def allocate_ids(model: type[Model], count: int) -> list[int]:
    """Reserve ``count`` primary keys for ``model`` (never handed to anyone else)."""
    if count <= 0:
        return []
    table = _table(model)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if table not in _SEQUENCES:
                cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                _SEQUENCES[table] = cursor.fetchone()[0]
            cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [_SEQUENCES[table], count])
            return [row[0] for row in cursor.fetchall()]
        # SQLite: AUTOINCREMENT keeps its high-water mark in sqlite_sequence. Bumping it
        # is a write, so it also takes the database write lock for this transaction.
        cursor.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT %s, COALESCE((SELECT MAX(id) FROM "
            + connection.ops.quote_name(table)
            + "), 0) WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = %s)",
            [table, table],
        )
        cursor.execute("UPDATE sqlite_sequence SET seq = seq + %s WHERE name = %s RETURNING seq", [count, table])
        last = cursor.fetchone()[0]
    return list(range(last - count + 1, last + 1))


def insert_rows(model: type[Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order; dicts/lists for JSON columns)."""
    if not rows:
        return
    table = _table(model)
    json_positions = [i for i, c in enumerate(columns) if _is_json(model, c)]
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    if json_positions:
        rows = [_encode_json(row, json_positions) for row in rows]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {connection.ops.quote_name(table)} ({quoted}) VALUES ({placeholders})", rows
            )


def _is_json(model: type[Model], column: str) -> bool:
    field = next(f for f in model._meta.concrete_fields if f.column == column)
    return field.get_internal_type() == "JSONField"


def _encode_json(row: Sequence[Any], positions: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in positions:
        value = values[i]
        values[i] = "{}" if value == {} else "[]" if value == [] else orjson.dumps(value).decode()
    return tuple(values)


def in_values(column: str, values) -> tuple[str, Any]:
    """``column IN values`` with the whole list as one parameter.

    Thousands of ``%s`` placeholders cost more to build and parse than the query
    itself; an array (PostgreSQL) or a JSON list (SQLite) is one parameter.
    """
    values = list(values)
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", values
    return f"{column} IN (SELECT value FROM json_each(%s))", json.dumps(values)


def fetch(sql: str, params: Sequence[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# Tables other apps keep in step with ours (insights' tallies, written by triggers on the
# judgment table): a bulk write of judgments changes them as much. Apps register them at start.
ANALYZE_WITH_JUDGMENTS: list[str] = []


def analyze(models: Sequence[type[Model]]) -> None:
    """Refresh the planner's statistics after a bulk write (PostgreSQL).

    Autovacuum would get there, but until it does the planner believes the tables are
    as small as before the import, and picks nested loops that crawl (the assignment
    engine's pool scans went from ~1 ms to 200 ms right after a large import).
    """
    if connection.vendor != "postgresql":
        return
    tables = [_table(m) for m in models]
    if "annotation_judgment" in tables:
        tables += ANALYZE_WITH_JUDGMENTS
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))


def add_to_counts(model: type[Model], amounts: dict[int, int], columns: Sequence[str]) -> None:
    """Add ``amounts[id]`` to each of ``columns`` of the rows with those ids, in one statement
    on PostgreSQL (an UPDATE joined to the arrays of ids and amounts)."""
    if not amounts:
        return
    table = connection.ops.quote_name(_table(model))
    sets = ", ".join(f"{connection.ops.quote_name(c)} = {connection.ops.quote_name(c)} + d.n" for c in columns)
    ids, ns = list(amounts), list(amounts.values())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} AS t SET {sets} "
                "FROM unnest(%s::bigint[], %s::integer[]) AS d(id, n) WHERE t.id = d.id",
                [ids, ns],
            )
        else:
            plain = ", ".join(f"{connection.ops.quote_name(c)} = {connection.ops.quote_name(c)} + %s" for c in columns)
            cursor.executemany(
                f"UPDATE {table} SET {plain} WHERE id = %s", [(*([n] * len(columns)), pk) for pk, n in amounts.items()]
            )
