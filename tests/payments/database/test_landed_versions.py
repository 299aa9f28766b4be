"""A landed version of the database code never changes (payments/database/__init__.py): its rendered
SQL is pinned, so an edit of a SQL fragment (`payments/database/rules.py`) that would change a
version already installed by a migration fails here instead of drifting silently."""
import importlib
import pkgutil
import re

import pytest

import payments.database
from payments.database import guards_v2, guards_v3, figures_v1, figures_v2, figures_v3, landed

VERSIONS = sorted(
    name for _finder, name, _pkg in pkgutil.iter_modules(payments.database.__path__) if re.fullmatch(r"\w+_v\d+", name)
)


def test_every_version_module_is_pinned():
    assert VERSIONS == sorted(landed.LANDED_SHA256)


@pytest.mark.parametrize("name", VERSIONS)
def test_a_landed_version_renders_the_sql_it_landed_with(name):
    code = importlib.import_module(f"payments.database.{name}").CODE
    assert landed.sha256_of(code) == landed.LANDED_SHA256[name], (
        f"{name} is landed database code and its SQL changed (a fragment of payments/database/rules.py it is "
        f"composed from, or the module itself): make a new version instead (a new module and a new migration "
        f"with InstallDatabaseCode(new, previous={name}.CODE)), and put it in payments/database/landed.py"
    )


def _words(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def test_the_composed_versions_install_the_same_objects_as_the_ones_they_follow():
    for old, new in ((guards_v2.CODE, guards_v3.CODE), (figures_v1.CODE, figures_v2.CODE), (figures_v2.CODE, figures_v3.CODE)):
        assert (new.triggers, new.functions, new.tables) == (old.triggers, old.functions, old.tables)
    # figures v2 keeps v1's noting functions word for word; only the refresh is composed
    assert figures_v2.CODE.setup[2:] == figures_v1.CODE.setup[2:]
    # figures v3 refreshes with v2's statement word for word (the build runs it too); only the plan
    # forcing around it moved under a count of ids
    assert figures_v3.CODE.setup[2:] == figures_v2.CODE.setup[2:]
    v2_statement = re.search(r"EXECUTE \$q\$(.*)\$q\$ USING p_ids;", figures_v2.REFRESH, re.S).group(1)
    assert _words(figures_v3.refresh_sql("$1")) == _words(v2_statement)
    assert _words(f"PERFORM {figures_v3.locks_sql('p_ids')};") in _words(figures_v2.REFRESH)
    assert f"IF cardinality(p_ids) < {figures_v3.PROBE_LIMIT} THEN" in figures_v3.REFRESH
    # guards v3: only whitespace moved, except the orphan test spelled with the shared fragment
    old, new = _words(guards_v2.FUNCTIONS), _words(guards_v3.FUNCTIONS)
    orphan = re.compile(r"CREATE OR REPLACE FUNCTION pay10_allocation_is_orphan.*?\$\$;", re.S)
    assert _words(re.sub(r"\(\s+", "(", orphan.sub("", old))) == _words(re.sub(r"\(\s+", "(", orphan.sub("", new)))
