"""A worker that counts metrics (`worker.metrics`), for the throughput benchmark's metrics on vs off."""

from __future__ import annotations

from worker import SimpleRetryWorker
from worker.metrics import JobMetrics


class MeteredSimpleRetryWorker(SimpleRetryWorker):
    """`SimpleRetryWorker` counting every job's outcome, run time and queue wait in Redis."""

    job_metrics = JobMetrics()
