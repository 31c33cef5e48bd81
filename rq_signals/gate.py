"""What this process's workers accept, from ``RQ_SIGNALS``: the job gate, the size limits, the serializer.

``AppConfig.ready()`` installs `job_gate` and `job_limits` for every worker built in this process;
`rq_signals.queues` builds our queues with `job_serializer`, so jobs are written and read as JSON
(JSON and pickle under ``RQ_SIGNALS["ACCEPT_PICKLE"]``), never with rq's default pickle.
"""

from __future__ import annotations

from rq.serializers import Serializer

from rq_signals import defaults
from rq_signals.conf import conf
from worker.gate.gate import JobGate
from worker.gate.limits import JobLimits
from worker.serializers import JSONOrPickleSerializer, JSONSerializer


def job_gate() -> JobGate:
    """What the workers of this process run: `rq_signals.jobs.run_receiver` and
    ``RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]``, pickled jobs only under ``RQ_SIGNALS["ACCEPT_PICKLE"]``,
    webhooks only to ``RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"]``.

    Installed for every worker by ``AppConfig.ready()`` (`worker.gate.gate.install_job_gate`).
    """
    return JobGate(
        (defaults.JOB_FUNCTION, *conf.allowed_job_functions),
        accept_pickle=conf.accept_pickle is True,
        functions_setting='RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]',
        pickle_setting='RQ_SIGNALS["ACCEPT_PICKLE"] = True',
        allowed_webhook_urls=conf.allowed_webhook_urls,
        webhooks_setting='RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"]',
    )


def job_limits() -> JobLimits:
    """How large a job's data and meta may be where this process loads one (workers, dashboard):
    ``RQ_SIGNALS["MAX_JOB_DATA_BYTES"]`` and ``["MAX_JOB_META_BYTES"]``.

    Installed for every worker by ``AppConfig.ready()`` (`worker.gate.limits.install_job_limits`).
    """
    return JobLimits(
        max_data_bytes=conf.max_job_data_bytes,
        max_meta_bytes=conf.max_job_meta_bytes,
        data_setting='RQ_SIGNALS["MAX_JOB_DATA_BYTES"]',
        meta_setting='RQ_SIGNALS["MAX_JOB_META_BYTES"]',
    )


def job_serializer() -> Serializer:
    """The serializer of `job_gate` (without validating ``ALLOWED_JOB_FUNCTIONS``): our queues'."""
    return JSONOrPickleSerializer if conf.accept_pickle is True else JSONSerializer
