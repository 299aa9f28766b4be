"""The audit log refuses TRUNCATE, for every role (issue 10; the SQL and its owner-only unlock are in
`_pay10_audit_truncate.py`).

Online: a trigger is a catalog change; it waits at most `LOCK_TIMEOUT` for its brief lock on the
audit log, then fails (and can be rerun) rather than queue every writer behind it.
"""
from django.db import migrations

from payments.migrations._pay10_audit_truncate import guard_install, guard_remove


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0007_payment_permissions"),
    ]

    operations = [
        migrations.RunPython(guard_install, guard_remove),
    ]
