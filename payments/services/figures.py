"""Building the FIN-01/FIN-02 read model (`InvoiceFigures`, `InvoiceRollup`; PostgreSQL only).

Once built, PostgreSQL keeps it exact at every commit (`payments/database/figures_v1.py`). A
build walks the invoices in id order, a batch per transaction, and records its cursor, so a killed
build resumes and the service keeps running meanwhile: readers compute live until the build row is
gone. Each batch runs the refresh statement the commits run (`figures_v3.refresh_sql`, the body of
`pay10_figures_refresh` since v3), after the same advisory locks, with the planner free to choose:
thousands of ids are refreshed by hash joins, not by the index probes a commit of a few invoices
forces (issue 14). Running the text here rather than calling the installed function keeps a build
fast whichever version is installed: on a fresh `migrate`, 0005 builds under figures v1.
"""
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Max

from billing.models import Invoice
from payments.database import figures_v3
from payments.models import InvoiceBlock, InvoiceDueRollup, InvoiceFigures, InvoiceFiguresBuild, InvoiceRollup

BUILD_BATCH_SIZE = 20_000
_IDS = "%(ids)s::bigint[]"
_BATCH = "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM (SELECT id FROM billing_invoice WHERE id > %s AND id <= %s ORDER BY id LIMIT %s) batch"


def figures_supported(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[using].vendor == "postgresql"


def figures_build(
    *,
    apps=None,
    using: str = DEFAULT_DB_ALIAS,
    batch_size: int = BUILD_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Run the pending build to its end; returns how many invoices it refreshed (0 if none was pending)."""
    if not figures_supported(using=using):
        return 0
    build_model = apps.get_model("payments", "InvoiceFiguresBuild") if apps else InvoiceFiguresBuild
    invoice_model = apps.get_model("billing", "Invoice") if apps else Invoice
    build = build_model.objects.using(using).order_by("id").first()
    if build is None:
        return 0
    if build.upper_invoice_id == 0:
        # Invoices above this id are new since the upkeep was installed: every commit keeps them.
        build.upper_invoice_id = invoice_model.objects.using(using).aggregate(top=Max("id"))["top"] or 0
        build.save(using=using, update_fields=["upper_invoice_id"])
    done = 0
    with connections[using].cursor() as cursor:
        while build.cursor_invoice_id < build.upper_invoice_id:
            with transaction.atomic(using=using):
                cursor.execute(_BATCH, [build.cursor_invoice_id, build.upper_invoice_id, batch_size])
                ids = cursor.fetchone()[0]
                if ids:
                    cursor.execute(f"SELECT {figures_v3.locks_sql(_IDS)}", {"ids": ids})
                    cursor.execute(figures_v3.refresh_sql(_IDS), {"ids": ids})
                last_id, count = (ids[-1] if ids else None), len(ids)
                build.cursor_invoice_id = last_id if last_id is not None else build.upper_invoice_id
                build.save(using=using, update_fields=["cursor_invoice_id"])
            done += count
            if progress is not None:
                progress(build.cursor_invoice_id, build.upper_invoice_id)
        build_model.objects.using(using).filter(pk=build.pk).delete()
        # Fresh statistics for the planner: the tables went from empty to one row per invoice.
        cursor.execute("ANALYZE payments_invoicefigures, payments_invoicerollup, payments_invoiceduerollup, payments_invoiceblock")
    return done


def figures_rebuild(*, using: str = DEFAULT_DB_ALIAS, batch_size: int = BUILD_BATCH_SIZE, progress=None) -> int:
    """Throw the read model away and build it again (readers compute live meanwhile)."""
    if not figures_supported(using=using):
        raise ValueError("the figures read model exists on PostgreSQL only; this database computes live")
    with transaction.atomic(using=using):
        # TRUNCATE waits for commits that are refreshing figures right now, and holds off new ones.
        with connections[using].cursor() as cursor:
            cursor.execute(
                f"TRUNCATE {InvoiceFigures._meta.db_table}, {InvoiceRollup._meta.db_table}, "
                f"{InvoiceDueRollup._meta.db_table}, {InvoiceBlock._meta.db_table}, {InvoiceFiguresBuild._meta.db_table}"
            )
        InvoiceFiguresBuild.objects.using(using).create()
    return figures_build(using=using, batch_size=batch_size, progress=progress)
