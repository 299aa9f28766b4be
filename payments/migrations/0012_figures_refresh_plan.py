"""Figures v3 (after v2): `pay10_figures_refresh` forces index probes only for a refresh of fewer
than `figures_v3.PROBE_LIMIT` invoices and lets the planner choose for more (issue 14). Same
figures; the triggers are the same as before, so none is recreated and no table is locked: the
function is CREATE OR REPLACEd in one short transaction. Backward, v2's function comes back.
"""
from django.db import migrations

from payments.database import figures_v2, figures_v3
from payments.migrations._operations import InstallDatabaseCode


class Migration(migrations.Migration):
    atomic = False  # each step its own short transaction

    dependencies = [
        ("payments", "0011_tenant_balances"),
    ]

    operations = [
        InstallDatabaseCode(figures_v3.CODE, previous=figures_v2.CODE),
    ]
