"""Declaring an async receiver: what a worker can run is accepted, anything else refused at once, by name."""

from __future__ import annotations

import functools
import inspect

import pytest
from django.db.models.signals import post_save, pre_delete
from django.dispatch import Signal

from rq_signals import Backoff, async_receiver, registration
from rq_signals.exceptions import ReceiverDeclarationError, UnknownReceiver
from tests import receivers
from tests.receivers import invoice_paid, record_invoice, record_payment
from tests.testapp.models import Invoice

module_signal = Signal()


def plain_receiver(sender, **kwargs):
    return ("called directly", sender)


def test_the_decorator_returns_the_function_unchanged_and_still_callable():
    assert record_invoice.__name__ == "record_invoice"
    assert receivers.record_invoice is record_invoice
    assert inspect.iscoroutinefunction(record_payment)  # an async def stays one
    assert registration.lookup("tests.receivers.record_payment").is_coroutine


@pytest.mark.usefixtures("forget_registrations")
def test_a_receiver_is_registered_by_dotted_path_with_its_options():
    policy = Backoff(max_retries=2, base=0.5)

    returned = async_receiver(
        [module_signal, post_save], sender=Invoice, queue="low", retry=policy, timeout=9
    )(plain_receiver)

    assert returned is plain_receiver
    assert returned("invoices") == ("called directly", "invoices")
    declared = registration.lookup("tests.app.test_registration.plain_receiver")
    assert [ref.path for ref in declared.signals] == [
        "tests.app.test_registration.module_signal",
        "django.db.models.signals.post_save",
    ]
    assert (declared.queue, declared.retry, declared.timeout, declared.on_commit) == ("low", policy, 9, True)
    assert declared.dispatch_uid == "rq_signals:tests.app.test_registration.plain_receiver"


@pytest.mark.usefixtures("forget_registrations")
def test_declaring_the_same_receiver_twice_connects_it_once():
    for _ in range(2):  # as a module imported twice would
        async_receiver(module_signal)(plain_receiver)

    assert len(module_signal.receivers) == 1


@pytest.mark.usefixtures("forget_registrations")
def test_a_lazy_model_label_is_a_sender_for_model_signals_only():
    async_receiver(pre_delete, sender="testapp.Invoice")(plain_receiver)
    assert pre_delete.has_listeners(Invoice)

    with pytest.raises(ReceiverDeclarationError, match="sender must be"):
        async_receiver(module_signal, sender="testapp.Invoice")


def nested_factory():
    def nested(sender, **kwargs):
        pass

    return nested


class Handlers:
    def method(self, sender, **kwargs):
        pass

    @staticmethod
    def static(sender, **kwargs):
        pass


@pytest.mark.parametrize(
    ("receiver", "named"),
    [
        (lambda sender, **kwargs: None, r"tests\.app\.test_registration\.<lambda> is a lambda"),
        (nested_factory(), r"nested_factory\.<locals>\.nested is a nested function"),
        (Handlers().method, r"Handlers\.method is a method"),
        (Handlers.static, r"Handlers\.static is a method"),
        (functools.partial(plain_receiver, "x"), r"functools\.partial\(.*\) is not a function"),
    ],
)
def test_what_a_worker_cannot_import_by_path_is_refused_naming_it(receiver, named):
    with pytest.raises(ReceiverDeclarationError, match=named + r".*decorate a module-level function"):
        async_receiver(module_signal)(receiver)


def test_a_signal_that_is_not_a_module_attribute_is_refused():
    local_signal = Signal()

    with pytest.raises(ReceiverDeclarationError, match="is not a module-level attribute"):
        async_receiver(local_signal)(plain_receiver)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"retry": 3}, "retry"),
        ({"queue": ""}, "queue"),
        ({"timeout": 0}, "timeout"),
        ({"on_commit": "yes"}, "on_commit"),
    ],
)
def test_bad_options_are_refused_at_decoration_naming_the_argument(options, argument):
    with pytest.raises(ReceiverDeclarationError, match=f"@async_receiver: {argument} must be"):
        async_receiver(invoice_paid, **options)


def test_only_registered_receivers_can_be_looked_up():
    with pytest.raises(UnknownReceiver, match=r"'os\.system' is not registered in this process"):
        registration.lookup("os.system")
    with pytest.raises(UnknownReceiver, match="not connected to signal 'django.db.models.signals.post_save'"):
        registration.lookup("tests.receivers.record_payment").signal_ref("django.db.models.signals.post_save")


@pytest.mark.usefixtures("forget_registrations")
def test_a_signal_reached_through_an_imported_module_is_named_by_that_module():
    async_receiver(receivers.invoice_noted)(plain_receiver)  # this module imports `receivers`, not the signal

    declared = registration.lookup("tests.app.test_registration.plain_receiver")
    assert [ref.path for ref in declared.signals] == ["tests.receivers.invoice_noted"]
