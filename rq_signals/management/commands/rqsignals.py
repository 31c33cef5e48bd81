"""``manage.py rqsignals list|failures|requeue|purge|relay``: parse options, call `listing` etc., print."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rq_signals import defaults, failures, relay
from rq_signals.listing import receiver_rows
from worker.exceptions import NoSuchFailedJob


class Command(BaseCommand):
    help = "Inspect async receivers and their failed jobs: list, failures, requeue, purge."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = self._adder(actions)
        add("list", "Each async receiver: signal, sender, queue and retry policy.")

        listing = add("failures", "Failed receiver calls, newest first.")
        listing.add_argument("--queue", help="Only this RQ_QUEUES queue.")
        listing.add_argument("--receiver", help="Only this receiver (dotted path).")

        requeue = add("requeue", "Requeue failed calls with a fresh retry budget (their history is kept).")
        which = requeue.add_mutually_exclusive_group(required=True)
        which.add_argument("job_id", nargs="?", metavar="JOB_ID", help="The failed job to requeue.")
        which.add_argument("--all", action="store_true", help="Every failed call (narrow with the options).")
        requeue.add_argument("--queue", help="With --all: only this queue.")
        requeue.add_argument("--receiver", help="With --all: only this receiver (dotted path).")

        purge = add("purge", "Delete failed jobs (of any function) from the failed registries of RQ_QUEUES.")
        purge.add_argument(
            "--older-than", metavar="AGE", help="Only jobs that failed longer ago: 45s, 30m, 12h, 7d, 2w."
        )
        purge.add_argument("--queue", help="Only this queue.")

        relaying = add(
            "relay", "Enqueue the jobs waiting in the outbox (Redis was down at commit), each once."
        )
        relaying.add_argument("--once", action="store_true", help="One pass; fails if jobs are left waiting.")
        relaying.add_argument(
            "--interval",
            type=float,
            default=defaults.OUTBOX_RELAY_INTERVAL_SECONDS,
            metavar="SECONDS",
            help="Seconds between passes (without --once).",
        )

    @staticmethod
    def _adder(actions: Any) -> Any:
        def add(name: str, text: str) -> CommandParser:
            parser: CommandParser = actions.add_parser(name, help=text, description=text)
            return parser

        return add

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "list":
                self._list()
            elif action == "failures":
                self._failures(options["queue"], options["receiver"])
            elif action == "requeue":
                self._requeue(options)
            elif action == "relay":
                self._relay(options["once"], options["interval"])
            else:
                older_than = failures.parse_age(options["older_than"]) if options["older_than"] else None
                purged = failures.purge(older_than, options["queue"], on_skip=self._warn)
                self.stdout.write(f"Purged {purged} failed job(s).")
        except (KeyError, ValueError, NoSuchFailedJob) as exc:
            raise CommandError(str(exc.args[0]) if exc.args else str(exc)) from exc

    def _warn(self, line: str) -> None:
        """A failed-registry entry skipped, named on stderr; the command goes on with the rest."""
        self.stderr.write(f"Warning: {line}", style_func=self.style.WARNING)

    def _list(self) -> None:
        for row in receiver_rows():
            commit = "after commit" if row.on_commit else "at once"
            self.stdout.write(
                f"{row.receiver_id}\n  signal: {row.signals}  sender: {row.sender}  queue: {row.queue}  "
                f"enqueued: {commit}\n  retry: {row.retry}"
            )

    def _failures(self, queue: str | None, receiver: str | None) -> None:
        calls = failures.failed_calls(queue, receiver, on_skip=self._warn)
        for call in calls:
            failure = call.failure
            error = failure.last_error
            reason = "no error recorded"
            if error is not None:
                reason = f"{error.exc_type or 'failed'}: {(error.message.splitlines() or [''])[0]}"
            failed_at = failure.failed_at.isoformat(timespec="seconds")
            dropped = f" ({failure.attempts_dropped} not kept)" if failure.attempts_dropped else ""
            self.stdout.write(
                f"{failure.job_id}  {call.queue}  {call.receiver_id}  failed {failed_at}  "
                f"attempts: {failure.attempt_count}{dropped}\n  {call.description or ''}\n  {reason}"
            )
        self.stdout.write(f"{len(calls)} failed call(s).")

    def _requeue(self, options: dict[str, Any]) -> None:
        if options["all"]:
            count = failures.requeue_all(options["queue"], options["receiver"], on_skip=self._warn)
            self.stdout.write(f"Requeued {count} failed call(s).")
        elif options["queue"] or options["receiver"]:
            raise CommandError("--queue and --receiver go with --all; a JOB_ID names one job already.")
        else:
            queue = failures.requeue(options["job_id"])
            self.stdout.write(f"Requeued job {options['job_id']} on queue {queue!r}.")

    def _relay(self, once: bool, interval_seconds: float) -> None:
        if interval_seconds <= 0:
            raise CommandError(f"--interval must be a number of seconds > 0, got {interval_seconds!r}.")
        if not once:
            relay.relay_forever(
                interval_seconds=interval_seconds, on_pass=lambda report: self.stdout.write(str(report))
            )
            return
        report = relay.relay_once()
        if not report.ok:
            raise CommandError(str(report))
        self.stdout.write(str(report))
