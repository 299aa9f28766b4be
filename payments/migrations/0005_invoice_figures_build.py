"""Build the FIN-01/FIN-02 read model over the invoices that existed before `0004_invoice_figures`,
and index, CONCURRENTLY on PostgreSQL, what FIN-01 picks out: the payments awaiting verification
(its pending figure), the rejected ones (whose credits hold nothing) and the credits by source.

Not atomic: a batch of invoices per transaction with its cursor, so a live database keeps taking
writes (every commit keeps its own invoices' figures) and a killed build resumes where it stopped
when `migrate` runs again. Readers compute live until it ends. Nothing to do off PostgreSQL.
"""
from django.db import migrations, models

from payments.migrations._operations import AddIndexConcurrentlyOnPostgres


def forward(apps, schema_editor):
    from payments.services.figures import figures_build

    figures_build(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0004_invoice_figures"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="payment",
            index=models.Index(
                condition=models.Q(("verification_status", "PENDING"), models.Q(("status", "PENDING"), ("verification_status__isnull", True)), _connector="OR"),
                fields=["tenant", "received_at"],
                include=["currency", "amount_cents"],
                name="payments_payment_pending",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="payment",
            index=models.Index(
                condition=models.Q(("verification_status", "REJECTED")), fields=["id"], name="payments_payment_rejected"
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="credit",
            index=models.Index(
                fields=["tenant", "source_payment"], include=["currency", "amount_cents"], name="payments_credit_source_cover"
            ),
        ),
        migrations.RunPython(forward, migrations.RunPython.noop),
    ]
