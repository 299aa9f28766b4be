"""Latency of FIN-01 and FIN-02 through the Django test client (full request path, real auth).
Invoked by bench/reads.py with DATABASE_URL pointing at a backfilled data set."""
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")
# The probe measures latency, many requests a minute on one token: not the throttle.
os.environ.setdefault("API_THROTTLE_TOKEN_RATE", "1000000/minute")


def main(tenant: str, repeat: int, deep_page: int) -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    from billing.models import Invoice
    from billing.services.api_tokens import ApiTokenError, api_token_create, api_tokens_revoke

    try:
        api_tokens_revoke(username="bench-staff")  # earlier runs' tokens count against the per-user limit
    except ApiTokenError:
        pass  # the first run: no such user yet
    _user, staff_token = api_token_create(username="bench-staff", staff=True)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    # FIN-02 pages from the nearer end of the (tenant_id, id) index: the middle page is its worst case.
    middle_page = max(Invoice.objects.filter(tenant_id=tenant).count() // 100, 1)
    # Status-filtered deep pages: the middle page of the tenant's OVERDUE and of its PAID invoices.
    status_pages = {
        status: max(Invoice.objects.filter(tenant_id=tenant, status=status).count() // 100, 1)
        for status in ("OVERDUE", "PAID")
    }
    requests = {
        "fin01_all_time": f"/api/billing/admin/finance/summary?period=ALL_TIME&tenant={tenant}",
        "fin01_all_tenants": "/api/billing/admin/finance/summary?period=ALL_TIME",
        "fin02_page_1": f"/api/billing/invoices/tenant?page=1&pageSize=50&tenant={tenant}",
        "fin02_deep_page": f"/api/billing/invoices/tenant?page={deep_page}&pageSize=50&tenant={tenant}",
        "fin02_middle_page": f"/api/billing/invoices/tenant?page={middle_page}&pageSize=50&tenant={tenant}",
        "fin02_overdue_page_1": f"/api/billing/invoices/tenant?page=1&pageSize=50&status=OVERDUE&tenant={tenant}",
        "fin02_overdue_deep_page": (
            f"/api/billing/invoices/tenant?page={status_pages['OVERDUE']}&pageSize=50&status=OVERDUE&tenant={tenant}"
        ),
        "fin02_paid_deep_page": (
            f"/api/billing/invoices/tenant?page={status_pages['PAID']}&pageSize=50&status=PAID&tenant={tenant}"
        ),
    }
    results = {}
    sql_seconds: list[float] = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_seconds.append(time.perf_counter() - started)

    for name, url in requests.items():
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.content[:300]!r}")
        samples, in_sql, queries = [], [], []
        for _ in range(repeat):
            sql_seconds.clear()
            with connection.execute_wrapper(timed):
                started = time.perf_counter()
                client.get(url)
                samples.append(time.perf_counter() - started)
            in_sql.append(sum(sql_seconds))
            queries.append(len(sql_seconds))
        results[name] = {
            "median_ms": statistics.median(samples) * 1000, "max_ms": max(samples) * 1000, "url": url,
            # the same requests' time inside the database (every query, auth included), and the query count
            "sql_median_ms": statistics.median(in_sql) * 1000, "queries": max(queries),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
