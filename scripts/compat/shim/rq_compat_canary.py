"""A deliberately wrong worker, to prove the compat run catches a behaviour change (`--variant canary`).

It ignores rq's own `Retry`: a failing job with retries left goes straight to the failed registry,
the kind of slip a failure-hook override can make. rq's test_retry must report it.
"""

from __future__ import annotations

from typing import Any

from rq.worker import Worker


class CanaryWorker(Worker):
    def handle_job_failure(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> None:
        job.retries_left = None
        super().handle_job_failure(job, queue, *args, **kwargs)
