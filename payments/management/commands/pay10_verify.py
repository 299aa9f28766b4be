"""Runbook Step 6: check every PAY-10 money invariant, and that nothing finance staff see changed."""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.selectors.baseline import BASELINE_KIND, UnknownTenant, baseline_document, tenant_by_id
from payments.selectors.schema import pay10_schema_installed
from payments.selectors.verification import verification_run

SCHEMA_MISSING = "the PAY-10 schema is not installed: run `manage.py migrate` first"
BASELINE_UNREADABLE = "cannot read the baseline {path}: {reason}"
BASELINE_INVALID = "{path} is not a pay10_baseline document"
BASELINE_OTHER_SCOPE = "the baseline covers {baseline_scope}, not {scope}: verify with the same --tenant as the baseline"
BASELINE_KEYS = {"asOf", "tenant", "fin01", "fin02", "invoicesByStatus"}
VERIFY_FAILED = "PAY-10 verification failed: {count} check(s) do not hold: {names}"
VERIFY_PASSED = "PAY-10 verification passed: {count} check(s) hold"


def _scope(tenant_id: str | None) -> str:
    return f"tenant {tenant_id}" if tenant_id else "all tenants"


class Command(BaseCommand):
    help = (
        "Check every SPEC.md money invariant (set-based SQL) and, with --baseline, compare FIN-01, FIN-02 and "
        "invoice counts by status with a pay10_baseline file. Exit 0 only when everything holds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--baseline", help="A file written by pay10_baseline before the migration.")
        parser.add_argument("--tenant", help="Only this tenant (default: every tenant, or the baseline's).")
        parser.add_argument("--json", action="store_true", help="Print one JSON document {ok, checks} instead of lines.")
        parser.add_argument(
            "--allow-partial", action="store_true", help="Invoices not yet migrated are not a failure (mid-backfill)."
        )

    def handle(self, *args, **options):
        baseline_path, tenant_id = options["baseline"], options["tenant"]
        as_json, allow_partial = options["json"], options["allow_partial"]
        if not pay10_schema_installed():
            raise CommandError(SCHEMA_MISSING)
        baseline = self._read_baseline(Path(baseline_path)) if baseline_path else None
        if baseline is not None:
            if tenant_id is None:
                tenant_id = baseline["tenant"]
            if tenant_id != baseline["tenant"]:
                raise CommandError(
                    BASELINE_OTHER_SCOPE.format(baseline_scope=_scope(baseline["tenant"]), scope=_scope(tenant_id))
                )
        try:
            tenant = tenant_by_id(tenant_id=tenant_id)
        except UnknownTenant as error:
            raise CommandError(str(error)) from error

        checks = verification_run(
            tenant=tenant, today=timezone.localdate(), allow_partial=allow_partial, baseline=baseline,
            current_document=baseline_document,
        )
        failed = [check.name for check in checks if not check.ok]

        if as_json:
            document = {"ok": not failed, "checks": [check.as_dict() for check in checks]}
            self.stdout.write(json.dumps(document, indent=2, default=str))
        else:
            for check in checks:
                self.stdout.write(f"{'✓' if check.ok else '✗'} {check.name}: {check.explanation}")
                for example in check.examples if check.count else ():
                    self.stdout.write(f"    {json.dumps(example, default=str, sort_keys=True)}")
        if failed:
            raise CommandError(VERIFY_FAILED.format(count=len(failed), names=", ".join(failed)), returncode=1)
        if not as_json:
            self.stdout.write(VERIFY_PASSED.format(count=len(checks)))

    def _read_baseline(self, path: Path) -> dict:
        try:
            baseline = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(BASELINE_UNREADABLE.format(path=path, reason=error.strerror or error)) from error
        except ValueError as error:
            raise CommandError(BASELINE_UNREADABLE.format(path=path, reason=f"invalid JSON ({error})")) from error
        if not isinstance(baseline, dict) or baseline.get("kind") != BASELINE_KIND or not BASELINE_KEYS <= set(baseline):
            raise CommandError(BASELINE_INVALID.format(path=path))
        return baseline
