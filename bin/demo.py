#!/usr/bin/env python
"""`make demo`: the PAY-10 runbook end to end on the default database (a SQLite file)."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=1)
    call_command("check")


if __name__ == "__main__":
    main()
