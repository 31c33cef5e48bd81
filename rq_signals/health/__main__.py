"""``python -m rq_signals.health``: the health probe, answered without ``django.setup()``.

``manage.py rqsignals health`` gives the same answer, but first loads every installed app (the admin,
django-rq, rq's worker machinery, the project's models): 0.4 s or more per run, where a liveness
probe runs every few seconds. Django reads settings without loading apps, and `rq_signals.health`
needs only settings (through `rq_signals.conf`), redis-py and django-rq's way of connecting
(`rq_signals.connections`), so this entry point imports the settings module and nothing else of the
project. Run it where ``manage.py`` runs (the project folder is then on ``sys.path``), with
``DJANGO_SETTINGS_MODULE`` set or ``--settings``: manage.py's own default is not seen here.

Prints the same line and exits with the same status as the management command: 0 and the summary
on stdout when healthy; 1 and the problem on stderr otherwise (manage.py prefixes ``CommandError: ``);
2 for a bad flag. Settings it cannot find or import are one line on stderr and exit 1 as well.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from django.core.exceptions import ImproperlyConfigured

from rq_signals.health import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the command line), probe, print one line; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rq_signals.health", description=cli.DESCRIPTION)
    cli.add_arguments(parser)
    parser.add_argument(
        "--settings", help="The settings module, as manage.py's --settings; else DJANGO_SETTINGS_MODULE."
    )
    parser.add_argument(
        "--pythonpath", help="A folder to put first on sys.path, as manage.py's --pythonpath."
    )
    options = vars(parser.parse_args(argv))
    if options["pythonpath"]:
        sys.path.insert(0, options["pythonpath"])
    if options["settings"]:
        os.environ["DJANGO_SETTINGS_MODULE"] = options["settings"]
    try:
        print(cli.answer(options))
    except cli.ProbeFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    except ImproperlyConfigured as exc:  # no settings module named: one line too
        print(f"rq_signals.health: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # the settings module (or what it imports) is not importable from here
        module = os.environ.get("DJANGO_SETTINGS_MODULE")
        print(
            f"rq_signals.health: could not import the settings module {module!r} ({exc}); run it in the "
            "folder of manage.py, or pass --pythonpath",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
