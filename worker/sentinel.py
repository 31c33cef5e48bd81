"""Redis behind Sentinel: connections that ask Sentinel for the master each time they connect, and a
watcher that drops a service's connections the moment Sentinel announces a new master.

redis-py's `SentinelManagedConnection` asks Sentinel for the master only on the pool's first
connect: a command retried after a lost connection reconnects to the host and port it had cached,
so a client retrying forever (`worker.safety.reconnect`) kept knocking on a dead master after a
failover, and on the old master once it came back as a replica ("The previous master is now a
slave"). `FollowingConnection` asks Sentinel before every connect, and asks every sentinel: in the
middle of a failover they disagree for a moment, and redis-py takes the first valid answer, which
from a sentinel that has not heard of the switch yet names the old master (still taking writes,
which are lost when it is demoted). `newest_master` takes the answer of the newest configuration
epoch.

After a planned failover (``SENTINEL FAILOVER``) the old master keeps taking writes on the connections
it already has until Sentinel demotes it (about ten seconds later); writes there are lost when it
resyncs. `watch` subscribes, from one daemon thread per `Sentinel` per process, to Sentinel's
``+switch-master`` and, in every watched pool of that service, closes each connection that is not
to the new master, idle or in use: the next command (or the retry of one in flight, a blocking
dequeue included) connects to the new master. A connection already there is left alone: closing it
under a blocking ``BLPOP`` that Redis has just answered would lose the job it popped. A forked child
has no watcher thread: `resume_watching` starts one in a work horse (of many jobs at once; of one job
once it has run `HORSE_WATCH_DELAY_SECONDS`), whose writes would otherwise go on to the old master
until Sentinel demotes it. Without a Sentinel pool it does nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from typing import Any, Final, TypeGuard

from redis.exceptions import RedisError
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

logger = logging.getLogger("rq.worker.sentinel")  # under rq's worker logger: `rq worker` prints it

#: Sentinel's pub/sub channel announcing a new master: "<name> <old ip> <old port> <new ip> <new port>".
SWITCH_CHANNEL: Final = "+switch-master"
#: The attribute of redis-py's pool proxy where `FollowingConnection` keeps the master it last found.
FOLLOWED: Final = "rq_signals_master"
#: Seconds into a job before the horse of one job (rq's fork per job) subscribes to the switches: a
#: subscription costs a connection to a sentinel (about 3.5 ms a job on loopback), and a job shorter
#: than this is as exposed as to the second Sentinel itself takes to announce a promotion.
HORSE_WATCH_DELAY_SECONDS: Final = 0.5
#: Seconds between two tries of the sentinels when none answers the subscription.
RESUBSCRIBE_PAUSE_SECONDS: Final = 0.5


class FollowingConnection(SentinelManagedConnection):
    """A connection to a Sentinel-managed master that asks Sentinel where the master is before it connects.

    Except a new connection's first connect, which goes where the pool's last answer (or the watcher's
    latest ``+switch-master``) said: a work horse forked per job makes new connections for every job,
    and asking every sentinel (a connection to each, in a new process) cost it about 2.5 ms. Any
    reconnect asks.
    """

    _fresh = True

    def _connect(self) -> Any:
        pool: Any = self.connection_pool  # redis-py's proxy of the pool (is_master, master_address, ...)
        if pool.is_master:
            known: tuple[str, int] | None = getattr(pool, FOLLOWED, None)
            fresh, self._fresh = self._fresh, False
            address = known if fresh and known else newest_master(pool.sentinel_manager, pool.service_name)
            setattr(pool, FOLLOWED, address)  # on the proxy, which keeps it through redis-py's reset at fork
            if pool.master_address != address:  # as redis-py's get_master_address: idle ones follow
                pool.master_address = address
                owner = pool.connection_pool_ref()
                if owner is not None:
                    owner.disconnect(inuse_connections=False)
            self.host, self.port = address
        return super()._connect()  # type: ignore[misc]  # types-redis 4.6 omits Connection._connect

    def _connect_retry(self) -> Any:
        # redis-py's asks one sentinel for the master before `_connect`, which asks again: once is enough.
        # (types-redis 4.6 knows none of _sock, _connect_retry, connect_check_health: redis-py 5+ names.)
        pool: Any = self.connection_pool
        if self._sock or not pool.is_master:  # type: ignore[attr-defined]
            return super()._connect_retry()  # type: ignore[misc]
        return self.connect_check_health(  # type: ignore[attr-defined]
            check_health=pool.check_connection, retry_socket_connect=False
        )


class FollowingSSLConnection(FollowingConnection, SentinelManagedSSLConnection):
    """`FollowingConnection` over TLS."""


def newest_master(manager: Sentinel, service: str) -> tuple[str, int]:
    """The master of `service` as the sentinel with the newest configuration epoch names it.

    Every sentinel is asked (one round trip each, on a connect only); one that does not answer, or
    holds the master down, is skipped; `MasterNotFoundError` (a `ConnectionError`) if none names one.
    """
    newest: tuple[int, tuple[str, int]] | None = None
    errors: list[str] = []
    for sentinel in manager.sentinels:
        try:
            state = sentinel.sentinel_master(service)  # type: ignore[no-untyped-call]  # types-redis: untyped
        except (RedisError, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if not state or not manager.check_master_state(state, service):
            continue
        epoch = int(state.get("config-epoch", 0))
        if newest is None or epoch > newest[0]:
            newest = (epoch, (str(state["ip"]), int(state["port"])))
    if newest is None:
        raise MasterNotFoundError(f"No master found for {service!r}" + (f": {errors}" if errors else ""))
    return newest[1]


def is_sentinel_pool(pool: object) -> TypeGuard[SentinelConnectionPool]:
    return isinstance(pool, SentinelConnectionPool)


def follow(pool: SentinelConnectionPool) -> None:
    """Make `pool` (before it has connected) reconnect through Sentinel, and watch it for switches."""
    pool.connection_class = _following_class(pool.connection_class)
    watch(pool)


def clone_pool(pool: SentinelConnectionPool) -> SentinelConnectionPool:
    """A pool of its own to the same service, through the same sentinels, with `FollowingConnection`s."""
    kwargs = {name: value for name, value in pool.connection_kwargs.items() if name != "connection_pool"}
    kwargs["connection_class"] = _following_class(pool.connection_class)
    clone = SentinelConnectionPool(
        pool.service_name,
        pool.sentinel_manager,
        is_master=pool.is_master,
        check_connection=pool.check_connection,
        max_connections=pool.max_connections,
        **kwargs,
    )
    watch(clone)
    return clone


def watch(pool: SentinelConnectionPool) -> None:
    """Disconnect `pool` whenever Sentinel announces a new master for its service (a master pool only)."""
    if not pool.is_master:
        return
    with _lock:
        watcher = _watchers.get(pool.sentinel_manager)
        if watcher is None or not watcher.is_alive():
            watcher = _watchers[pool.sentinel_manager] = _SwitchWatcher(pool.sentinel_manager)
            watcher.start()
        watcher.pools.add(pool)


def resume_watching(*, after: float = 0.0) -> None:
    """In a forked child: watch again, from a thread of this process, the pools the parent watched;
    `after` seconds from now (a job that is over by then never pays for the subscription)."""
    if not _watchers:
        return  # no Sentinel pool in this process: nothing to watch, no thread
    if after > 0:
        timer = threading.Timer(after, resume_watching)
        timer.daemon = True
        timer.start()
        return
    with _lock:
        for manager, watcher in list(_watchers.items()):
            if not watcher.is_alive():
                resumed = _watchers[manager] = _SwitchWatcher(manager)
                resumed.pools = watcher.pools
                resumed.start()


def _following_class(connection_class: type[Any]) -> type[Any]:
    if issubclass(connection_class, FollowingConnection):
        return connection_class
    if issubclass(connection_class, SentinelManagedSSLConnection):
        return FollowingSSLConnection
    if connection_class is SentinelManagedConnection:
        return FollowingConnection
    return connection_class  # a class of the user's own: left as it is


class _SwitchWatcher(threading.Thread):
    """Subscribed to ``+switch-master`` on one sentinel at a time (the next one if it fails)."""

    def __init__(self, manager: Sentinel) -> None:
        super().__init__(name="rq-sentinel-watch", daemon=True)
        self.manager = manager
        self.pools: weakref.WeakSet[SentinelConnectionPool] = weakref.WeakSet()

    def run(self) -> None:
        turn = 0
        while True:
            sentinel = self.manager.sentinels[turn % len(self.manager.sentinels)]
            turn += 1
            try:
                self._listen(sentinel)
            except BaseException as exc:  # the thread must outlive anything but the interpreter's exit
                if sys.is_finalizing():
                    raise
                if not isinstance(exc, (RedisError, OSError)):
                    logger.exception("Sentinel watcher: %s; listening again", type(exc).__name__)
                threading.Event().wait(RESUBSCRIBE_PAUSE_SECONDS)

    def _listen(self, sentinel: Any) -> None:
        pubsub = sentinel.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(SWITCH_CHANNEL)
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    self.switched(message["data"])
        finally:
            pubsub.close()

    def switched(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        service, old_host, old_port, new_host, new_port = text.split()
        pools = [pool for pool in list(self.pools) if pool.service_name == service]
        for pool in pools:
            proxy = pool.proxy  # type: ignore[attr-defined]  # types-redis 4.6 predates the proxy
            setattr(proxy, FOLLOWED, (new_host, int(new_port)))  # where new connections go first
        closed = sum(_close_all_but(pool, (new_host, int(new_port))) for pool in pools)
        logger.warning(
            "Sentinel: master of %r switched from %s:%s to %s:%s; %d connection(s) to the old one closed",
            service,
            old_host,
            old_port,
            new_host,
            new_port,
            closed,
        )


def _close_all_but(pool: SentinelConnectionPool, master: tuple[str, int]) -> int:
    """Close `pool`'s connections (idle and in use) that are not to `master`; how many."""
    # redis-py's pool offers all or nothing (`disconnect`); its two lists, under its lock, are the
    # only way to spare the connections that already reached the new master.
    with pool._lock:  # type: ignore[attr-defined]  # redis-py's pool internals, present since 3.x
        connections = [*pool._available_connections, *pool._in_use_connections]  # type: ignore[attr-defined]  # as above
    stale = [conn for conn in connections if conn.host and (conn.host, int(conn.port)) != master]
    for conn in stale:
        conn.disconnect()
    return len(stale)


_lock = threading.Lock()
_watchers: dict[Sentinel, _SwitchWatcher] = {}  # one per Sentinel object (each `RQ_QUEUES` connection)


def _new_lock_in_child() -> None:
    """After ``fork()``: a fresh lock (another thread may have held it); the parent's watchers are not
    running here, and `watch` starts a new one when a pool is next watched."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)
