"""A web process that dies right after its commit: ``python -m tests.chaos.sender <count>``.

One transaction saves `count` orders (two ``post_save`` receivers each); a callback registered before
them kills the process with SIGKILL as soon as the commit is done, before rq-signals' own after-commit
callback can enqueue anything, as a crash, an OOM kill or a deploy would.
"""

from __future__ import annotations

import os
import signal
import sys

import django


def main(count: int) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.chaos.settings"
    django.setup()
    from django.db import transaction

    from tests.testapp.models import Invoice

    with transaction.atomic():
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))  # runs before ours
        for n in range(count):
            Invoice.objects.create(reference=f"crash-{n}")
    raise AssertionError("still alive after the commit")


if __name__ == "__main__":
    main(int(sys.argv[1]))
