"""Probes for a load balancer or an orchestrator: no token, JSON, cheap.

`/healthz`: the process answers (no database call). `/readyz`: the database answers, no migration
is unapplied, the static files were collected (without them every admin page fails), and the
FIN-01/FIN-02 read model's state; 503 when not ready.

One exception to "no unapplied migration", from the runbook: PAY-10's new code serves while its
online steps are pending (after `payments 0002_pay10_schema`, during the backfill and the read-model
build of 0003-0005, which take hours on a big database). Pulling every instance from the load balancer
then would be an outage; in that window the payments migrations still to come are listed but do not
make the service unready.
"""
import logging

from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.loader import MigrationLoader
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from payments.selectors.figures import figures_state

logger = logging.getLogger("pay10.health")

SCHEMA_MIGRATION = ("payments", "0002_pay10_schema")
ONLINE_MIGRATIONS = {("payments", "0003_pay10_backfill"), ("payments", "0004_invoice_figures"),
                     ("payments", "0005_invoice_figures_build")}


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        loader = MigrationLoader(connection)
        applied = loader.applied_migrations
        unapplied = [key for key in _in_order(loader.graph) if key not in applied]
        read_model = figures_state()
    except DatabaseError:
        logger.exception("readyz: the database does not answer")
        return JsonResponse({"status": "unready", "database": "unreachable"}, status=503)
    online_window = SCHEMA_MIGRATION in applied and any(key in ONLINE_MIGRATIONS for key in unapplied)
    blocking = [key for key in unapplied if not (online_window and key[0] == "payments")]
    static_collected = static_files_collected()
    ready = not blocking and static_collected
    return JsonResponse(
        {
            "status": "ready" if ready else "unready",
            "database": "ok",
            "staticFiles": "ok" if static_collected else "not collected: run manage.py collectstatic",
            "migrations": {
                "unapplied": [f"{app}.{name}" for app, name in unapplied],
                "onlineMigrationWindow": online_window,
            },
            "readModel": read_model,
        },
        status=200 if ready else 503,
    )


def _in_order(graph) -> list[tuple[str, str]]:
    """Every migration on disk, in the order `migrate` applies them."""
    ordered = {}
    for leaf in graph.leaf_nodes():
        ordered.update(dict.fromkeys(graph.forwards_plan(leaf)))
    return list(ordered)


def static_files_collected() -> bool:
    """With the manifest storage (DEBUG off) pages need `collectstatic`'s manifest to name their files."""
    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return True
    return staticfiles_storage.exists(staticfiles_storage.manifest_name)
