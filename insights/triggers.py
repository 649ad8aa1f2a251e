"""The triggers that keep the tallies (``insights.models``), as SQL for PostgreSQL and SQLite.

PostgreSQL runs them once per statement, over the statement's rows (transition tables):
a bulk import's COPY of 2,000 judgments is one grouped upsert per tally table, not 2,000.
SQLite has row triggers only; it holds small data.

On a judgment:
- inserted: its comparison's tally, its (round, annotator, versions, verdict) tally and
  its (project, annotator) activity go up;
- deleted: they go down (judgments are deleted before their comparison, so the
  comparison is still there to say which round and versions they counted for);
- updated (the admin): the old row counts out, the new one in.
On an edit inserted, changed or deleted, its judgment's (project, annotator) activity
moves. A prompt's tags changed: its comparisons' tallies take the new ones. A deleted
comparison, round or project takes its tally rows along.

``install`` is what migration 0002 runs; ``backfill`` recomputes every tally from the
judgments (the migration, and ``insights.services.tallies_rebuild``). A later change to
the triggers comes as a new function and a new migration, as ``install_guards`` for 0003:

- a prompt's turns follow like its tags, and each change of either moves the project's
  ``insights_promptactivity`` counter (part of the cache's fingerprint);
- a judged comparison cannot move to another round, prompt or pair of answers, a judged
  answer cannot change its model version or prompt, and a round with judgments cannot
  move to another project: the tallies (and the people who judged) saw them as they were.
  The database refuses such an update as an integrity error, whatever sends it.
"""

from __future__ import annotations

from typing import Any

# (column of insights_comparisontally, condition on a judgment row named {j}).
_STRENGTHS = (
    ("significantly", "significantly"),
    ("better", "better"),
    ("slightly", "slightly"),
    ("negligibly", "negligibly"),
    ("unrated", ""),
)
CATEGORIES: tuple[tuple[str, str], ...] = (
    *((f"a_{name}", f"{{j}}.preferred = 'A' AND {{j}}.strength = '{value}'") for name, value in _STRENGTHS),
    *((f"b_{name}", f"{{j}}.preferred = 'B' AND {{j}}.strength = '{value}'") for name, value in _STRENGTHS),
    ("tie", "{j}.preferred = 'tie'"),
    ("both_bad", "{j}.preferred = 'both_bad'"),
    ("cant_judge", "{j}.preferred = 'cant_judge'"),
)
_COUNTED = [name for name, _ in CATEGORIES] + ["total"]
_VERDICT_KEY = "round_id, annotator_id, version_a_id, version_b_id, preferred, strength, safety"

_JOINS = (
    "JOIN annotation_comparison c ON c.id = {j}.comparison_id "
    "JOIN annotation_sample sa ON sa.id = c.sample_a_id "
    "JOIN annotation_sample sb ON sb.id = c.sample_b_id"
)


def _sums(j: str) -> str:
    return ", ".join(f"SUM(CASE WHEN {cond.format(j=j)} THEN 1 ELSE 0 END)" for _, cond in CATEGORIES) + ", COUNT(*)"


_TALLY_COLUMNS = f"comparison_id, round_id, prompt_id, version_a_id, version_b_id, turns, tags, {', '.join(_COUNTED)}"


def _comparison_tallies(source: str) -> str:
    """The rows of ``insights_comparisontally`` the judgments of ``source`` make (columns
    in the order of ``_TALLY_COLUMNS``)."""
    j = "j"
    return (
        f"SELECT c.id, c.round_id, c.prompt_id, sa.model_version_id, sb.model_version_id, p.turns, p.tags, {_sums(j)} "
        f"FROM {source} {j} {_JOINS.format(j=j)} JOIN annotation_prompt p ON p.id = c.prompt_id "
        "WHERE 1 = 1 GROUP BY c.id, c.round_id, c.prompt_id, sa.model_version_id, sb.model_version_id, p.turns, p.tags"
    )


def _verdict_tallies(source: str) -> str:
    j = "j"
    return (
        f"SELECT c.round_id, {j}.annotator_id, sa.model_version_id, sb.model_version_id, {j}.preferred, "
        f"{j}.strength, {j}.safety, COUNT(*) FROM {source} {j} {_JOINS.format(j=j)} WHERE 1 = 1 "
        "GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )


def _grouped_add(source: str) -> list[str]:
    """Add the judgments of ``source`` (a table, or a transition table) to the tallies:
    grouped upserts, ordered so that concurrent writers lock rows in the same order."""
    j = "j"
    adds = ", ".join(f"{c} = t.{c} + excluded.{c}" for c in _COUNTED)
    return [
        (
            f"INSERT INTO insights_comparisontally AS t ({_TALLY_COLUMNS}) {_comparison_tallies(source)} "
            f"ORDER BY c.id ON CONFLICT (comparison_id) DO UPDATE SET {adds}"
        ),
        (
            f"INSERT INTO insights_verdicttally AS t ({_VERDICT_KEY}, n) {_verdict_tallies(source)} "
            f"ORDER BY 1, 2, 3, 4, 5, 6, 7 ON CONFLICT ({_VERDICT_KEY}) DO UPDATE SET n = t.n + excluded.n"
        ),
        (
            "INSERT INTO insights_projectactivity AS t (project_id, annotator_id, judgments, edits, changes) "
            f"SELECT r.project_id, {j}.annotator_id, COUNT(*), 0, COUNT(*) FROM {source} {j} "
            f"JOIN annotation_comparison c ON c.id = {j}.comparison_id JOIN annotation_round r ON r.id = c.round_id "
            "WHERE 1 = 1 GROUP BY 1, 2 ORDER BY 1, 2 ON CONFLICT (project_id, annotator_id) DO UPDATE SET "
            "judgments = t.judgments + excluded.judgments, changes = t.changes + excluded.changes"
        ),
    ]


def recount_queries() -> dict[str, tuple[str, str]]:
    """Per tally table: (what it holds, what it should hold, counted from the judgments
    and edits) as two SELECTs of the same columns - the check, which writes nothing."""
    return {
        "insights_comparisontally": (
            f"SELECT {_TALLY_COLUMNS} FROM insights_comparisontally WHERE total <> 0",
            _comparison_tallies("annotation_judgment"),
        ),
        "insights_verdicttally": (
            f"SELECT {_VERDICT_KEY}, n FROM insights_verdicttally WHERE n <> 0",
            _verdict_tallies("annotation_judgment"),
        ),
        "insights_projectactivity": (
            "SELECT project_id, annotator_id, judgments, edits FROM insights_projectactivity "
            "WHERE judgments <> 0 OR edits <> 0",
            "SELECT r.project_id, j.annotator_id, COUNT(*), COUNT(e.id) FROM annotation_judgment j "
            "JOIN annotation_comparison c ON c.id = j.comparison_id JOIN annotation_round r ON r.id = c.round_id "
            "LEFT JOIN annotation_edit e ON e.judgment_id = j.id GROUP BY 1, 2",
        ),
    }


def _grouped_remove(source: str) -> list[str]:
    """Take the judgments of ``source`` out of the tallies (updates only: a tally row whose
    comparison, round or project is being deleted goes with it)."""
    j = "j"
    per_comparison = (
        f"SELECT {j}.comparison_id AS comparison_id, "
        + ", ".join(f"SUM(CASE WHEN {cond.format(j=j)} THEN 1 ELSE 0 END) AS {name}" for name, cond in CATEGORIES)
        + f", COUNT(*) AS total FROM {source} {j} GROUP BY {j}.comparison_id"
    )
    subtract = ", ".join(f"{c} = t.{c} - d.{c}" for c in _COUNTED)
    return [
        (
            f"UPDATE insights_comparisontally AS t SET {subtract} FROM ({per_comparison}) d "
            "WHERE t.comparison_id = d.comparison_id"
        ),
        (
            "UPDATE insights_verdicttally AS t SET n = t.n - d.n FROM ("
            f"SELECT c.round_id, {j}.annotator_id, sa.model_version_id AS version_a_id, sb.model_version_id AS version_b_id, "
            f"{j}.preferred, {j}.strength, {j}.safety, COUNT(*) AS n FROM {source} {j} {_JOINS.format(j=j)} "
            "GROUP BY 1, 2, 3, 4, 5, 6, 7) d WHERE t.round_id = d.round_id AND t.annotator_id = d.annotator_id "
            "AND t.version_a_id = d.version_a_id AND t.version_b_id = d.version_b_id AND t.preferred = d.preferred "
            "AND t.strength = d.strength AND t.safety = d.safety"
        ),
        (
            "UPDATE insights_projectactivity AS t SET judgments = t.judgments - d.n, changes = t.changes + d.n FROM ("
            f"SELECT r.project_id, {j}.annotator_id, COUNT(*) AS n FROM {source} {j} "
            f"JOIN annotation_comparison c ON c.id = {j}.comparison_id JOIN annotation_round r ON r.id = c.round_id "
            "GROUP BY 1, 2) d WHERE t.project_id = d.project_id AND t.annotator_id = d.annotator_id"
        ),
    ]


def _edit_activity(source: str, *, edits: str) -> str:
    """Move the (project, annotator) activity of the judgments of the edits in ``source``;
    ``edits``: '+ d.n', '- d.n' or '' (a changed edit)."""
    return (
        f"UPDATE insights_projectactivity AS t SET edits = t.edits {edits or '+ 0'}, changes = t.changes + d.n FROM ("
        "SELECT r.project_id, j.annotator_id, COUNT(*) AS n FROM "
        f"{source} e JOIN annotation_judgment j ON j.id = e.judgment_id "
        "JOIN annotation_comparison c ON c.id = j.comparison_id JOIN annotation_round r ON r.id = c.round_id "
        "GROUP BY 1, 2) d WHERE t.project_id = d.project_id AND t.annotator_id = d.annotator_id"
    )


# A prompt's tags changed (an import adds tags to a prompt it finds again): its tallies follow.
_PG_PROMPT_TAGS = (
    "UPDATE insights_comparisontally AS t SET tags = n.tags FROM added n JOIN removed o ON o.id = n.id "
    "WHERE t.prompt_id = n.id AND o.tags IS DISTINCT FROM n.tags"
)
_SQLITE_PROMPT_TAGS = "UPDATE insights_comparisontally SET tags = NEW.tags WHERE prompt_id = NEW.id"

_CLEANUPS = (
    # (table whose rows go, tally table, its column that points there)
    ("annotation_comparison", "insights_comparisontally", "comparison_id"),
    ("annotation_round", "insights_verdicttally", "round_id"),
    ("annotation_project", "insights_projectactivity", "project_id"),
)


# --- PostgreSQL: statement triggers over transition tables ---------------------------------


# A statement over more rows than this is planned for the rows at hand (EXECUTE); below
# it the function's cached plans serve (an annotator's submit: one row).
_PLAN_EACH_TIME_FROM = 64


def _pg_function(name: str, statements: list[str]) -> str:
    # PL/pgSQL keeps each statement's first plan until the tables' statistics change. A
    # plan made while the tables were small (seq scans, hash joins) went on reading every
    # sample and comparison for each 2,000-judgment batch of a large import, whose rows
    # autovacuum cannot see before the commit. Big statements are therefore planned each
    # time; small ones keep the cached plans, which an index look-up per row serves well.
    rows = "added" if any("added" in statement for statement in statements) else "removed"
    cached = "".join(f"\n    {statement};" for statement in statements)
    planned = "".join(f"\n    EXECUTE $q${statement}$q$;" for statement in statements)
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n  IF EXISTS (SELECT 1 FROM {rows} OFFSET {_PLAN_EACH_TIME_FROM - 1}) THEN{planned}\n"
        f"  ELSE{cached}\n  END IF;\n  RETURN NULL;\nEND $$"
    )


def _pg_trigger(name: str, table: str, event: str, referencing: str, function: str) -> str:
    return (
        f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )


def _postgresql() -> list[str]:
    sql = [
        _pg_function("insights_judgments_added", _grouped_add("added")),
        _pg_function("insights_judgments_removed", _grouped_remove("removed")),
        _pg_function("insights_judgments_changed", _grouped_remove("removed") + _grouped_add("added")),
        _pg_function("insights_edits_added", [_edit_activity("added", edits="+ d.n")]),
        _pg_function("insights_edits_removed", [_edit_activity("removed", edits="- d.n")]),
        _pg_function("insights_edits_changed", [_edit_activity("added", edits="")]),
        _pg_trigger(
            "insights_judgment_insert",
            "annotation_judgment",
            "INSERT",
            "NEW TABLE AS added",
            "insights_judgments_added",
        ),
        _pg_trigger(
            "insights_judgment_delete",
            "annotation_judgment",
            "DELETE",
            "OLD TABLE AS removed",
            "insights_judgments_removed",
        ),
        _pg_trigger(
            "insights_judgment_update",
            "annotation_judgment",
            "UPDATE",
            "OLD TABLE AS removed NEW TABLE AS added",
            "insights_judgments_changed",
        ),
        _pg_trigger("insights_edit_insert", "annotation_edit", "INSERT", "NEW TABLE AS added", "insights_edits_added"),
        _pg_trigger(
            "insights_edit_delete", "annotation_edit", "DELETE", "OLD TABLE AS removed", "insights_edits_removed"
        ),
        _pg_trigger(
            "insights_edit_update", "annotation_edit", "UPDATE", "NEW TABLE AS added", "insights_edits_changed"
        ),
        _pg_function("insights_prompts_changed", [_PG_PROMPT_TAGS]),
        _pg_trigger(
            "insights_prompt_update",
            "annotation_prompt",
            "UPDATE",
            "OLD TABLE AS removed NEW TABLE AS added",
            "insights_prompts_changed",
        ),
    ]
    for table, tally, column in _CLEANUPS:
        function = f"insights_{table.removeprefix('annotation_')}_gone"
        sql.append(_pg_function(function, [f"DELETE FROM {tally} t USING removed x WHERE t.{column} = x.id"]))
        sql.append(_pg_trigger(f"{function}_trigger", table, "DELETE", "OLD TABLE AS removed", function))
    return sql


def _postgresql_drop() -> list[str]:
    triggers = [
        ("insights_judgment_insert", "annotation_judgment"),
        ("insights_judgment_delete", "annotation_judgment"),
        ("insights_judgment_update", "annotation_judgment"),
        ("insights_edit_insert", "annotation_edit"),
        ("insights_edit_delete", "annotation_edit"),
        ("insights_edit_update", "annotation_edit"),
        ("insights_prompt_update", "annotation_prompt"),
        *((f"insights_{t.removeprefix('annotation_')}_gone_trigger", t) for t, _, _ in _CLEANUPS),
    ]
    functions = [
        "insights_judgments_added",
        "insights_judgments_removed",
        "insights_judgments_changed",
        "insights_edits_added",
        "insights_edits_removed",
        "insights_edits_changed",
        "insights_prompts_changed",
        *(f"insights_{t.removeprefix('annotation_')}_gone" for t, _, _ in _CLEANUPS),
    ]
    return [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table in triggers] + [
        f"DROP FUNCTION IF EXISTS {name}()" for name in functions
    ]


# --- SQLite: row triggers -------------------------------------------------------------------


def _row_add(row: str) -> list[str]:
    values = ", ".join(f"CASE WHEN {cond.format(j=row)} THEN 1 ELSE 0 END" for _, cond in CATEGORIES)
    adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in _COUNTED)
    joins = (
        "FROM annotation_comparison c JOIN annotation_sample sa ON sa.id = c.sample_a_id "
        f"JOIN annotation_sample sb ON sb.id = c.sample_b_id WHERE c.id = {row}.comparison_id"
    )
    return [
        (
            "INSERT INTO insights_comparisontally (comparison_id, round_id, prompt_id, version_a_id, version_b_id, turns, "
            f"tags, {', '.join(_COUNTED)}) SELECT c.id, c.round_id, c.prompt_id, sa.model_version_id, "
            "sb.model_version_id, p.turns, p.tags, "
            f"{values}, 1 {joins.replace(' WHERE', ' JOIN annotation_prompt p ON p.id = c.prompt_id WHERE')} "
            f"ON CONFLICT (comparison_id) DO UPDATE SET {adds}"
        ),
        (
            f"INSERT INTO insights_verdicttally ({_VERDICT_KEY}, n) SELECT c.round_id, {row}.annotator_id, "
            f"sa.model_version_id, sb.model_version_id, {row}.preferred, {row}.strength, {row}.safety, 1 {joins} "
            f"ON CONFLICT ({_VERDICT_KEY}) DO UPDATE SET n = n + 1"
        ),
        (
            "INSERT INTO insights_projectactivity (project_id, annotator_id, judgments, edits, changes) "
            f"SELECT r.project_id, {row}.annotator_id, 1, 0, 1 FROM annotation_comparison c "
            f"JOIN annotation_round r ON r.id = c.round_id WHERE c.id = {row}.comparison_id "
            "ON CONFLICT (project_id, annotator_id) DO UPDATE SET judgments = judgments + 1, changes = changes + 1"
        ),
    ]


def _row_remove(row: str) -> list[str]:
    subtract = ", ".join(
        f"{name} = {name} - (CASE WHEN {cond.format(j=row)} THEN 1 ELSE 0 END)" for name, cond in CATEGORIES
    )
    versions = (
        f"SELECT c.round_id, sa.model_version_id AS va, sb.model_version_id AS vb FROM annotation_comparison c "
        f"JOIN annotation_sample sa ON sa.id = c.sample_a_id JOIN annotation_sample sb ON sb.id = c.sample_b_id "
        f"WHERE c.id = {row}.comparison_id"
    )
    return [
        f"UPDATE insights_comparisontally SET {subtract}, total = total - 1 WHERE comparison_id = {row}.comparison_id",
        (
            f"UPDATE insights_verdicttally SET n = n - 1 WHERE annotator_id = {row}.annotator_id "
            f"AND preferred = {row}.preferred AND strength = {row}.strength AND safety = {row}.safety "
            f"AND (round_id, version_a_id, version_b_id) IN ({versions})"
        ),
        (
            f"UPDATE insights_projectactivity SET judgments = judgments - 1, changes = changes + 1 "
            f"WHERE annotator_id = {row}.annotator_id AND project_id IN (SELECT r.project_id FROM annotation_comparison c "
            f"JOIN annotation_round r ON r.id = c.round_id WHERE c.id = {row}.comparison_id)"
        ),
    ]


def _row_edit(row: str, edits: str) -> str:
    return (
        f"UPDATE insights_projectactivity SET edits = edits {edits}, changes = changes + 1 "
        f"WHERE (project_id, annotator_id) IN (SELECT r.project_id, j.annotator_id FROM annotation_judgment j "
        f"JOIN annotation_comparison c ON c.id = j.comparison_id JOIN annotation_round r ON r.id = c.round_id "
        f"WHERE j.id = {row}.judgment_id)"
    )


def _sqlite_trigger(name: str, event: str, table: str, statements: list[str]) -> str:
    body = ";\n  ".join(statements)
    return f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN\n  {body};\nEND"


def _sqlite() -> list[str]:
    sql = [
        _sqlite_trigger("insights_judgment_insert", "INSERT", "annotation_judgment", _row_add("NEW")),
        _sqlite_trigger("insights_judgment_delete", "DELETE", "annotation_judgment", _row_remove("OLD")),
        _sqlite_trigger(
            "insights_judgment_update", "UPDATE", "annotation_judgment", _row_remove("OLD") + _row_add("NEW")
        ),
        _sqlite_trigger("insights_edit_insert", "INSERT", "annotation_edit", [_row_edit("NEW", "+ 1")]),
        _sqlite_trigger("insights_edit_delete", "DELETE", "annotation_edit", [_row_edit("OLD", "- 1")]),
        _sqlite_trigger("insights_edit_update", "UPDATE", "annotation_edit", [_row_edit("NEW", "+ 0")]),
        _sqlite_trigger("insights_prompt_update", "UPDATE OF tags", "annotation_prompt", [_SQLITE_PROMPT_TAGS]),
    ]
    for table, tally, column in _CLEANUPS:
        sql.append(
            _sqlite_trigger(
                f"insights_{table.removeprefix('annotation_')}_gone",
                "DELETE",
                table,
                [f"DELETE FROM {tally} WHERE {column} = OLD.id"],
            )
        )
    return sql


def _sqlite_drop() -> list[str]:
    names = [
        "insights_judgment_insert",
        "insights_judgment_delete",
        "insights_judgment_update",
        "insights_edit_insert",
        "insights_edit_delete",
        "insights_edit_update",
        "insights_prompt_update",
        *(f"insights_{t.removeprefix('annotation_')}_gone" for t, _, _ in _CLEANUPS),
    ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]


# --- What the migration and the rebuild run --------------------------------------------------


def _run(schema_editor: Any, statements: list[str]) -> None:
    for statement in statements:
        schema_editor.execute(statement, params=None)


def backfill_statements() -> list[str]:
    """Empty the tallies and count every judgment and edit again."""
    return [
        "DELETE FROM insights_comparisontally",
        "DELETE FROM insights_verdicttally",
        "DELETE FROM insights_projectactivity",
        *_grouped_add("annotation_judgment"),
        (
            "UPDATE insights_projectactivity SET edits = (SELECT COUNT(*) FROM annotation_edit e "
            "JOIN annotation_judgment j ON j.id = e.judgment_id JOIN annotation_comparison c ON c.id = j.comparison_id "
            "JOIN annotation_round r ON r.id = c.round_id "
            "WHERE r.project_id = insights_projectactivity.project_id AND j.annotator_id = insights_projectactivity.annotator_id)"
        ),
        "UPDATE insights_projectactivity SET changes = judgments + edits",
    ]


def install(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    _run(schema_editor, _postgresql() if vendor == "postgresql" else _sqlite())
    _run(schema_editor, backfill_statements())


def uninstall(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    _run(schema_editor, _postgresql_drop() if vendor == "postgresql" else _sqlite_drop())


# --- Migration 0003: prompts' turns, their change counter, and guards ----------------------

_JUDGED_MOVE = "judgments were made on it as it is: its {what} cannot change"
_GUARDS = (
    # (table, name, columns that may not change once judged, "judged" condition on OLD)
    (
        "annotation_comparison",
        "comparison",
        ("round_id", "prompt_id", "sample_a_id", "sample_b_id"),
        "EXISTS (SELECT 1 FROM annotation_judgment j WHERE j.comparison_id = OLD.id)",
        "round, prompt or answers",
    ),
    (
        "annotation_sample",
        "sample",
        ("model_version_id", "prompt_id"),
        "EXISTS (SELECT 1 FROM annotation_comparison c JOIN annotation_judgment j ON j.comparison_id = c.id "
        "WHERE c.sample_a_id = OLD.id OR c.sample_b_id = OLD.id)",
        "model version or prompt",
    ),
    (
        "annotation_round",
        "round",
        ("project_id",),
        "EXISTS (SELECT 1 FROM annotation_comparison c JOIN annotation_judgment j ON j.comparison_id = c.id "
        "WHERE c.round_id = OLD.id)",
        "project",
    ),
)


def _changed(columns: tuple[str, ...], *, sqlite: bool) -> str:
    differ = "IS NOT" if sqlite else "IS DISTINCT FROM"
    return " OR ".join(f"OLD.{c} {differ} NEW.{c}" for c in columns)


_PG_PROMPTS_CHANGED_V2 = [
    "UPDATE insights_comparisontally AS t SET tags = n.tags, turns = n.turns FROM added n JOIN removed o ON o.id = n.id "
    "WHERE t.prompt_id = n.id AND (o.tags IS DISTINCT FROM n.tags OR o.turns IS DISTINCT FROM n.turns)",
    "INSERT INTO insights_promptactivity AS t (project_id, changes) SELECT n.project_id, COUNT(*) FROM added n "
    "JOIN removed o ON o.id = n.id WHERE o.tags IS DISTINCT FROM n.tags OR o.turns IS DISTINCT FROM n.turns "
    "GROUP BY 1 ORDER BY 1 ON CONFLICT (project_id) DO UPDATE SET changes = t.changes + excluded.changes",
]
_PROJECT_GONE_V2 = [
    "DELETE FROM insights_projectactivity t USING removed x WHERE t.project_id = x.id",
    "DELETE FROM insights_promptactivity t USING removed x WHERE t.project_id = x.id",
]


def _postgresql_guards() -> list[str]:
    # Migration 0002's functions again, as ``_pg_function`` now writes them (planned per call).
    sql = [s for s in _postgresql() if s.startswith("CREATE OR REPLACE FUNCTION")]
    sql += [
        _pg_function("insights_prompts_changed", _PG_PROMPTS_CHANGED_V2),
        _pg_function("insights_project_gone", _PROJECT_GONE_V2),
    ]
    for table, name, columns, judged, what in _GUARDS:
        function = f"insights_judged_{name}_guard"
        message = _JUDGED_MOVE.format(what=what)
        sql.append(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n  IF {judged} THEN\n"
            f"    RAISE EXCEPTION '{name} %: {message}', OLD.id USING ERRCODE = 'integrity_constraint_violation';\n"
            "  END IF;\n  RETURN NEW;\nEND $$"
        )
        sql.append(
            f"CREATE TRIGGER {function} BEFORE UPDATE OF {', '.join(columns)} ON {table} FOR EACH ROW "
            f"WHEN ({_changed(columns, sqlite=False)}) EXECUTE FUNCTION {function}()"
        )
    return sql


def _postgresql_guards_drop() -> list[str]:
    sql = []
    for table, name, _columns, _judged, _what in _GUARDS:
        sql.append(f"DROP TRIGGER IF EXISTS insights_judged_{name}_guard ON {table}")
        sql.append(f"DROP FUNCTION IF EXISTS insights_judged_{name}_guard()")
    # Migration 0002's versions of the two functions 0003 replaced.
    replaced = ("FUNCTION insights_prompts_changed()", "FUNCTION insights_project_gone()")
    return sql + [s for s in _postgresql() if s.startswith("CREATE OR REPLACE") and any(r in s for r in replaced)]


def _sqlite_guards() -> list[str]:
    changed = _changed(("tags", "turns"), sqlite=True)
    sql = [
        "DROP TRIGGER IF EXISTS insights_prompt_update",
        (
            "CREATE TRIGGER insights_prompt_update AFTER UPDATE OF tags, turns ON annotation_prompt FOR EACH ROW "
            f"WHEN {changed} BEGIN\n"
            "  UPDATE insights_comparisontally SET tags = NEW.tags, turns = NEW.turns WHERE prompt_id = NEW.id;\n"
            "  INSERT INTO insights_promptactivity (project_id, changes) VALUES (NEW.project_id, 1) "
            "ON CONFLICT (project_id) DO UPDATE SET changes = changes + 1;\nEND"
        ),
        "DROP TRIGGER IF EXISTS insights_project_gone",
        _sqlite_trigger(
            "insights_project_gone",
            "DELETE",
            "annotation_project",
            [
                "DELETE FROM insights_projectactivity WHERE project_id = OLD.id",
                "DELETE FROM insights_promptactivity WHERE project_id = OLD.id",
            ],
        ),
    ]
    for table, name, columns, judged, what in _GUARDS:
        message = _JUDGED_MOVE.format(what=what)
        sql.append(
            f"CREATE TRIGGER insights_judged_{name}_guard BEFORE UPDATE OF {', '.join(columns)} ON {table} "
            f"FOR EACH ROW WHEN ({_changed(columns, sqlite=True)}) AND {judged} "
            f"BEGIN SELECT RAISE(ABORT, '{name}: {message}'); END"
        )
    return sql


def _sqlite_guards_drop() -> list[str]:
    sql = [f"DROP TRIGGER IF EXISTS insights_judged_{name}_guard" for _t, name, _c, _j, _w in _GUARDS]
    sql += ["DROP TRIGGER IF EXISTS insights_prompt_update", "DROP TRIGGER IF EXISTS insights_project_gone"]
    names = ("insights_prompt_update ", "insights_project_gone ")
    return sql + [s for s in _sqlite() if any(s.startswith(f"CREATE TRIGGER {n}") for n in names)]


def install_guards(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    _run(schema_editor, _postgresql_guards() if vendor == "postgresql" else _sqlite_guards())


def uninstall_guards(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    _run(schema_editor, _postgresql_guards_drop() if vendor == "postgresql" else _sqlite_guards_drop())
