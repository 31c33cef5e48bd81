"""Default values of the ``RQ_SIGNALS`` setting and other constants, units in their names."""

from __future__ import annotations

from typing import Final, Literal

from worker.backoff import Backoff

MissingPolicy = Literal["skip", "snapshot", "fail"]

#: ``RQ_SIGNALS["DEFAULT_QUEUE"]``: the RQ_QUEUES entry of receivers declared with ``queue=None``.
DEFAULT_QUEUE: Final = "default"
#: ``RQ_SIGNALS["DEFAULT_RETRY"]``: the policy of receivers declared with ``retry=None``.
DEFAULT_RETRY: Final = Backoff(max_retries=5, base=1.0, factor=2.0, max_delay=600.0, jitter="full")
#: ``RQ_SIGNALS["EAGER"]``: run receivers inline (after commit) instead of enqueueing them.
DEFAULT_EAGER: Final = False
#: ``RQ_SIGNALS["MISSING_INSTANCE"]``: what a job does when an instance it refers to is gone.
DEFAULT_MISSING_INSTANCE: Final[MissingPolicy] = "skip"

MISSING_INSTANCE_POLICIES: Final[tuple[MissingPolicy, ...]] = ("skip", "snapshot", "fail")

#: The module `AppConfig.ready()` imports from every installed app, so workers know every receiver.
RECEIVERS_MODULE: Final = "receivers"
#: The job function every async receiver's job names.
JOB_FUNCTION: Final = "rq_signals.jobs.run_receiver"
#: Longest job description shown in the django-rq admin, in characters.
DESCRIPTION_CHARS: Final = 200
