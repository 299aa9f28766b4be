"""Which side of PAY-10 the database is on.

`pay10_baseline` and the finance readers also run at the legacy state (`migrate payments
0001_initial`), where the PAY-10 tables and columns do not exist yet. The answer is cached per
database alias and forgotten after every `migrate`.
"""
from django.db import connections
from django.db.models.signals import post_migrate
from django.dispatch import receiver

PAY10_MARKER_TABLE = "payments_invoicemigration"

_installed: dict[str, bool] = {}


def pay10_schema_installed(*, using: str = "default") -> bool:
    if using not in _installed:
        with connections[using].cursor() as cursor:
            _installed[using] = PAY10_MARKER_TABLE in connections[using].introspection.table_names(cursor)
    return _installed[using]


@receiver(post_migrate)
def forget_schema_state(**kwargs) -> None:
    _installed.clear()
