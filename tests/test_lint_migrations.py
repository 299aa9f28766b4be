"""bin/lint_migrations.py: squawk's findings about existing tables fail CI; those about tables the
same migration creates do not."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bin" / "lint_migrations.py"


@pytest.fixture(scope="module")
def lint_migrations():
    spec = importlib.util.spec_from_file_location("lint_migrations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # squawk-cli is a dev dependency (`make test` installs it): missing, these tests fail, not skip.
    assert module.SQUAWK.exists(), "squawk-cli is not installed (pip install -e '.[dev]')"
    return module


def test_a_validating_check_and_a_plain_index_on_an_existing_table_are_reported(lint_migrations):
    problems = lint_migrations.lint("payments.9999_unsafe", [
        'ALTER TABLE "payments_payment" ADD CONSTRAINT "c" CHECK ("amount_cents" > 0);',
        'CREATE INDEX "i" ON "payments_payment" ("reference");',
    ], verbose=False)
    rules = {problem.split(": ")[1] for problem in problems}
    assert {"constraint-missing-not-valid", "require-concurrent-index-creation"} <= rules


def test_the_same_on_a_table_the_migration_creates_is_not(lint_migrations):
    assert lint_migrations.lint("payments.9999_new", [
        'CREATE TABLE "payments_new" ("id" bigint NOT NULL PRIMARY KEY, "amount_cents" bigint NOT NULL);',
        'ALTER TABLE "payments_new" ADD CONSTRAINT "c" CHECK ("amount_cents" > 0);',
        'CREATE INDEX "i" ON "payments_new" ("amount_cents");',
    ], verbose=False) == []


def test_the_online_steps_pass(lint_migrations):
    assert lint_migrations.lint("payments.9999_online", [
        "BEGIN;", "SET LOCAL lock_timeout = '3000ms';", "SET LOCAL statement_timeout = 0;",
        'ALTER TABLE "payments_payment" ADD CONSTRAINT "c" CHECK ("amount_cents" > 0) NOT VALID;', "COMMIT;",
        "SET lock_timeout = 0;", "SET statement_timeout = 0;",
        'ALTER TABLE "payments_payment" VALIDATE CONSTRAINT "c";',
        'CREATE INDEX CONCURRENTLY "i" ON "payments_payment" ("reference");',
    ], verbose=False) == []
