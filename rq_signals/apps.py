"""The app config: registers the system checks and imports every installed app's ``receivers`` module."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

from rq_signals.defaults import RECEIVERS_MODULE


class RqSignalsConfig(AppConfig):
    name = "rq_signals"
    verbose_name = "RQ signals"

    def ready(self) -> None:
        from rq_signals import checks  # noqa: F401  (registers the checks)

        # Workers run only registered receivers: import them all, as the web process does. Receivers
        # outside a `receivers` module must be imported from their app's AppConfig.ready().
        autodiscover_modules(RECEIVERS_MODULE)

        from rq_signals.relay import register_relay

        register_relay()  # every retry worker in this process drains the outbox (worker.hooks)
