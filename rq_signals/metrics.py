"""Per-receiver metrics in Prometheus' text format: what the workers counted in Redis, and queue sizes.

With ``RQ_SIGNALS["METRICS"] = True`` every worker built in a Django process counts, per receiver and
queue, its attempts by outcome, crashes, run time and queue wait (`worker.metrics`: in Redis, in
the transaction that saves each outcome, so the numbers are those of every worker on every host).
`metrics_view` serves them, with each queue's waiting and retrying jobs read at the scrape, to staff
users and to a request bearing ``RQ_SIGNALS["METRICS_TOKEN"]``. Reading them costs one pipeline per
Redis server: an ``HGETALL`` per queue, ``LLEN`` and ``ZCARD`` for the sizes.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from rq.job import Job

from rq_signals import defaults, queues
from rq_signals.conf import conf
from worker import keys
from worker.metrics import BUCKETS, INF, SEP, JobMetrics, Outcome
from worker.rq_compat.private import return_value_in_memory

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "rq_signals_receiver"

_HELP = {
    "attempts_total": ("counter", "Attempts at receiver calls, by outcome."),
    "crashes_total": ("counter", "Attempts whose worker or work horse died (also counted by outcome)."),
    "run_seconds": ("histogram", "Seconds a receiver call ran, per attempt that ended."),
    "wait_seconds": ("histogram", "Seconds from enqueue (or a retry's due time) to a worker starting it."),
}
QUEUE_JOBS = "rq_signals_queue_jobs"
#: Every metric the page may serve (docs/grafana-dashboard.json uses only these).
METRIC_NAMES = (*(f"{PREFIX}_{name}" for name in _HELP), QUEUE_JOBS)


def receiver_label(job: Job) -> str | None:
    """A job's series: its receiver's dotted path for a receiver call, else its function."""
    if job.func_name == defaults.JOB_FUNCTION:
        args = job.args
        return str(args[0]) if args else None
    return str(job.func_name)


def refine_outcome(job: Job, outcome: Outcome) -> Outcome:
    """A receiver call that returned ``"skipped"`` (its instance was gone) counts as skipped."""
    if job.func_name == defaults.JOB_FUNCTION and return_value_in_memory(job) == "skipped":
        return "skipped"
    return outcome


def job_metrics() -> JobMetrics | None:
    """What a worker built now counts (installed by ``AppConfig.ready()``); None when METRICS is off."""
    if not conf.metrics:
        return None
    return JobMetrics(label=receiver_label, outcome=refine_outcome)


def render() -> str:
    """Every queue's counters and sizes, in Prometheus' text exposition format (version 0.0.4)."""
    counted: dict[str, dict[str, float]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    by_connection: dict[str, list[str]] = defaultdict(list)
    for name in sorted(conf.queues):
        by_connection[queues.connection_key(name)].append(name)
    for names in by_connection.values():
        connection = queues.get_queue(names[0]).connection
        with connection.pipeline(transaction=False) as pipe:
            for name in names:
                queue = queues.get_queue(name)
                pipe.hgetall(keys.metrics(name))
                pipe.llen(queue.key)
                pipe.zcard(queue.scheduled_job_registry.key)
            answers = pipe.execute()
        for index, name in enumerate(names):
            fields, waiting, retrying = answers[3 * index : 3 * index + 3]
            counted[name] = {_text(field): float(value) for field, value in fields.items()}
            sizes[name] = (int(waiting), int(retrying))
    return "".join(_lines(counted, sizes))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics page: for staff users, or a request with ``Authorization: Bearer <METRICS_TOKEN>``."""
    if not _allowed(request):
        response = HttpResponse(
            "Staff login or the metrics token required.\n", status=403, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="rq_signals metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE)


def _allowed(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = conf.metrics_token
    given = request.headers.get("Authorization", "")
    if not token or not given.startswith("Bearer "):
        return False
    return hmac.compare_digest(given.removeprefix("Bearer ").encode(), token.encode())


def _lines(counted: dict[str, dict[str, float]], sizes: dict[str, tuple[int, int]]) -> Iterable[str]:
    series: dict[str, list[str]] = defaultdict(list)
    for queue, fields in counted.items():
        histograms: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for field, value in sorted(fields.items()):
            label, _, rest = field.partition(SEP)
            labels = f'receiver="{_escape(label)}",queue="{_escape(queue)}"'
            kind, _, detail = rest.partition(SEP)
            if kind == "attempts":
                series["attempts_total"].append(
                    f'{PREFIX}_attempts_total{{{labels},outcome="{detail}"}} {_num(value)}'
                )
            elif kind == "crashes":
                series["crashes_total"].append(f"{PREFIX}_crashes_total{{{labels}}} {_num(value)}")
            elif kind in ("run", "wait", "run_sum", "wait_sum"):
                histograms[(label, kind.removesuffix("_sum"))][detail or "sum"] = value
        for (label, kind), buckets in sorted(histograms.items()):
            series[f"{kind}_seconds"] += _histogram(f"{PREFIX}_{kind}_seconds", label, queue, buckets)
    for name, (kind, text) in _HELP.items():
        if series[name]:
            yield f"# HELP {PREFIX}_{name} {text}\n# TYPE {PREFIX}_{name} {kind}\n"
            yield from (line + "\n" for line in series[name])
    yield f"# HELP {QUEUE_JOBS} Jobs of a queue waiting to start, and retries waiting to be due.\n"
    yield f"# TYPE {QUEUE_JOBS} gauge\n"
    for queue, (waiting, retrying) in sizes.items():
        yield f'{QUEUE_JOBS}{{queue="{_escape(queue)}",state="waiting"}} {waiting}\n'
        yield f'{QUEUE_JOBS}{{queue="{_escape(queue)}",state="retrying"}} {retrying}\n'


def _histogram(metric: str, label: str, queue: str, buckets: dict[str, float]) -> list[str]:
    labels = f'receiver="{_escape(label)}",queue="{_escape(queue)}"'
    lines, total = [], 0.0
    for bound in [*map(repr, BUCKETS), INF]:
        total += buckets.get(bound, 0.0)
        lines.append(f'{metric}_bucket{{{labels},le="{bound}"}} {_num(total)}')
    lines.append(f"{metric}_sum{{{labels}}} {_num(buckets.get('sum', 0.0))}")
    lines.append(f"{metric}_count{{{labels}}} {_num(total)}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
