"""`manage.py rqsignals failures` counts every attempt of a job whose stored history was capped."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from rq_signals import queues
from tests.receivers import invoice_flagged
from worker.retries.attempts import Attempt, append_attempt

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_failures_listing_counts_the_attempts_no_longer_stored(run_worker, connection):
    # Given a receiver call that failed after its attempts, and whose history then grew past the cap
    invoice_flagged.send(sender="desk", reason="fraud")
    run_worker()
    [job_id] = connection.zrange("rq:failed:default", 0, -1)
    job = queues.get_queue("default").fetch_job(job_id.decode())
    for number in range(3, 23):
        append_attempt(
            job.meta, Attempt(number, None, "2026-01-01T00:00:00+00:00", "w", "retrying")
        )  # no start
    job.save_meta()

    # When an operator lists the failures
    out = StringIO()
    call_command("rqsignals", "failures", stdout=out)

    # Then the listing counts all 22 attempts and says one of them is not kept
    assert f"{job.id}  default  tests.receivers.always_fails" in out.getvalue()
    assert "attempts: 22 (1 not kept)" in out.getvalue()
