# Comparison.held: a pair with an identity-flagged answer not yet released is never handed
# out; the engine's pools (partial indexes) leave held pairs out.

from django.db import migrations, models
from django.db.models import Q


def hold_flagged(apps, schema_editor):
    Comparison = apps.get_model("annotation", "Comparison")
    Sample = apps.get_model("annotation", "Sample")
    unreleased = Sample.objects.filter(identity_flagged=True, identity_released=False).values("id")
    Comparison.objects.filter(Q(sample_a__in=unreleased) | Q(sample_b__in=unreleased)).update(held=True)


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0004_apitoken_to_accounts'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='comparison',
            name='comparison_pool_partly',
        ),
        migrations.RemoveIndex(
            model_name='comparison',
            name='comparison_pool_fresh',
        ),
        migrations.RemoveIndex(
            model_name='comparison',
            name='comparison_gold',
        ),
        # ADD COLUMN on both databases: Django would rebuild the table on SQLite (a NOT NULL
        # column), dropping the triggers that other tables and the tallies keep on it.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name='comparison',
                    name='held',
                    field=models.BooleanField(db_default=False, default=False),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE annotation_comparison ADD COLUMN held boolean NOT NULL DEFAULT false",
                    "ALTER TABLE annotation_comparison DROP COLUMN held",
                ),
            ],
        ),
        migrations.RunPython(hold_flagged, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='comparison',
            index=models.Index(condition=models.Q(('held', False), ('is_gold', False), ('taken__gt', 0), ('taken__lt', models.F('required_judgments'))), fields=['round', 'id'], name='comparison_pool_partly'),
        ),
        migrations.AddIndex(
            model_name='comparison',
            index=models.Index(condition=models.Q(('held', False), ('is_gold', False), ('taken', 0)), fields=['round', 'id'], name='comparison_pool_fresh'),
        ),
        migrations.AddIndex(
            model_name='comparison',
            index=models.Index(condition=models.Q(('held', False), ('is_gold', True)), fields=['round', 'id'], name='comparison_gold'),
        ),
        migrations.AlterField(
            model_name='project',
            name='identity_terms',
            field=models.JSONField(blank=True, default=list, help_text='Model/vendor names whose mention keeps a sample out of annotation until a lead releases it (whole words, any case, parts written together or apart: OpenAI, open-ai, Open AI).'),
        ),
    ]
