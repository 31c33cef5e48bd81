"""`manage.py rqsignals` where it used to be sharp: purge asks first, short receiver names, --help."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rq.job import Job, JobStatus

from rq_signals import async_receiver, gate, queues
from rq_signals.jobs import run_receiver
from tests.receivers import invoice_noted
from tests.support.processes import REPO_ROOT, python_env

pytestmark = pytest.mark.django_db(transaction=True)


def rqsignals(*args: str) -> str:
    out = io.StringIO()
    call_command("rqsignals", *args, stdout=out)
    return out.getvalue()


def fail_job(queue_name: str, receiver_id: str) -> str:
    """A receiver call in `queue_name`'s failed registry, as a worker leaves one."""
    queue = queues.get_queue(queue_name)
    job = queue.enqueue(run_receiver, receiver_id, "tests.receivers.invoice_noted", {})
    queue.remove(job)
    job.set_status(JobStatus.FAILED)
    queue.failed_job_registry.add(job, exc_string="Traceback...\nRuntimeError: boom")
    return job.id


class Terminal(io.StringIO):
    """A stdin that is a terminal, with the answer already typed."""

    def isatty(self) -> bool:
        return True


def test_purge_without_a_filter_refuses_without_a_terminal_and_deletes_nothing(connection):
    fail_job("default", "tests.receivers.record_note")
    fail_job("low", "tests.receivers.record_note")

    with pytest.raises(CommandError) as refused:
        rqsignals("purge")

    assert str(refused.value) == (
        "purge without --queue or --older-than deletes 2 failed job(s) of every function "
        "(default: 1, high: 0, low: 1); no terminal to confirm on, so nothing was deleted. "
        "Add --yes to purge them all, or narrow with --queue/--older-than."
    )
    assert connection.zcard("rq:failed:default") == connection.zcard("rq:failed:low") == 1


def test_purge_without_a_filter_asks_on_a_terminal(connection, monkeypatch):
    fail_job("default", "tests.receivers.record_note")

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    with pytest.raises(CommandError, match="Nothing was deleted."):
        rqsignals("purge")
    assert connection.zcard("rq:failed:default") == 1

    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert rqsignals("purge") == (
        "Delete 1 failed job(s) of every function (default: 1, high: 0, low: 0)? [y/N] "
        "Purged 1 failed job(s).\n"
    )
    assert connection.zcard("rq:failed:default") == 0


def test_purge_with_yes_or_a_filter_does_not_ask(connection):
    fail_job("default", "tests.receivers.record_note")
    fail_job("low", "tests.receivers.record_note")

    assert rqsignals("purge", "--queue", "low") == "Purged 1 failed job(s).\n"
    assert rqsignals("purge", "--yes") == "Purged 1 failed job(s).\n"


def test_a_short_receiver_name_finds_the_receiver_it_names(connection):
    job_id = fail_job("default", "tests.receivers.record_note")

    assert f"{job_id}  default  tests.receivers.record_note" in rqsignals(
        "failures", "--receiver", "record_note"
    )
    assert (
        rqsignals("requeue", "--all", "--receiver", "receivers.record_note") == "Requeued 1 failed call(s).\n"
    )
    assert Job.fetch(job_id, connection=connection, serializer=gate.job_serializer()).get_status() == "queued"


def record_note(sender, **kwargs):
    pass


@pytest.mark.usefixtures("forget_registrations")
def test_an_ambiguous_short_name_is_an_error_listing_the_candidates():
    async_receiver(invoice_noted, queue="low")(record_note)  # a second receiver named record_note

    with pytest.raises(CommandError) as ambiguous:
        rqsignals("failures", "--receiver", "record_note")

    assert str(ambiguous.value) == (
        "receiver 'record_note' is ambiguous; it could be: tests.app.test_commands.record_note, "
        "tests.receivers.record_note"
    )
    assert rqsignals("failures", "--receiver", "test_commands.record_note") == "0 failed call(s).\n"


def test_a_short_name_matching_no_receiver_is_an_error_not_an_empty_listing():
    with pytest.raises(CommandError, match=r"no registered receiver is named 'record_notes'; registered: "):
        rqsignals("failures", "--receiver", "record_notes")
    # a full dotted path is taken as given: the failures of a receiver since removed
    assert rqsignals("failures", "--receiver", "shop.receivers.removed") == "0 failed call(s).\n"


def test_help_lists_every_subcommand():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqsignals", "--help"],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    for action in ("list", "failures", "requeue", "purge", "relay", "health"):
        assert f"\n    {action} " in result.stdout, result.stdout
    assert "(list, failures, requeue, purge), push the outbox" in " ".join(result.stdout.split())
