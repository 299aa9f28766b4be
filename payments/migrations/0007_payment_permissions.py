"""Named permissions for the payment operations — issue 10 fills this."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0006_pay10_database_code"),
    ]

    operations = []
