"""The least-privilege PostgreSQL role the running service connects as (`manage.py pay10_grant_runtime`).

The service (API, admin, and the commands listed as the runtime role's in docs/runbook.md) needs
exactly `RUNTIME_GRANTS`: what its views, services, the commit-time triggers it fires (guard and
read-model upkeep, which run with the caller's rights) and migrate-on-first-write read and write.
On the audit log that is SELECT and INSERT only; nothing anywhere gets TRUNCATE; allocations and
reversals are never deleted or updated; so `pay10.audit_purge` (which any session may set) removes
nothing for this role. `OWNER_ONLY` tables are the backfill's bookkeeping and Django's own: the
owner runs `migrate`, the backfill, its reverse, the cleanup and the read-model rebuild.

Every table in the database is in exactly one of the two (a test holds that), so a new table is a
deliberate decision, not a silent gap. Besides tables: CONNECT and TEMPORARY on the database (the
triggers keep their notes in session temporary tables), USAGE on the schema, USAGE and SELECT on
the sequences of the tables it inserts into. Advisory locks need no privilege; trigger functions are
executable by PUBLIC (PostgreSQL's default).
"""
from django.db import connection, transaction

# Row locks (SELECT ... FOR UPDATE, the services' lock order) need UPDATE on some column: on a table
# the service only inserts into, UPDATE of its key alone, which changes nothing it may not (the
# foreign keys that point at it refuse a new key).
LOCK_ONLY = "UPDATE (id)"

R, RI, RIU, RIUD, RID, RU = (
    ("SELECT",),
    ("SELECT", "INSERT"),
    ("SELECT", "INSERT", "UPDATE"),
    ("SELECT", "INSERT", "UPDATE", "DELETE"),
    ("SELECT", "INSERT", "DELETE"),
    ("SELECT", "UPDATE"),
)

RUNTIME_GRANTS: dict[str, tuple[str, ...]] = {
    # Django and the admin
    "django_session": RIUD,
    "django_admin_log": RI,
    "django_content_type": R,
    "django_migrations": R,  # the start-up check for unapplied migrations
    "auth_permission": R,
    "auth_user": RIU,  # users are deactivated, never deleted (their audit rows keep them)
    "auth_group": RIU,
    "auth_group_permissions": RID,
    "auth_user_groups": RID,
    "auth_user_user_permissions": RID,
    # API tokens (knox deletes expired ones when it meets them; revoking deletes)
    "knox_authtoken": RID,
    # django-axes: failed admin logins and lockouts
    "axes_accessattempt": RIUD,
    "axes_accessattemptexpiration": RIUD,
    "axes_accessfailurelog": RIUD,
    "axes_accesslog": RIUD,
    # billing: tenants are kept in the admin; invoices change only their status through the services
    "billing_tenant": RIU,
    "billing_invoice": RU,
    "billing_tenantmember": RI,
    # payments: money rows are history (inserted, never deleted); payments change status
    "payments_payment": RIU,
    "payments_allocation": RI,
    "payments_allocationreversal": RI,
    "payments_credit": (*RI, LOCK_ONLY),
    "payments_refund": RI,
    "payments_paymentauditlog": RI,
    # migrate-on-first-write (a write to an invoice the backfill has not reached migrates it first)
    "payments_invoicemigration": RI,
    "payments_paymentmigration": RI,
    "payments_backfilldeviation": RI,
    # the operator's console: the admin's pause/resume/cancel change a run's state, nothing else
    "payments_backfillrun": (*R, "UPDATE (state)"),
    # the FIN-01/FIN-02 read model, kept by the commit-time triggers the service's writes fire
    "payments_invoicefigures": RIUD,
    "payments_invoicerollup": RIU,
    "payments_invoiceduerollup": RIU,
    "payments_invoiceblock": RIU,
    "payments_invoicefiguresbuild": R,
    # FIN-01's tenant balances, kept by the commit-time triggers the service's writes fire
    "payments_balancepayment": RIUD,
    "payments_balancecredit": RIUD,
    "payments_tenantbalance": RIU,
    "payments_tenantbalancebuild": R,
    # the commit-time steps' queues (one row per writing transaction, removed at its commit)
    "pay10_guard_pending": RID,
    "pay10_figures_pending": RID,
    "pay10_balances_pending": RID,
}

# Tables the runtime role gets nothing on (none yet: every table the service has is above).
OWNER_ONLY: frozenset[str] = frozenset()

ERROR_NOT_POSTGRESQL = "pay10_grant_runtime needs PostgreSQL (DATABASE_URL): SQLite has no roles"
ERROR_NO_SUCH_ROLE = "role {role!r} does not exist: create it first (CREATE ROLE {role} LOGIN PASSWORD '...')"
ERROR_ROLE_TOO_STRONG = (
    "role {role!r} {why}: a runtime role must be neither a superuser nor the tables' owner, or no grant limits it"
)
ERROR_UNKNOWN_TABLES = (
    "tables {tables} are neither granted nor owner-only (payments/services/runtime_role.py): decide first"
)


class RuntimeRoleError(Exception):
    pass


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def database_tables(cursor) -> set[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
    )
    return {row[0] for row in cursor.fetchall()}


def unmapped_tables(cursor) -> list[str]:
    return sorted(database_tables(cursor) - set(RUNTIME_GRANTS) - OWNER_ONLY)


def runtime_grants_apply(role: str) -> dict[str, tuple[str, ...]]:
    """Revoke whatever the role held on the service's tables and sequences, then grant exactly
    `RUNTIME_GRANTS`. One transaction; returns the grants made per table."""
    if connection.vendor != "postgresql":
        raise RuntimeRoleError(ERROR_NOT_POSTGRESQL)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is None:
            raise RuntimeRoleError(ERROR_NO_SUCH_ROLE.format(role=role))
        if row[0]:
            raise RuntimeRoleError(ERROR_ROLE_TOO_STRONG.format(role=role, why="is a superuser"))
        cursor.execute(
            "SELECT pg_has_role(%s, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = 'payments_paymentauditlog'::regclass",
            [role],
        )
        if cursor.fetchone()[0]:
            raise RuntimeRoleError(ERROR_ROLE_TOO_STRONG.format(role=role, why="owns the tables (or is a member of their owner)"))
        present = database_tables(cursor)
        unknown = sorted(present - set(RUNTIME_GRANTS) - OWNER_ONLY)
        if unknown:
            raise RuntimeRoleError(ERROR_UNKNOWN_TABLES.format(tables=", ".join(unknown)))
        quoted_role = _quote(role)
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        cursor.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {_quote(database)} TO {quoted_role}")
        cursor.execute(f"GRANT USAGE ON SCHEMA {_quote(schema)} TO {quoted_role}")
        cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {_quote(schema)} FROM {quoted_role}")
        cursor.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {_quote(schema)} FROM {quoted_role}")
        granted = {}
        for table, privileges in sorted(RUNTIME_GRANTS.items()):
            if table not in present:
                continue  # e.g. the read model before 0004, the backfill's tables before 0002
            cursor.execute(f"GRANT {', '.join(privileges)} ON TABLE {_quote(table)} TO {quoted_role}")
            granted[table] = privileges
            if "INSERT" in privileges:
                cursor.execute(
                    "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
                    "WHERE d.refobjid = %s::regclass AND d.deptype IN ('a', 'i')",
                    [table],
                )
                for (sequence,) in cursor.fetchall():
                    cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {_quote(sequence)} TO {quoted_role}")
        return granted
