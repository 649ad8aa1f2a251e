# The triggers that keep the tallies (insights/triggers.py), and the tallies of the
# judgments already stored.

from django.db import migrations

from insights import triggers


class Migration(migrations.Migration):
    dependencies = [
        ("insights", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(triggers.install, triggers.uninstall),
    ]
