"""docs/operations.md's recipes work as written: run on a real worker (in this process, so the stand-in
for ``sentry_sdk`` that collects events instead of sending them is the one they call)."""

from __future__ import annotations

import logging
import re
import sys
import types
from collections.abc import Iterator

import pytest
from django.db import transaction
from rq.job import JobStatus

from rq_signals import lifecycle, queues
from tests.receivers import invoice_flagged, invoice_paid
from tests.support.processes import REPO_ROOT
from tests.testapp.models import Invoice
from tests.worker.retry_support import run_until_settled
from worker import SimpleRetryWorker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DOC = (REPO_ROOT / "docs" / "operations.md").read_text()
RECIPE_UIDS = {
    lifecycle.receiver_exhausted: "shop.report_final_failure",
    lifecycle.receiver_started: "shop.watch_queue_wait",
    lifecycle.receiver_enqueued: "shop.watch_enqueue_latency",
}


class FakeSentry(types.ModuleType):
    """`sentry_sdk` as the recipe uses it, with a transport that keeps each event in `events`."""

    def __init__(self) -> None:
        super().__init__("sentry_sdk")
        self.events: list[dict] = []

    def capture_exception(self, error=None, scope=None, **scope_kwargs):
        self.events.append({"exception": error, **scope_kwargs})
        return f"event-{len(self.events)}"


@pytest.fixture
def recipe(monkeypatch) -> Iterator[tuple[dict, FakeSentry]]:
    """The Python blocks of docs/operations.md that define listeners, run as the shop's module would be."""
    sentry = FakeSentry()
    monkeypatch.setitem(sys.modules, "sentry_sdk", sentry)
    blocks = [block for block in re.findall(r"```python\n(.*?)```", DOC, re.S) if "@receiver" in block]
    assert len(blocks) == 2
    namespace: dict = {"__name__": "shop.observability"}
    exec(compile("\n".join(blocks), "docs/operations.md", "exec"), namespace)  # noqa: S102 - our own docs
    yield namespace, sentry
    for signal, uid in RECIPE_UIDS.items():
        signal.disconnect(dispatch_uid=uid)


def work_until_settled(job_id: str) -> JobStatus:
    queue = queues.get_queue("default")
    return run_until_settled([queue], queue.fetch_job(job_id), worker_class=SimpleRetryWorker, timeout=30)


def test_the_tracker_hears_one_event_per_call_that_failed_for_good_never_one_per_attempt(recipe):
    _, sentry = recipe
    failed_attempts = []
    lifecycle.receiver_failed.connect(
        lambda **kwargs: failed_attempts.append(kwargs["attempt"]), weak=False, dispatch_uid="test_ops_failed"
    )
    try:
        # Given a flagged invoice: always_fails (one retry) will fail twice, record_note will succeed
        with transaction.atomic():
            invoice_flagged.send(sender="review", reason="duplicate")
        [job_id] = [
            job.id
            for job in queues.get_queue("default").get_jobs()
            if job.args[0] == "tests.receivers.always_fails"
        ]

        # When a worker runs the calls and the retry
        assert work_until_settled(job_id) == JobStatus.FAILED
    finally:
        lifecycle.receiver_failed.disconnect(dispatch_uid="test_ops_failed")

    # Then two attempts failed, and the tracker got one event: the final failure, tagged and grouped
    assert failed_attempts == [1, 2]
    [event] = sentry.events
    assert type(event["exception"]).__name__ == "Flaky"
    assert event["tags"] == {"receiver": "tests.receivers.always_fails", "job_id": job_id, "attempts": 2}
    assert event["fingerprint"] == ["rq_signals", "tests.receivers.always_fails", "Flaky"]


def test_a_call_that_waited_past_the_threshold_is_logged_as_late(recipe, caplog):
    namespace, _ = recipe
    namespace["QUEUE_WAIT_ALERT_SECONDS"] = 0.0  # every call is "late"

    with caplog.at_level(logging.WARNING, logger="shop.latency"), transaction.atomic():
        invoice = Invoice.objects.create(reference="LATE-1")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=5)
    [job] = list(queues.get_queue("default").get_jobs())
    with caplog.at_level(logging.WARNING, logger="shop.latency"):
        assert work_until_settled(job.id) == JobStatus.FINISHED

    late = [record.getMessage() for record in caplog.records if record.name == "shop.latency"]
    assert any(
        re.fullmatch(
            rf"Receiver tests.receivers.record_payment: job {job.id} reached Redis \S+s after its commit",
            line,
        )
        for line in late
    )
    assert any(
        re.fullmatch(
            rf"Receiver tests.receivers.record_payment: job {job.id} started \S+s after it was enqueued", line
        )
        for line in late
    )
