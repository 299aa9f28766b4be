"""The audit log refuses TRUNCATE — issue 10 fills this."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0007_payment_permissions"),
    ]

    operations = []
