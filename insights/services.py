"""Writes of the insights app: the tallies, recomputed from the judgments.

The database's triggers keep the tallies as judgments come and go (``insights.triggers``);
nothing in the application writes them. What bypasses triggers - a TRUNCATE, a restore of
the judgment table alone, a bulk load with triggers disabled - leaves them behind, and
``tallies_rebuild`` counts everything again (``manage.py tallies --rebuild``).
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from insights.triggers import backfill_statements, recount_queries

TALLY_TABLES = ("insights_comparisontally", "insights_verdicttally", "insights_projectactivity")


@transaction.atomic
def tallies_rebuild() -> None:
    """Count every judgment and edit again; the tables are locked meanwhile (PostgreSQL),
    so no judgment is counted twice or missed. Each project's change counter ends above
    where it was, so no cached report computed before the rebuild passes for fresh."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("LOCK TABLE annotation_judgment, annotation_edit IN SHARE MODE")
        before = dict(_fetch(cursor, "SELECT project_id, SUM(changes) FROM insights_projectactivity GROUP BY 1"))
        for statement in backfill_statements():
            cursor.execute(statement)
        for project_id, changes in sorted(before.items()):
            cursor.execute(
                "UPDATE insights_projectactivity SET changes = changes + %s WHERE project_id = %s AND annotator_id = "
                "(SELECT MIN(annotator_id) FROM insights_projectactivity WHERE project_id = %s)",
                [int(changes) + 1, project_id, project_id],
            )


def _fetch(cursor: Any, sql: str) -> list[tuple]:
    cursor.execute(sql)
    return [tuple(row) for row in cursor.fetchall()]


def tallies_differences() -> dict[str, int]:
    """How many rows of each tally differ from a recount (0 everywhere: the tallies are
    right). Reads only - judgments keep arriving meanwhile - and on PostgreSQL from one
    snapshot, so a judgment committed during the check is not taken for a difference."""
    differences = {}
    # Inside a caller's transaction (a test's) the snapshot is the caller's.
    own_transaction = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql" and own_transaction:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for table, (kept, counted) in recount_queries().items():
            differences[table] = len(set(_fetch(cursor, kept)) ^ set(_fetch(cursor, counted)))
    return {table: differences[table] for table in TALLY_TABLES}
