"""The concrete worker classes: our mixins composed onto rq's, nothing more.

Usable as `rq worker -w worker.RetryWorker high default low`, or through
django-rq's `RQ = {"WORKER_CLASS": "worker.RetryWorker"}`. Each worker process
runs a promoter thread that starts due retries on time (`worker.promoter`);
`--with-scheduler` starts a scheduler for rq's own scheduled jobs that leaves
those retries alone. `LeanRoundTripsMixin` sends rq's per-job bookkeeping in
fewer round trips (`worker.lean`); `MaintenanceMixin` runs the chores registered in `worker.hooks`
(the Django app's outbox relay, for one).
"""

from __future__ import annotations

from rq.worker import SimpleWorker, Worker

from worker.hooks import MaintenanceMixin
from worker.intermediate import IntermediateCleanupMixin
from worker.lean import LeanRoundTripsMixin
from worker.recovery import RecoveryMixin
from worker.retry import RetryMixin
from worker.shutdown import ShutdownMixin


class RetryWorker(
    MaintenanceMixin,
    RecoveryMixin,
    IntermediateCleanupMixin,
    ShutdownMixin,
    RetryMixin,
    LeanRoundTripsMixin,
    Worker,
):
    """rq's forking worker (a fresh work horse per job) with our retry policy and crash recovery."""


class SimpleRetryWorker(
    MaintenanceMixin,
    RecoveryMixin,
    IntermediateCleanupMixin,
    ShutdownMixin,
    RetryMixin,
    LeanRoundTripsMixin,
    SimpleWorker,
):
    """rq's SimpleWorker (jobs run in the worker process) with our retry policy and crash recovery."""
