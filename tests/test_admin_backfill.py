"""The backfill console in the admin: every run with its progress and why it waits, read-only,
with pause/resume/cancel actions that do what `pay10_backfill_control` does."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from payments.admin import MESSAGE_RUNS_CONTROLLED, MESSAGE_RUNS_LEFT
from payments.models import BackfillRun
from payments.services.backfill_control import CANCEL, PAUSE, RESUME, WAIT_PAUSED

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser(username="ops", password="pw", email="ops@example.com")
    client = Client()
    client.force_login(user)
    return client


def console(**figures) -> dict:
    return {
        "invoices": {"done": 1_200, "total": 4_800}, "payments": {"done": 0, "total": None}, "batchSize": 1_440,
        "lastBatchSeconds": 0.87, "rowsPerSecond": 1_650.4, "etaSeconds": 2_181, "parityChecks": 3,
        "heartbeatAt": timezone.now().isoformat(), "waiting": None, "lastError": None, **figures,
    }


@pytest.fixture
def runs() -> dict[str, BackfillRun]:
    make = BackfillRun.objects.create
    return {
        "running": make(batch_size=1000, upper_invoice_id=9_000, cursor_invoice_id=2_400,
                        counts={"shard": "1/2", "console": console()}),
        "waiting": make(batch_size=1000, upper_invoice_id=9_000, counts={
            "shard": "2/2", "console": console(waiting="replication lag 41.0 s is over 30 s")}),
        "failed": make(batch_size=1000, upper_invoice_id=9_000, state="FAILED", counts={"console": console(
            lastError="BackfillParityBroken: parity gate: FIN-01 ALL_TIME invoicedCents of tenant acme in KES ...")}),
        "done": make(batch_size=1000, upper_invoice_id=9_000, state="COMPLETED", finished_at=timezone.now(),
                     counts={"console": console(invoices={"done": 4_800, "total": 4_800})}),
    }


def row(html: str, run: BackfillRun) -> str:
    start = html.index(f'value="{run.pk}"')
    return html[start:html.index("</tr>", start)]


def act(client: Client, action: str, runs: list[BackfillRun]):
    data = {"action": action, "_selected_action": [run.pk for run in runs], "index": "0"}
    return client.post(reverse("admin:payments_backfillrun_changelist"), data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_list_shows_progress_rate_eta_and_why_each_run_waits(admin_client, runs):
    html = admin_client.get(reverse("admin:payments_backfillrun_changelist")).content.decode()
    running = row(html, runs["running"])
    for shown in ("1/2", ">Running<", ">running<", "1,200 of 4,800 (25%)", "0 of ?", "1440", "0.87 s", "1,650 rows/s",
                  "0:36:21", "ago)"):
        assert shown in running, shown
    assert "waiting: replication lag 41.0 s is over 30 s" in row(html, runs["waiting"])
    assert "failed: BackfillParityBroken: parity gate: FIN-01 ALL_TIME invoicedCents of tenant acme" in row(
        html, runs["failed"])
    assert "4,800 of 4,800 (100%)" in row(html, runs["done"])


def test_a_run_whose_runner_is_gone_says_so(admin_client, runs):
    stale = (timezone.now() - timedelta(minutes=10)).isoformat()
    runs["running"].counts["console"]["heartbeatAt"] = stale
    runs["running"].save()
    html = admin_client.get(reverse("admin:payments_backfillrun_changelist")).content.decode()
    assert "running, but no runner is attached (last seen" in row(html, runs["running"])


def test_the_run_page_is_read_only_with_cursors_and_counts(admin_client, runs):
    response = admin_client.get(reverse("admin:payments_backfillrun_change", args=[runs["running"].pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "1,200 of 4,800 (25%)" in html and "2400" in html
    assert 'name="_save"' not in html and 'name="state"' not in html
    assert admin_client.post(reverse("admin:payments_backfillrun_change", args=[runs["running"].pk]),
                             {"state": "COMPLETED"}).status_code == 403
    assert admin_client.get(reverse("admin:payments_backfillrun_add")).status_code == 403


def test_pause_resume_and_cancel_actions_steer_the_selected_runs(admin_client, runs):
    response = act(admin_client, "pause_runs", [runs["running"], runs["waiting"]])
    assert messages_of(response) == [MESSAGE_RUNS_CONTROLLED[PAUSE].format(runs=f"{runs['running'].pk}, {runs['waiting'].pk}")]
    assert set(BackfillRun.objects.filter(pk__in=[runs["running"].pk, runs["waiting"].pk])
               .values_list("state", flat=True)) == {"PAUSED"}

    response = act(admin_client, "resume_runs", [runs["running"]])
    assert messages_of(response) == [MESSAGE_RUNS_CONTROLLED[RESUME].format(runs=runs["running"].pk)]

    response = act(admin_client, "cancel_runs", [runs["running"], runs["done"]])
    assert messages_of(response) == [
        MESSAGE_RUNS_CONTROLLED[CANCEL].format(runs=runs["running"].pk),
        MESSAGE_RUNS_LEFT.format(runs=f"run {runs['done'].pk} is COMPLETED"),
    ]
    states = dict(BackfillRun.objects.values_list("pk", "state"))
    assert states == {runs["running"].pk: "CANCELLED", runs["waiting"].pk: "PAUSED", runs["failed"].pk: "FAILED",
                      runs["done"].pk: "COMPLETED"}


def test_an_action_on_finished_runs_only_is_an_error_message_and_changes_nothing(admin_client, runs):
    response = act(admin_client, "pause_runs", [runs["done"]])
    assert response.status_code == 200
    assert messages_of(response) == [f"no backfill run to pause: run {runs['done'].pk} is COMPLETED"]
    assert BackfillRun.objects.get(pk=runs["done"].pk).state == "COMPLETED"


def test_a_paused_run_with_its_runner_attached_says_it_waits(admin_client, runs):
    BackfillRun.objects.filter(pk=runs["waiting"].pk).update(state="PAUSED")
    run = BackfillRun.objects.get(pk=runs["waiting"].pk)
    run.counts["console"]["waiting"] = WAIT_PAUSED
    run.save()
    html = admin_client.get(reverse("admin:payments_backfillrun_changelist")).content.decode()
    assert f"waiting: {WAIT_PAUSED}" in row(html, run)


def test_staff_who_may_only_view_runs_get_no_actions(runs):
    viewer = get_user_model().objects.create_user(username="viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_backfillrun"))
    client = Client()
    client.force_login(viewer)
    response = client.get(reverse("admin:payments_backfillrun_changelist"))
    assert response.status_code == 200
    assert "pause_runs" not in response.content.decode()
    act(client, "pause_runs", [runs["running"]])
    assert BackfillRun.objects.get(pk=runs["running"].pk).state == "RUNNING"
