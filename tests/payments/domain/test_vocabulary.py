"""Words written in two places, tied: the status engine's statuses and `billing.models.InvoiceStatus`,
the verification statuses of the domain and of the model, the read model's "no due day"."""
from datetime import date

from billing.models import InvoiceStatus
from payments import models
from payments.database import rules
from payments.domain import aging, allocations
from payments.domain import status as engine


def test_the_engine_knows_exactly_the_invoice_statuses_the_model_stores():
    assert set(engine.ALL_STATUSES) == set(InvoiceStatus.values)
    for name in InvoiceStatus.names:
        assert getattr(engine, name) == InvoiceStatus[name].value


def test_the_domain_knows_exactly_the_verification_statuses():
    assert set(allocations.VERIFICATION_STATUSES) == set(models.VerificationStatus.values)
    for name in models.VerificationStatus.names:
        assert getattr(allocations, name) == models.VerificationStatus[name].value


def test_no_due_day_is_one_day_everywhere():
    assert models.NO_DUE_DAY == rules.NO_DUE_DAY
    assert aging.NO_DUE == date.fromisoformat(rules.NO_DUE_DAY)
    assert rules.NO_DUE_DAY_SQL == f"DATE '{models.NO_DUE_DAY}'"


def test_aging_buckets_are_one_list():
    from billing.selectors.finance import AGING_BUCKETS

    assert AGING_BUCKETS == aging.AGING_BUCKETS == rules.AGING_BUCKETS


def test_the_read_model_states_are_the_ones_its_sql_writes():
    written = {"PAID", "PART", "UNPAID", *engine.EXPLICIT_STATUSES}
    assert written == set(models.FiguresState.values)
    state_sql = rules.money_state("v.paid_cents")
    for state in written - engine.EXPLICIT_STATUSES:
        assert f"'{state}'" in state_sql
