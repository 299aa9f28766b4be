"""The read model of FIN-01/FIN-02 at scale: per-invoice figures, their rollup and the per-block
invoice counts FIN-02 pages with, kept by PostgreSQL
at every commit (`_pay10_figures.py`). On PostgreSQL this also asks for a build, which
`0005_invoice_figures_build` runs; elsewhere the tables stay empty and readers compute live.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from payments.migrations._pay10_figures import figures_install, figures_remove


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0003_invoice_tenant_page_index'),
        ('payments', '0003_pay10_backfill'),
    ]

    operations = [
        migrations.CreateModel(
            name='InvoiceFiguresBuild',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('upper_invoice_id', models.BigIntegerField(default=0, help_text='Highest invoice id when the build started.')),
                ('cursor_invoice_id', models.BigIntegerField(default=0, help_text='Every invoice up to this id is built.')),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.CreateModel(
            name='InvoiceFigures',
            fields=[
                ('invoice', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='figures', serialize=False, to='billing.invoice')),
                ('currency', models.CharField(max_length=3)),
                ('state', models.CharField(choices=[('DRAFT', 'Draft'), ('VOID', 'Void'), ('PAID', 'Paid'), ('PART', 'Part'), ('UNPAID', 'Unpaid')], max_length=8)),
                ('issue_day', models.DateField(help_text='UTC day of issued_at, else of created_at.')),
                ('due_date', models.DateField(blank=True, null=True)),
                ('amount_cents', models.BigIntegerField()),
                ('paid_cents', models.BigIntegerField()),
                ('pending_cents', models.BigIntegerField()),
                ('tenant', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='billing.tenant')),
            ],
            options={
                'indexes': [models.Index(fields=['tenant', 'state', 'invoice'], name='payments_figures_tenant_state')],
            },
        ),
        migrations.CreateModel(
            name='InvoiceRollup',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('currency', models.CharField(max_length=3)),
                ('state', models.CharField(choices=[('DRAFT', 'Draft'), ('VOID', 'Void'), ('PAID', 'Paid'), ('PART', 'Part'), ('UNPAID', 'Unpaid')], max_length=8)),
                ('issue_day', models.DateField()),
                ('due_day', models.DateField(help_text='9999-12-31 stands for no due date.')),
                ('invoice_count', models.BigIntegerField(default=0)),
                ('amount_cents', models.BigIntegerField(default=0)),
                ('paid_cents', models.BigIntegerField(default=0)),
                ('tenant', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='billing.tenant')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('tenant', 'currency', 'state', 'issue_day', 'due_day'), name='payments_rollup_key_unique')],
            },
        ),
        migrations.CreateModel(
            name='InvoiceBlock',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('block', models.BigIntegerField()),
                ('invoice_count', models.BigIntegerField(default=0)),
                ('tenant', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='billing.tenant')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('tenant', 'block'), name='payments_block_key_unique')],
            },
        ),
        migrations.CreateModel(
            name='InvoiceDueRollup',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('currency', models.CharField(max_length=3)),
                ('state', models.CharField(choices=[('DRAFT', 'Draft'), ('VOID', 'Void'), ('PAID', 'Paid'), ('PART', 'Part'), ('UNPAID', 'Unpaid')], max_length=8)),
                ('due_day', models.DateField(help_text='9999-12-31 stands for no due date.')),
                ('invoice_count', models.BigIntegerField(default=0)),
                ('amount_cents', models.BigIntegerField(default=0)),
                ('paid_cents', models.BigIntegerField(default=0)),
                ('tenant', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='billing.tenant')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('tenant', 'currency', 'state', 'due_day'), name='payments_due_rollup_key_unique')],
            },
        ),
        migrations.RunPython(figures_install, figures_remove),
    ]
