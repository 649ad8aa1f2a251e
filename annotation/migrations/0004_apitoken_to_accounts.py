# ApiToken now belongs to the accounts app (accounts/migrations/0001_initial.py), which
# keeps its table; this only drops the model from annotation's records.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_live_mode_round_sampling"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ApiToken")],
            database_operations=[],
        ),
    ]
