"""Database code composed from the money rules' SQL fragments (`payments/database/rules.py`):
guards v3 (after v2) and figures v2 (after v1), each the same behaviour as
the version it replaces (issue 13: one definition per rule per language).

Every function is CREATE OR REPLACEd in one short transaction; the triggers are the same as before,
so none is recreated and no table is locked. Backward, the previous versions' functions come back.
"""
from django.db import migrations

from payments.database import figures_v1, figures_v2, guards_v2, guards_v3
from payments.migrations._operations import InstallDatabaseCode


class Migration(migrations.Migration):
    atomic = False  # each step its own short transaction

    dependencies = [
        ("payments", "0009_backfill_control"),
    ]

    operations = [
        InstallDatabaseCode(guards_v3.CODE, previous=guards_v2.CODE),
        InstallDatabaseCode(figures_v2.CODE, previous=figures_v1.CODE),
    ]
