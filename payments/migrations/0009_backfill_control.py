"""The operator's console for the backfill (issue 11): a run's `state` also takes PAUSED and
CANCELLED, the operator's requests (`pay10_backfill_control`, the admin's actions).

Only the field's choices change: no SQL (`sqlmigrate` prints a no-op). The console keeps
everything else on the run row that `0002` created (`counts["console"]`), because the backfill
runs between `0002` and `0003`, before this migration can have been applied.
"""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0008_audit_log_truncate_guard"),
    ]

    operations = [
        migrations.AlterField(
            model_name="backfillrun",
            name="state",
            field=models.CharField(
                choices=[
                    ("RUNNING", "Running"), ("PAUSED", "Paused"), ("CANCELLED", "Cancelled"),
                    ("COMPLETED", "Completed"), ("FAILED", "Failed"),
                ],
                default="RUNNING",
                max_length=16,
            ),
        ),
    ]
