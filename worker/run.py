"""`Run`: what this process knows about the job it is running, in one object.

rq calls its hooks one after the other for a job (`prepare_execution`, `handle_exception`,
`handle_job_failure`, `cleanup_execution`, ...), some in the worker and some in its work horse.
What one hook learns that a later one needs (the exception the job raised, how its horse died,
whether its start already sent rq's preparation) is written here, never in loose worker attributes.
The worker core starts a `Run` in `execute_job`; a forked horse inherits it; the prefork horse
makes one per order. A hook called outside the work loop (rq's own tests call `perform_job` by hand)
gets a fresh `Run` for its job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rq.executions import Execution

    from worker.metrics import Outcome


@dataclass
class Run:
    """One job's run in this process (worker or horse). Only the hooks of that job read or write it."""

    job_id: str
    #: Inside the work loop's `execute_job`: a job run by the loop, not a hook called by hand.
    executing: bool = False
    #: The execution the start transaction queued (to restore its lease if Redis lost the script).
    starting: Execution | None = None
    #: The start transaction also sent what rq's `prepare_job_execution` sends (a round-trip shortcut).
    prepared: bool = False
    #: rq's job heartbeat at the end goes in the outcome pipeline (a round-trip shortcut).
    ending_heartbeat_owed: bool = False
    #: The exception the job raised, from `handle_exception`, for the retry policy.
    exception: BaseException | None = None
    #: How the work horse died mid-job, from `handle_work_horse_killed`.
    horse_crash: str | None = None
    #: Another worker claimed this run's lease: its outcome is not this worker's to save.
    lease_lost: bool = False
    #: `job.meta` to save in rq's outcome pipeline (the attempts history), serialized.
    meta_to_save: bytes | None = None
    #: What the pipeline saving this run's outcome counts it as (`worker.metrics`), once decided.
    outcome: Outcome | None = None
