"""The audit log refuses TRUNCATE, for every role (issue 10): `payments/database/audit_truncate_v1.py`.

Online: the function in a short transaction, the trigger (a brief SHARE ROW EXCLUSIVE lock on the
audit log) in one of its own under lock_timeout, retried with backoff (`InstallDatabaseCode`).
"""
from django.db import migrations

from payments.database import audit_truncate_v1
from payments.migrations._operations import InstallDatabaseCode


class Migration(migrations.Migration):
    atomic = False  # each step its own short transaction

    dependencies = [
        ("payments", "0007_payment_permissions"),
    ]

    operations = [
        InstallDatabaseCode(audit_truncate_v1.CODE),
    ]
