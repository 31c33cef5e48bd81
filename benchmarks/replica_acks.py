"""What ``RQ_SIGNALS["REPLICA_ACKS"] = 1`` costs per save: one signal's transaction, with and without.

In-process, as the transaction benchmark: `with transaction.atomic(): Order.objects.create()` with one
`@async_receiver`, the after-commit write going to the private Redis, which has a replica of its own
on loopback (AOF off on both, as on the master the other benchmarks use). Measured interleaved:
without acknowledgements, and with ``REPLICA_ACKS = 1`` (the write and ``WAIT 1`` in one pipeline).
On loopback a replica acknowledges within one replication round trip; over a network, add that
network's round trip to the figure. A replica that is down or lagging makes each save wait up to
``REPLICA_ACK_TIMEOUT`` (and sends its jobs to the outbox as well).
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

import redis
from django.test import override_settings

from benchmarks import django_setup
from benchmarks.harness import Context, Row, Section
from benchmarks.stats import summarize
from benchmarks.transaction import time_transaction, variant
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

NAME = "replica_acks"
TITLE = 'RQ_SIGNALS["REPLICA_ACKS"]: cost per save'


def run(ctx: Context) -> Section:
    began = time.monotonic()
    django_setup.setup(ctx)
    master_port = urlparse(ctx.redis_url).port
    repeats = ctx.pick(200, 1000)
    timings: dict[int, list[float]] = {0: [], 1: []}
    with RedisServer(extra_args=["--replicaof", "127.0.0.1", str(master_port)]) as replica:
        with redis.Redis(port=replica.port) as client:
            wait_until(
                lambda: client.info("replication").get("master_link_status") == "up",
                timeout=30,
                what="the replica to sync",
            )
        with variant("async"):
            time_transaction(10)  # warm up
            for repeat in range(repeats):
                for acks in (0, 1) if repeat % 2 else (1, 0):
                    with override_settings(RQ_SIGNALS={"REPLICA_ACKS": acks, "REPLICA_ACK_TIMEOUT": 1.0}):
                        seconds, _ = time_transaction(1)
                    timings[acks].append(seconds)
    section = Section(NAME, TITLE, __doc__ or "")
    plain = Row("1 signal, no acknowledgement", summarize(timings[0]), "ms", digits=3, scale=1e3)
    acked = Row("1 signal, REPLICA_ACKS = 1", summarize(timings[1]), "ms", digits=3, scale=1e3)
    added = [a - b for a, b in zip(timings[1], timings[0], strict=True)]
    acked.note = f"added {summarize(added).format(3, 1e3)} ms per save; {repeats} repeats, interleaved"
    section.rows += [plain, acked]
    section.seconds = time.monotonic() - began
    return section
