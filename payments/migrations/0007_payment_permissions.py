"""Named permissions for the payment operations (issue 10): the API's staff endpoints and the admin's
actions check these instead of `is_staff` alone. Options only: no table changes (Django creates the
permission rows after migrate)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0006_pay10_database_code"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="payment",
            options={
                "permissions": [
                    ("verify_payment", "Can verify payments"),
                    ("reject_payment", "Can reject payments"),
                    ("refund_payment", "Can refund payments"),
                    ("allocate_payment", "Can allocate payments and apply credits to invoices"),
                    ("reverse_allocation", "Can reverse allocations"),
                    ("void_invoice", "Can void invoices"),
                    ("view_finance_summary", "Can read the finance summary (FIN-01)"),
                ]
            },
        ),
    ]
