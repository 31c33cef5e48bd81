"""A fork-per-job work horse dies with its worker, so a recovered job never runs twice at once.

rq forks the horse into its own process group; if the worker is killed (`kill -9`, OOM killer) the
horse would run on, orphaned, while another worker recovers and reruns its job. On Linux the kernel
kills it for us (`PR_SET_PDEATHSIG`); elsewhere a daemon thread polls the parent pid.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: Seconds between checks of the parent pid where the kernel cannot do it for us.
ORPHAN_POLL_SECONDS = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Make the calling (horse) process get SIGKILL as soon as `parent_pid` is gone."""
    if not _set_parent_death_signal():
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="rq-signals-orphan-watch", daemon=True
        ).start()
    # The parent may have died before the kernel was told: then we are already an orphan.
    if os.getppid() != parent_pid:
        _die(parent_pid)


def _load_prctl() -> Any:
    """libc's `prctl`, looked up once per worker process and inherited by every horse it forks.

    `find_library` runs `ldconfig -p`, which a horse forked per job must not pay again (it cost ~20%
    of RetryWorker's throughput); resolving the symbol and its argument types here, not on a horse's
    first call, also spares each horse ctypes' lookup (~0.1 ms of its start, before the job runs).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def _set_parent_death_signal() -> bool:
    if _PRCTL is None:
        return False
    return int(_PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(ORPHAN_POLL_SECONDS)
    _die(parent_pid)


def _die(parent_pid: int) -> None:
    logger.warning(
        "Work horse %d: worker %d is gone; stopping so the job can be recovered", os.getpid(), parent_pid
    )
    os.kill(os.getpid(), signal.SIGKILL)
