"""FIN-01's per-tenant balances (issue 14): pending verification over all time and unapplied credit,
kept by PostgreSQL exact at every commit (`payments/database/balances_v1.py`), so FIN-01 reads a few
rows per tenant instead of every pending payment and every credit.

Online: the new tables are created (nothing else is locked), the triggers installed, each in its own
short step under `lock_timeout`; then the build (`payments/services/balances.py`) walks payments and
credits a batch per transaction with its cursor. The triggers come first, so every write committed
after them keeps its own rows and the build sets the rest: exact beside concurrent commits. Readers
compute live while the build row exists (it is made before the balances), so FIN-01 is the same before, during and after; a killed
build resumes when `migrate` runs again. Nothing to build off PostgreSQL (readers compute live).
"""
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from payments.database import balances_v1
from payments.migrations._operations import InstallDatabaseCode, Online


def ask_for_a_build(apps, schema_editor):
    """Before the balances exist: readers compute live from the moment they could see them."""
    build_model = apps.get_model("payments", "TenantBalanceBuild")
    if not build_model.objects.using(schema_editor.connection.alias).exists():
        build_model.objects.using(schema_editor.connection.alias).create()


def build(apps, schema_editor):
    from payments.services.balances import balances_build

    balances_build(apps=apps, using=schema_editor.connection.alias)


def _tenant():
    return models.ForeignKey(
        db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
        to="billing.tenant",
    )


class Migration(migrations.Migration):
    atomic = False  # each step its own short transaction; the build a batch per transaction

    dependencies = [
        ("billing", "0003_invoice_tenant_page_index"),
        ("payments", "0010_pay10_database_code_v3"),
    ]

    operations = [
        Online(migrations.CreateModel(
            name="TenantBalanceBuild",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("upper_payment_id", models.BigIntegerField(default=0, help_text="Highest payment id when the build started.")),
                ("cursor_payment_id", models.BigIntegerField(default=0, help_text="Every payment up to this id is built.")),
                ("upper_credit_id", models.BigIntegerField(default=0, help_text="Highest credit id when the build started.")),
                ("cursor_credit_id", models.BigIntegerField(default=0, help_text="Every credit up to this id is built.")),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        )),
        migrations.RunPython(ask_for_a_build, migrations.RunPython.noop),
        Online(migrations.CreateModel(
            name="BalanceCredit",
            fields=[
                ("credit", models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name="+", serialize=False, to="payments.credit")),
                ("currency", models.CharField(max_length=3)),
                ("remaining_cents", models.BigIntegerField()),
                ("tenant", _tenant()),
            ],
        )),
        Online(migrations.CreateModel(
            name="BalancePayment",
            fields=[
                ("payment", models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name="+", serialize=False, to="payments.payment")),
                ("currency", models.CharField(max_length=3)),
                ("pending_cents", models.BigIntegerField()),
                ("tenant", _tenant()),
            ],
        )),
        Online(migrations.CreateModel(
            name="TenantBalance",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("currency", models.CharField(max_length=3)),
                ("slot", models.SmallIntegerField()),
                ("pending_verification_cents", models.BigIntegerField(default=0)),
                ("unapplied_credit_cents", models.BigIntegerField(default=0)),
                ("tenant", _tenant()),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("tenant", "currency", "slot"), name="payments_tenantbalance_key_unique")],
            },
        )),
        InstallDatabaseCode(balances_v1.CODE),
        migrations.RunPython(build, migrations.RunPython.noop),
    ]
