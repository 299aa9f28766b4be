"""Database code (triggers, functions) brought to today's versioned definitions — issue 11 fills this."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0005_invoice_figures_build"),
    ]

    operations = []
