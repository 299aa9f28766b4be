"""The operator's console for the backfill — issue 11 fills this."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0008_audit_log_truncate_guard"),
    ]

    operations = []
