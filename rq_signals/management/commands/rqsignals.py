"""``manage.py rqsignals list|failures|requeue|purge|relay|health``: parse options, call, print."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rq_signals import defaults, failures, relay
from rq_signals.health import cli as health_cli
from rq_signals.listing import receiver_rows
from rq_signals.registration import resolve_receiver_id
from worker.exceptions import NoSuchFailedJob


class Command(BaseCommand):
    help = (
        "Inspect async receivers and their failed jobs (list, failures, requeue, purge), push the outbox "
        "to Redis (relay), and probe this host's workers (health)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = self._adder(actions)
        add("list", "Each async receiver: signal, sender, queue and retry policy.")

        listing = add("failures", "Failed receiver calls, newest first.")
        listing.add_argument("--queue", help="Only this RQ_QUEUES queue.")
        listing.add_argument("--receiver", help=_RECEIVER_HELP)

        requeue = add("requeue", "Requeue failed calls with a fresh retry budget (their history is kept).")
        which = requeue.add_mutually_exclusive_group(required=True)
        which.add_argument("job_id", nargs="?", metavar="JOB_ID", help="The failed job to requeue.")
        which.add_argument("--all", action="store_true", help="Every failed call (narrow with the options).")
        requeue.add_argument("--queue", help="With --all: only this queue.")
        requeue.add_argument("--receiver", help=f"With --all. {_RECEIVER_HELP}")

        purge = add("purge", "Delete failed jobs (of any function) from the failed registries of RQ_QUEUES.")
        purge.add_argument(
            "--older-than", metavar="AGE", help="Only jobs that failed longer ago: 45s, 30m, 12h, 7d, 2w."
        )
        purge.add_argument("--queue", help="Only this queue.")
        purge.add_argument(
            "--yes", action="store_true", help="Without --queue or --older-than: purge without asking."
        )

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
        self._add_health(add)

    @staticmethod
    def _add_health(add: Any) -> None:
        health_cli.add_arguments(add("health", health_cli.DESCRIPTION))  # python -m rq_signals.health's too

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
            elif action == "health":
                self._health(options)
            else:
                self._purge(options)
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
        calls = failures.failed_calls(queue, _receiver(receiver), on_skip=self._warn)
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
            count = failures.requeue_all(options["queue"], _receiver(options["receiver"]), on_skip=self._warn)
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

    def _purge(self, options: dict[str, Any]) -> None:
        older_than = failures.parse_age(options["older_than"]) if options["older_than"] else None
        if older_than is None and options["queue"] is None and not options["yes"]:
            self._confirm_purge_everything()
        purged = failures.purge(older_than, options["queue"], on_skip=self._warn)
        self.stdout.write(f"Purged {purged} failed job(s).")

    def _confirm_purge_everything(self) -> None:
        """No filter deletes every failed job of every function in every queue: ask first, or refuse."""
        counts = failures.failed_counts()
        where = ", ".join(f"{name}: {count}" for name, count in counts.items())
        what = f"{sum(counts.values())} failed job(s) of every function ({where})"
        if not sys.stdin.isatty():
            raise CommandError(
                f"purge without --queue or --older-than deletes {what}; no terminal to confirm on, so "
                "nothing was deleted. Add --yes to purge them all, or narrow with --queue/--older-than."
            )
        self.stdout.write(f"Delete {what}? [y/N] ", ending="")
        self.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise CommandError("Nothing was deleted.")

    def _health(self, options: dict[str, Any]) -> None:
        try:
            line = health_cli.answer(options)
        except health_cli.ProbeFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(line)


_RECEIVER_HELP = "Only this receiver: its dotted path, or a short name matching one receiver (send_receipt)."


def _receiver(name: str | None) -> str | None:
    return resolve_receiver_id(name) if name is not None else None
