"""PAY-10 data migration: the backfill, the same engine as `manage.py pay10_backfill`.

On a legacy database a plain `migrate` ends fully migrated; on an already backfilled one it changes
nothing. Not atomic: each batch commits on its own (with the run's cursor), so a migration killed
midway resumes where it stopped when `migrate` runs again. The reverse removes exactly what the
backfill created and restores every invoice's legacy status (`payments.services.backfill`).
"""
from django.db import migrations


def forward(apps, schema_editor):
    from payments.services.backfill import backfill_run

    backfill_run(apps=apps, using=schema_editor.connection.alias)


def reverse(apps, schema_editor):
    from payments.services.backfill import backfill_reverse

    backfill_reverse(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0002_pay10_schema"),
    ]

    operations = [
        migrations.RunPython(forward, reverse),
    ]
