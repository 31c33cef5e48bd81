"""Redis behind Sentinel on loopback: a master, a replica and three sentinels on free ports, stopped by pid.

`SentinelSetup` starts them (master and replica with AOF), waits until every sentinel knows the replica
and the other sentinels, and offers the two failovers the tests need: `kill_master` (SIGKILL, then
wait for Sentinel to promote the replica) and `planned_failover` (``SENTINEL FAILOVER``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_until

MASTER_NAME = "rqsignals"
#: Sentinel's `down-after-milliseconds`: how long a master may be silent before it is presumed down.
DOWN_AFTER_MS = 1000


class SentinelProcess(RedisServer):
    """`redis-server <conf> --sentinel`: Sentinel rewrites its config file, so it gets one of its own."""

    def __init__(self, master_port: int, *, quorum: int = 2) -> None:
        super().__init__()
        self.master_port = master_port
        self.quorum = quorum

    def command(self) -> list[str]:
        conf = Path(self.data_dir) / "sentinel.conf"
        if not conf.exists():
            conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.data_dir}\n"
                f"logfile {os.path.join(self.data_dir, 'sentinel.log')}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
        return [self.binary, str(conf), "--sentinel"]


class SentinelSetup:
    """A master, `replicas` replicas of it and three sentinels watching them, each a process of ours."""

    def __init__(self, *, replicas: int = 1) -> None:
        self.root = tempfile.mkdtemp(prefix="rq-signals-sentinel-")
        self.nodes = [self._node(name) for name in "abcdefgh"[: replicas + 1]]
        for replica in self.nodes[1:]:
            replica.extra_args = ["--replicaof", "127.0.0.1", str(self.nodes[0].port)]
        self.sentinels = [SentinelProcess(self.nodes[0].port) for _ in range(3)]

    def _node(self, name: str) -> RedisServer:
        data_dir = os.path.join(self.root, name)
        os.makedirs(data_dir)
        return RedisServer(free_port(), persistent=True, data_dir=data_dir)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels, as ``RQ_QUEUES[...]["SENTINELS"]`` and rq's ``SENTINEL["INSTANCES"]`` take them."""
        return [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]

    def start(self) -> SentinelSetup:
        for node in self.nodes:
            node.start()
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._ready, timeout=30, what="every sentinel to know the replica and the other sentinels")
        return self

    def _ready(self) -> bool:
        try:
            return self._all_know_each_other()
        except redis.RedisError:
            return False

    def _all_know_each_other(self) -> bool:
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, decode_responses=True) as client:
                known = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                if len(known) < len(self.nodes) - 1:
                    return False
                if len(client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)) < 2:
                    return False
        with self.master_client() as master:
            replicas = master.info("replication")
        online = [replicas.get(f"slave{n}", {}).get("state") for n in range(len(self.nodes) - 1)]
        return online == ["online"] * (len(self.nodes) - 1)

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                with redis.Redis(port=sentinel.port, decode_responses=True, socket_timeout=1) as client:
                    _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                    return int(port)
            except redis.RedisError:
                continue
        raise AssertionError("no sentinel answers")

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def master_client(self) -> redis.Redis:
        return redis.Redis(port=self.master_port())

    def master_url(self) -> str:
        return f"redis://127.0.0.1:{self.master_port()}/0"

    def sentinels_env(self) -> str:
        """The sentinels as ``host:port,host:port,...`` (for a subprocess's environment)."""
        return ",".join(f"{host}:{port}" for host, port in self.addresses)

    def kill_master(self, *, timeout: float = 30.0) -> tuple[RedisServer, float]:
        """SIGKILL the master; wait until every sentinel names the replica; (the old master, promoted at)."""
        old = self.node(self.master_port())
        old.kill()
        wait_until(
            lambda: self._all_name_master_other_than(old.port), timeout=timeout, what="Sentinel to promote"
        )
        return old, time.monotonic()

    def planned_failover(self, *, timeout: float = 30.0) -> tuple[RedisServer, float]:
        """``SENTINEL FAILOVER``: wait until every sentinel names the new master; (the old one, at)."""
        old = self.node(self.master_port())
        with redis.Redis(port=self.sentinels[0].port) as client:
            client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        wait_until(
            lambda: self._all_name_master_other_than(old.port), timeout=timeout, what="the planned failover"
        )
        return old, time.monotonic()

    def _all_name_master_other_than(self, port: int) -> bool:
        try:
            return self._named_other_than(port)
        except redis.RedisError:
            return False

    def _named_other_than(self, port: int) -> bool:
        named = port
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, decode_responses=True, socket_timeout=1) as client:
                _, named = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                if int(named) == port:
                    return False
        with redis.Redis(port=int(named), decode_responses=True, socket_timeout=1) as new_master:
            return bool(new_master.info("replication")["role"] == "master")

    def wait_replica_online(self, node: RedisServer, *, timeout: float = 30.0) -> None:
        """After a restart of the old master: wait until Sentinel made it a replica and it is in sync."""

        def in_sync() -> bool:
            try:
                with redis.Redis(port=node.port, decode_responses=True, socket_timeout=1) as client:
                    info = client.info("replication")
            except redis.RedisError:
                return False
            return bool(info["role"] == "slave" and info.get("master_link_status") == "up")

        wait_until(in_sync, timeout=timeout, what=f"node {node.port} to be an online replica")

    def cleanup(self) -> None:
        for process in (*self.sentinels, *self.nodes):
            process.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
