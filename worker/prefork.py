"""The dotted path `worker.prefork.PreforkRetryWorker`, which settings written for earlier releases name.

The class lives in `worker.workers` with the other two; import it from `worker`.
"""

from worker.workers import PreforkRetryWorker

__all__ = ["PreforkRetryWorker"]
