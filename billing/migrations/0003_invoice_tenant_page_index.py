"""PAY-10 read performance: the (tenant_id, id) index FIN-02 pages a tenant's invoices on.

It belongs to the PAY-10 state, not to the legacy contract: it depends on `payments 0002_pay10_schema`
(through `billing 0002`), so `migrate payments 0001_initial` drops it and leaves `billing_invoice`
exactly as it was.

On PostgreSQL the index is built with CREATE INDEX CONCURRENTLY (hence `atomic = False`), so a live
database keeps taking writes to `billing_invoice` while it is built (a plain CREATE INDEX would hold
a SHARE lock, blocking every insert and update, for the whole build: seconds at a million rows). A
concurrent build that fails (e.g. cancelled) leaves an INVALID index of the same name: drop it
(`DROP INDEX CONCURRENTLY billing_invoice_tenant_page`) and run `migrate` again. `migrate` must not
run inside a transaction for this migration. Other databases build it the plain way.
"""
from django.db import migrations, models

from payments.migrations._operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0002_tenant_member"),
        ("payments", "0002_pay10_schema"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(fields=["tenant", "id"], name="billing_invoice_tenant_page"),
        ),
    ]
