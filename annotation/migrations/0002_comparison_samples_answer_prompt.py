"""A comparison's two samples must answer the comparison's own prompt.

Django has no composite foreign keys, so this is written per database: on
PostgreSQL a composite FK (sample_x_id, prompt_id) -> sample (id, prompt_id); on
SQLite triggers that abort the write. Either way the database refuses the bad row,
whatever code path writes it. The FKs are checked immediately (not deferred): a
deferred check queues one trigger event per row until commit, which made large
imports several times slower at commit.
"""

from django.db import migrations

PG_FORWARD = [
    """ALTER TABLE annotation_comparison ADD CONSTRAINT comparison_sample_a_answers_prompt
       FOREIGN KEY (sample_a_id, prompt_id) REFERENCES annotation_sample (id, prompt_id)
       ON DELETE CASCADE""",
    """ALTER TABLE annotation_comparison ADD CONSTRAINT comparison_sample_b_answers_prompt
       FOREIGN KEY (sample_b_id, prompt_id) REFERENCES annotation_sample (id, prompt_id)
       ON DELETE CASCADE""",
]
PG_BACKWARD = [
    "ALTER TABLE annotation_comparison DROP CONSTRAINT comparison_sample_a_answers_prompt",
    "ALTER TABLE annotation_comparison DROP CONSTRAINT comparison_sample_b_answers_prompt",
]

_MISMATCH = """(SELECT prompt_id FROM annotation_sample WHERE id = NEW.sample_a_id) IS NOT NEW.prompt_id
       OR (SELECT prompt_id FROM annotation_sample WHERE id = NEW.sample_b_id) IS NOT NEW.prompt_id"""
SQLITE_FORWARD = [
    f"""CREATE TRIGGER comparison_samples_answer_prompt_insert BEFORE INSERT ON annotation_comparison
       WHEN {_MISMATCH}
       BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: comparison_samples_answer_prompt'); END""",
    f"""CREATE TRIGGER comparison_samples_answer_prompt_update
       BEFORE UPDATE OF sample_a_id, sample_b_id, prompt_id ON annotation_comparison
       WHEN {_MISMATCH}
       BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: comparison_samples_answer_prompt'); END""",
    """CREATE TRIGGER sample_prompt_keeps_comparisons BEFORE UPDATE OF prompt_id ON annotation_sample
       WHEN NEW.prompt_id IS NOT OLD.prompt_id AND EXISTS (
         SELECT 1 FROM annotation_comparison WHERE sample_a_id = OLD.id OR sample_b_id = OLD.id)
       BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: comparison_samples_answer_prompt'); END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER comparison_samples_answer_prompt_insert",
    "DROP TRIGGER comparison_samples_answer_prompt_update",
    "DROP TRIGGER sample_prompt_keeps_comparisons",
]


def forward(apps, schema_editor):
    statements = PG_FORWARD if schema_editor.connection.vendor == "postgresql" else SQLITE_FORWARD
    for sql in statements:
        schema_editor.execute(sql)


def backward(apps, schema_editor):
    statements = PG_BACKWARD if schema_editor.connection.vendor == "postgresql" else SQLITE_BACKWARD
    for sql in statements:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
