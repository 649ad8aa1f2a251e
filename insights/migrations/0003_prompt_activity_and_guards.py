# A counter of each project's prompt changes (tags, turns) for the cache's fingerprint, the
# prompt trigger that moves it, and the guards that keep judged rows where they were
# judged (insights/triggers.py, install_guards).

import django.db.models.deletion
from django.db import migrations, models

from insights import triggers


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0004_apitoken_to_accounts'),
        ('insights', '0002_tally_triggers'),
    ]

    operations = [
        migrations.CreateModel(
            name='PromptActivity',
            fields=[
                ('project', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='+', serialize=False, to='annotation.project')),
                ('changes', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(triggers.install_guards, triggers.uninstall_guards),
    ]
