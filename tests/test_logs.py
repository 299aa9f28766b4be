"""Log lines a machine can read: one JSON object per line with the request id and `extra=` fields;
one line per request (`pay10.request`) and per refused payment operation (`pay10.payments.refused`)."""
import json
import logging
import sys

import pytest

from config.logs import JsonLineFormatter
from config.request_context import REQUEST_ID_HEADER
from tests.billing.api_clients import bearer_client
from tests.billing.factories import TenantFactory
from tests.payments.factories import PaymentFactory


def _record(message: str, **extra) -> logging.LogRecord:
    record = logging.getLogger("pay10.backfill").makeRecord("pay10.backfill", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_json_line_carries_level_logger_message_time_and_extra_fields():
    line = JsonLineFormatter().format(_record("batch 3 done", batch=3, invoices=1_000, elapsed_s=0.5))
    assert "\n" not in line
    document = json.loads(line)
    assert {key: document[key] for key in ("level", "logger", "message", "batch", "invoices", "elapsed_s")} == {
        "level": "INFO", "logger": "pay10.backfill", "message": "batch 3 done", "batch": 3, "invoices": 1_000,
        "elapsed_s": 0.5,
    }
    assert document["time"].endswith("+00:00")
    assert "request_id" not in document  # outside a request


def test_json_line_keeps_a_traceback_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("pay10").makeRecord("pay10", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc_info"]


@pytest.mark.django_db
def test_each_request_logs_one_line_with_its_id_user_tenant_status_and_duration(caplog):
    tenant = TenantFactory(id="logged", currency="KES")
    client = bearer_client(username="tenant-api", tenant=tenant)
    with caplog.at_level(logging.INFO, logger="pay10"):
        response = client.get("/api/billing/invoices/tenant?page=1&pageSize=5", headers={REQUEST_ID_HEADER: "req-42"})
    assert response.status_code == 200
    lines = [record for record in caplog.records if record.name == "pay10.request"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.path, line.status, line.user, line.tenant) == (
        "GET", "/api/billing/invoices/tenant", 200, "tenant-api", "logged")
    assert line.duration_ms >= 0
    assert json.loads(JsonLineFormatter().format(line))["request_id"] == "req-42"


@pytest.mark.django_db
def test_a_refused_payment_operation_logs_one_line_and_a_read_none(caplog):
    payment = PaymentFactory(verification_status="REJECTED", status="FAILED")
    client = bearer_client(username="ops", staff=True)
    with caplog.at_level(logging.INFO, logger="pay10"):
        refused = client.post(f"/api/payments/{payment.pk}/verify")  # a rejected payment: 409
        missing = client.get("/api/payments/999999")  # a read, not an operation
    assert (refused.status_code, missing.status_code) == (409, 404)
    lines = [record for record in caplog.records if record.name == "pay10.payments.refused"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.operation, line.status, line.code, line.user) == ("payment-verify", 409, "rule_violation", "ops")
    assert line.ids == {"payment_id": payment.pk}
    assert line.detail == refused.json()["detail"]
    assert line.levelname == "WARNING"
