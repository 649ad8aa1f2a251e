"""Writes of the insights app: the tallies, recomputed from the judgments.

The database's triggers keep the tallies as judgments come and go (``insights.triggers``);
nothing in the application writes them. What bypasses triggers - a TRUNCATE, a restore of
the judgment table alone, a bulk load with triggers disabled - leaves them behind, and
``tallies_rebuild`` counts everything again (``manage.py tallies --rebuild``).
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from insights.triggers import backfill_statements

TALLY_TABLES = ("insights_comparisontally", "insights_verdicttally", "insights_projectactivity")


@transaction.atomic
def tallies_rebuild() -> None:
    """Count every judgment and edit again; the tables are locked meanwhile (PostgreSQL),
    so no judgment is counted twice or missed."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("LOCK TABLE annotation_judgment, annotation_edit IN SHARE MODE")
        for statement in backfill_statements():
            cursor.execute(statement)


def _snapshot(cursor: Any) -> dict[str, set[tuple]]:
    return {
        "insights_comparisontally": set(_fetch(cursor, "SELECT * FROM insights_comparisontally WHERE total <> 0")),
        "insights_verdicttally": set(
            _fetch(
                cursor,
                "SELECT round_id, annotator_id, version_a_id, version_b_id, preferred, strength, safety, n "
                "FROM insights_verdicttally WHERE n <> 0",
            )
        ),
        "insights_projectactivity": set(
            _fetch(
                cursor,
                "SELECT project_id, annotator_id, judgments, edits FROM insights_projectactivity "
                "WHERE judgments <> 0 OR edits <> 0",
            )
        ),
    }


def _fetch(cursor: Any, sql: str) -> list[tuple]:
    cursor.execute(sql)
    return [tuple(row) for row in cursor.fetchall()]


def tallies_differences() -> dict[str, int]:
    """How many rows of each tally differ from a recount (0 everywhere: the tallies are
    right). Recounts in a transaction that is rolled back, so nothing changes."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            kept = _snapshot(cursor)
            for statement in backfill_statements():
                cursor.execute(statement)
            counted = _snapshot(cursor)
        transaction.set_rollback(True)
    return {table: len(kept[table] ^ counted[table]) for table in TALLY_TABLES}
