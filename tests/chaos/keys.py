"""Redis keys the chaos receivers write and the scenarios read (no receivers here: import it anywhere)."""

from __future__ import annotations

#: ``"<tag> start|end <redis time> <pid>"``, one line per start and per end of a run.
LOG = "chaos:log"
#: Hashes, tag -> runs begun / runs finished.
STARTED = "chaos:started"
ENDED = "chaos:ended"
#: Set: tags of which a run began while an earlier run's process was still alive.
OVERLAPS = "chaos:overlaps"


def running_key(pid: int) -> str:
    """String: the tag process `pid` is running now (how a scenario finds a worker mid-job)."""
    return f"chaos:running:{pid}"


def active_key(tag: str) -> str:
    """String: the pid of the latest run of `tag` that has not ended."""
    return f"chaos:active:{tag}"
