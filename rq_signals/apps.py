"""The app config: registers the checks, imports every app's ``receivers``, installs the workers' gate
and connects the workers' moments to the lifecycle signals."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

from rq_signals import checks  # noqa: F401  (registers the checks)
from rq_signals.dashboard_limits import bound_dashboard_jobs
from rq_signals.defaults import RECEIVERS_MODULE
from rq_signals.gate import job_gate, job_limits
from rq_signals.metrics import job_metrics
from rq_signals.registration import require_configured_queues
from rq_signals.worker_signals import connect_worker_events
from worker.gate.gate import install_job_gate
from worker.gate.limits import install_job_limits
from worker.metrics import install_job_metrics


class RqSignalsConfig(AppConfig):
    name = "rq_signals"
    verbose_name = "RQ signals"

    def ready(self) -> None:
        # Workers run only registered receivers: import them all, as the web process does. Receivers
        # outside a `receivers` module must be imported from their app's AppConfig.ready().
        autodiscover_modules(RECEIVERS_MODULE)

        # A receiver's queue missing from RQ_QUEUES stops every process at start-up (gunicorn and
        # `shell` run no checks), never after a commit with a bare KeyError (rq_signals.E001 too).
        require_configured_queues()

        from rq_signals.relay import register_relay  # imports models: not before Django's app loading

        register_relay()  # every retry worker in this process drains the outbox (worker.maintenance.chores)

        # Every retry worker built in this process runs only run_receiver (and ALLOWED_JOB_FUNCTIONS),
        # loading jobs as JSON (pickle only under ACCEPT_PICKLE); the settings are read per worker.
        install_job_gate(job_gate)
        # ... and loads no job data or meta past RQ_SIGNALS["MAX_JOB_DATA_BYTES"] / ["MAX_JOB_META_BYTES"].
        install_job_limits(job_limits)

        bound_dashboard_jobs()  # django-rq's pages load jobs within those limits too

        # The worker's moments (start, retry, final failure, recovery) as lifecycle signals.
        connect_worker_events()
        # Each worker counts its receivers' attempts in Redis under RQ_SIGNALS["METRICS"] (read per worker).
        install_job_metrics(job_metrics)
