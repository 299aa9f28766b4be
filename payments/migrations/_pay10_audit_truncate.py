"""The payment audit log refuses TRUNCATE, for every role (installed by
`0008_audit_log_truncate_guard`, removed by its reverse; the loader skips this module).

Row triggers (`pay10_audit_append_only`) refuse DELETE and UPDATE, but TRUNCATE fires no row
trigger: this statement-level BEFORE TRUNCATE trigger closes that, a TRUNCATE of the table itself or
one cascading into it (`TRUNCATE billing_tenant CASCADE`).

The one unlock is deliberate and the table owner's alone: in the transaction of the TRUNCATE,
`SET LOCAL pay10.audit_truncate = 'unlock'` (`UNLOCK_SQL`), by a role that is (a member of) the
table's owner. The test suite's flushes between tests use it (tests/conftest.py); nothing in the
product does. The service's runtime role has no TRUNCATE privilege on any table anyway
(`manage.py pay10_grant_runtime`).
"""

TABLE = "payments_paymentauditlog"
TRIGGER = "pay10_audit_refuse_truncate"
FUNCTION = "pay10_audit_refuse_truncate()"
UNLOCK_SETTING = "pay10.audit_truncate"
UNLOCK_SQL = f"SET LOCAL {UNLOCK_SETTING} = 'unlock'"

INSTALL_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION} RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('{UNLOCK_SETTING}', true), '') = 'unlock'
       AND pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'USAGE') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'PAY-10: the payment audit log is append-only (TRUNCATE refused)'
        USING ERRCODE = 'restrict_violation';
END;
$$;
DROP TRIGGER IF EXISTS {TRIGGER} ON {TABLE};
CREATE TRIGGER {TRIGGER} BEFORE TRUNCATE ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION};
"""

REMOVE_SQL = f"""
DROP TRIGGER IF EXISTS {TRIGGER} ON {TABLE};
DROP FUNCTION IF EXISTS {FUNCTION};
"""

# A migration waits this long at most for its lock on the audit log, then fails (and can be rerun)
# rather than queue every writer behind it.
LOCK_TIMEOUT = "5s"


def guard_install(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        schema_editor.execute(INSTALL_SQL, params=None)


def guard_remove(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        schema_editor.execute(REMOVE_SQL, params=None)
