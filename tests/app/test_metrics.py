"""Per-receiver metrics: a known mix of calls run by two real workers gives exact counts on the page."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection as db_connection
from django.db import transaction
from django.test import Client, override_settings
from rq.job import Job, JobStatus

from rq_signals import queues
from rq_signals.metrics import METRIC_NAMES
from tests.receivers import invoice_audited, invoice_rejected
from tests.settings import SETTINGS_ENV
from tests.support.processes import REPO_ROOT, Proc
from tests.support.waiting import wait_until
from tests.testapp.models import Invoice
from worker.serializers import JSONSerializer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

URL = "/django-rq/receivers/metrics/"
TOKEN = "metrics-token-for-tests-0123"
QUEUE_NAMES = ("high", "default", "low")


def start_worker(tmp_path: Path, name: str) -> Proc:
    args = [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqworker", "--worker-class"]
    args += ["worker.RetryWorker", "--name", f"{name}-{tmp_path.name}", *QUEUE_NAMES]
    env = {
        "RQ_SIGNALS_TEST_DB_NAME": str(db_connection.settings_dict["NAME"]),
        SETTINGS_ENV: json.dumps({"METRICS": True}),
    }
    return Proc(args, env=env, log_path=tmp_path / f"{name}.log")


def all_settled(job_ids: list[str]) -> bool:
    connection = queues.get_queue("default").connection
    statuses = [
        Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status(refresh=False)
        for job_id in job_ids
    ]
    return all(status in (JobStatus.FINISHED, JobStatus.FAILED) for status in statuses)


def samples(text: str) -> dict[str, float]:
    """The page's samples, by name and labels (`name{labels}`), comments left out."""
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_a_known_mix_of_calls_on_two_workers_is_counted_exactly(tmp_path):
    # Given, committed: three audits (each fails once, then succeeds), two rejections (each fails
    # twice: exhausted after its retry), six saved invoices, one of which is deleted before a worker runs
    with transaction.atomic():
        audited = [Invoice.objects.create(reference=f"M-A{n}") for n in range(3)]
        rejected = [Invoice.objects.create(reference=f"M-R{n}") for n in range(2)]
        gone = Invoice.objects.create(reference="M-GONE")
        for invoice in audited:
            invoice_audited.send(sender="audit", invoice=invoice)
        for invoice in rejected:
            invoice_rejected.send(sender="review", invoice=invoice)
    Invoice.objects.filter(pk=gone.pk).delete()  # its post_delete: one more call (record_invoice_deleted)
    job_ids = [
        raw.decode()
        for name in QUEUE_NAMES
        for raw in queues.get_queue(name).connection.lrange(f"rq:queue:{name}", 0, -1)
    ]
    assert len(job_ids) == 3 + 2 + 6 + 1

    # When two workers counting metrics run them all, retries included
    workers = [start_worker(tmp_path, "one"), start_worker(tmp_path, "two")]
    try:
        wait_until(lambda: all_settled(job_ids), timeout=60, what="every call to finish or fail for good")
    finally:
        for worker in workers:
            worker.stop()

    # Then staff read every attempt counted once, by receiver, queue and outcome
    staff = Client()
    staff.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    page = staff.get(URL)
    assert page.status_code == 200
    assert page["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(page.content.decode())
    attempts = {
        name: value for name, value in found.items() if name.startswith("rq_signals_receiver_attempts")
    }
    series = 'rq_signals_receiver_attempts_total{{receiver="tests.receivers.{}",queue="{}",outcome="{}"}}'
    assert attempts == {
        series.format("audit_invoice", "default", "retrying"): 3,
        series.format("audit_invoice", "default", "succeeded"): 3,
        series.format("reject_invoice", "low", "retrying"): 2,
        series.format("reject_invoice", "low", "exhausted"): 2,
        series.format("record_invoice", "high", "succeeded"): 5,
        series.format("record_invoice", "high", "skipped"): 1,
        series.format("record_invoice_deleted", "low", "succeeded"): 1,
    }
    # ... each attempt's run time and queue wait, as histograms whose counts are the attempts
    for receiver, queue, count in (("audit_invoice", "default", 6), ("reject_invoice", "low", 4)):
        labels = f'receiver="tests.receivers.{receiver}",queue="{queue}"'
        for histogram in ("run", "wait"):
            name = f"rq_signals_receiver_{histogram}_seconds"
            assert found[f"{name}_count{{{labels}}}"] == count
            assert found[f'{name}_bucket{{{labels},le="+Inf"}}'] == count
            buckets = [value for key, value in found.items() if key.startswith(f"{name}_bucket{{{labels},")]
            assert buckets == sorted(buckets)  # cumulative
    # ... and nothing waiting or retrying any more
    assert {name: value for name, value in found.items() if name.startswith("rq_signals_queue_jobs")} == {
        f'rq_signals_queue_jobs{{queue="{queue}",state="{state}"}}': 0
        for queue in QUEUE_NAMES
        for state in ("waiting", "retrying")
    }


@override_settings(RQ_SIGNALS={"METRICS_TOKEN": TOKEN})
def test_the_page_is_for_staff_or_the_bearer_of_the_token():
    assert Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client().get(URL, HTTP_AUTHORIZATION="Bearer wrong-token-0123456789").status_code == 403
    anonymous = Client().get(URL)
    assert anonymous.status_code == 403
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="rq_signals metrics"'
    user = Client()
    user.force_login(User.objects.create_user("clerk", password="x", is_staff=False))
    assert user.get(URL).status_code == 403


def test_without_a_token_only_staff_read_the_page():
    assert Client().get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert re.search(r"rq_signals_queue_jobs\{queue=\"default\",state=\"waiting\"\} 0", _staff_page())


def _staff_page() -> str:
    staff = Client()
    staff.force_login(User.objects.create_user("ops2", password="x", is_staff=True))
    return staff.get(URL).content.decode()


def test_the_grafana_dashboard_charts_only_metrics_the_page_serves():
    dashboard = json.loads((REPO_ROOT / "docs" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [variable["definition"] for variable in dashboard["templating"]["list"]]

    named = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for e in expressions
        for name in re.findall(r"rq_signals_\w+", e)
    }
    assert named == set(METRIC_NAMES)
