"""Per-job counters and histograms kept in Redis, written in the pipeline that saves each outcome.

Counted in Redis rather than in each process (as prometheus-client's multiprocess mode does, in
files of one host): every worker process on every host adds to the same hash, and whichever
process serves the numbers reads them with one ``HGETALL`` a queue. The increments ride in the
transaction that saves the attempt's outcome (rq's success or failure pipeline, the retry's, a
crash recovery's claim), so counting adds commands to it but no round trip, and an outcome is
counted exactly when it is saved.

Per queue, one hash (`worker.keys.metrics`), fields ``<label>\\x1f<name>``; `label` is the job's
function (`JobMetrics.label`, which a framework replaces: `rq_signals` counts by receiver):

- ``attempts\\x1f<outcome>``: attempts by outcome (`Outcome`); a job run twice counts two attempts;
- ``crashes``: attempts whose worker or horse died (counted under ``retrying`` or ``exhausted`` too);
- ``run\\x1f<le>`` and ``run_sum``: run seconds (rq's ``started_at`` to ``ended_at``) in `BUCKETS`;
- ``wait\\x1f<le>`` and ``wait_sum``: seconds from ``enqueued_at`` (a retry: when it was due) to
  ``started_at``, in `BUCKETS`. Both times come from clocks of different hosts: skewed clocks skew it.

Up to five commands an attempt (`queue_outcome`): an attempt that never started (crash recovery of
a job that had no ``started_at``) counts only its outcome.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, Literal

from worker import keys

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.job import Job

Outcome = Literal["succeeded", "skipped", "retrying", "exhausted", "stopped"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("succeeded", "skipped", "retrying", "exhausted", "stopped")

#: Upper bounds of the histograms' buckets, float seconds (Prometheus' defaults, up to five minutes).
BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
INF: Final = "+Inf"
SEP: Final = "\x1f"


def function_label(job: Job) -> str:
    """The default label: the job's function (rq's ``func_name``)."""
    return str(job.func_name)


def no_change(job: Job, outcome: Outcome) -> Outcome:
    return outcome


@dataclass(frozen=True)
class JobMetrics:
    """What a worker counts: `label(job)` names a job's series (None: not counted); `outcome(job, o)`
    may refine the outcome a success is counted under (e.g. ``"skipped"``)."""

    label: Callable[[Job], str | None] = function_label
    outcome: Callable[[Job, Outcome], Outcome] = no_change

    def queue_outcome(
        self, pipeline: Pipeline[Any], job: Job, outcome: Outcome, *, crashed: bool = False
    ) -> None:
        """Queue on `pipeline` (the one saving this attempt's outcome) the increments of this attempt."""
        label = self.label(job)
        if label is None:
            return
        key = keys.metrics(job.origin)
        if outcome == "succeeded":
            outcome = self.outcome(job, outcome)
        pipeline.hincrby(key, f"{label}{SEP}attempts{SEP}{outcome}", 1)
        if crashed:
            pipeline.hincrby(key, f"{label}{SEP}crashes", 1)
        started, ended, enqueued = _utc(job.started_at), _utc(job.ended_at), _utc(job.enqueued_at)
        if started is not None and ended is not None and not crashed:
            _observe(pipeline, key, f"{label}{SEP}run", (ended - started).total_seconds())
        if started is not None and enqueued is not None:
            _observe(pipeline, key, f"{label}{SEP}wait", (started - enqueued).total_seconds())

    def add_to_outcome(self, job: Job, pipeline: Pipeline[Any], outcome: Outcome | None) -> None:
        """The core's part, from `cleanup_execution`: the outcome its hooks noted in the job's run
        (`Run.outcome`; None: nothing to count). rq may build its pipeline again (a ``WatchError``):
        only the transaction that runs counts."""
        if outcome is not None:
            self.queue_outcome(pipeline, job, outcome)


def bucket_of(seconds: float) -> str:
    """The name of the smallest bucket holding `seconds` (``"0.005"`` ... ``"300.0"``, ``"+Inf"``)."""
    index = bisect_left(BUCKETS, seconds)
    return repr(BUCKETS[index]) if index < len(BUCKETS) else INF


def _observe(pipeline: Pipeline[Any], key: str, series: str, seconds: float) -> None:
    seconds = max(0.0, seconds)
    pipeline.hincrby(key, f"{series}{SEP}{bucket_of(seconds)}", 1)
    pipeline.hincrbyfloat(key, f"{series}_sum", seconds)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


# -- which metrics the workers of this process count --------------------------------------------------

MetricsSource = JobMetrics | Callable[[], JobMetrics | None] | None
_lock = threading.Lock()
_installed: MetricsSource = None


def install_job_metrics(metrics: MetricsSource) -> MetricsSource:
    """The metrics of every worker built later in this process without a ``job_metrics`` argument.

    A callable is asked each time a worker is built (so a framework can read its settings then);
    None uninstalls: workers count nothing. Returns what was installed before.
    """
    global _installed
    with _lock:
        previous, _installed = _installed, metrics
    return previous


def installed_job_metrics() -> JobMetrics | None:
    """The metrics `install_job_metrics` installed (a callable's answer now), or None."""
    with _lock:
        installed = _installed
    if installed is None or isinstance(installed, JobMetrics):
        return installed
    return installed()
