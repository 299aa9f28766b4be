"""Database code (triggers, functions) brought to today's versions (`payments/database/`).

A database migrated by an earlier main (a380abc, with other bodies for four guard functions, or the
row-level `*_recheck` triggers before them) kept its old code: `0002`/`0004` had already run there.
This installs guards v2 and figures v1 wherever it runs: every function CREATE OR REPLACEd, a trigger
recreated only when its definition differs (CREATE OR REPLACE TRIGGER: no ACCESS EXCLUSIVE), each in
a short transaction of its own under lock_timeout with retries; retired objects dropped. On a
database `0002`/`0004` installed these same versions in, it changes nothing and locks no table.

The reverse leaves the same versions in place: on this line of migrations they are what `0002` and
`0004` installed, i.e. the state before this migration (an older main's bodies are not restored).
"""
from django.db import migrations

from payments.database import figures_v1, guards_v2
from payments.migrations._operations import InstallDatabaseCode


class Migration(migrations.Migration):
    atomic = False  # each step its own short transaction

    dependencies = [
        ("payments", "0005_invoice_figures_build"),
    ]

    operations = [
        InstallDatabaseCode(guards_v2.CODE, previous=guards_v2.CODE),
        InstallDatabaseCode(figures_v1.CODE, previous=figures_v1.CODE),
    ]
