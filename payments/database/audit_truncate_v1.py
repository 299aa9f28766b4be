"""The payment audit log refuses TRUNCATE, for every role. Installed by
`0008_audit_log_truncate_guard`, removed by its reverse. Audit-truncate v1, a landed version: never
edited; a change is `audit_truncate_v2` and a new migration (`payments/database/__init__.py`).

Row triggers (`pay10_audit_append_only`, guards) refuse DELETE and UPDATE, but TRUNCATE fires no row
trigger: this statement-level BEFORE TRUNCATE trigger closes that, for a TRUNCATE of the table itself
or one cascading into it (`TRUNCATE billing_tenant CASCADE`).

The one unlock is deliberate and the table owner's alone: in the transaction of the TRUNCATE,
`SET LOCAL pay10.audit_truncate = 'unlock'` (`UNLOCK_SQL`), by a role that is (a member of) the
table's owner. The test suite's flushes between tests use it (tests/conftest.py); nothing in the
product does. The service's runtime role has no TRUNCATE privilege on any table anyway
(`manage.py pay10_grant_runtime`).
"""
from payments.database import DatabaseCode

TABLE = "payments_paymentauditlog"
TRIGGER = "pay10_audit_refuse_truncate"
FUNCTION = "pay10_audit_refuse_truncate()"
UNLOCK_SETTING = "pay10.audit_truncate"
UNLOCK_SQL = f"SET LOCAL {UNLOCK_SETTING} = 'unlock'"

REFUSE_TRUNCATE = f"""
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
"""

CODE = DatabaseCode(
    name="audit_truncate_v1",
    setup=(REFUSE_TRUNCATE,),
    triggers={
        TRIGGER: (TABLE, f"CREATE TRIGGER {TRIGGER} BEFORE TRUNCATE ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}"),
    },
    functions=(FUNCTION,),
)
