"""The sha256 of every landed version's rendered SQL (`rendered(code)`): a landed version never
changes. Versions composed from `payments/database/rules.py` would change silently if a fragment did;
`tests/payments/database/test_landed_versions.py` recomputes these and fails with "make a new
version". Adding a version: add its module, its migration, and its line here."""
import hashlib
import json

from payments.database import DatabaseCode

LANDED_SHA256 = {
    "guards_v2": "eadf6fd2eb5db0fda9467988055a83404b0adfd7ecf6dd437c64482e2e413472",
    "guards_v3": "501c93714468b860d4ee1fd74783df0e9781acf8cdf8793626fcf3bbd03a8afc",
    "figures_v1": "27658307bee7cfad9883d9b95d5d02a36147fbbdfa7ced8474cc901f0ca6f323",
    "figures_v2": "1f203c9c05b5ac5b59ceaf72ae82737e68a0716833532fd3b2fd50ede24ec072",
    "balances_v1": "a8ebfbffef71e1fa07b0bffc1219eb00ae15f61f4b901a95d0722bc512d06a31",
    "figures_v3": "ad182ede242d17e9765394580e4dcb41c08808b9233e153d7101d8bc00534fda",
    "audit_truncate_v1": "72095aa35d7dad8e5ab6fbbba8d57fa4ee391e46956cebb048d68f1b146c1855",
}


def rendered(code: DatabaseCode) -> str:
    """Everything a version installs or drops, as one canonical text."""
    return json.dumps(
        {
            "name": code.name, "setup": list(code.setup), "triggers": code.triggers, "functions": list(code.functions),
            "tables": list(code.tables), "retired_triggers": code.retired_triggers,
            "retired_functions": list(code.retired_functions),
        },
        sort_keys=True,
    )


def sha256_of(code: DatabaseCode) -> str:
    return hashlib.sha256(rendered(code).encode()).hexdigest()
