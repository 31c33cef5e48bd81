"""What a caller imports from `rq_signals`: the decorator, the policy and every error it may catch."""

from __future__ import annotations

import rq_signals
from rq_signals import exceptions


def test_every_error_a_caller_may_catch_is_importable_from_the_package():
    public_errors = {
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, exceptions.RqSignalsError)
    } - {"SkipReceiver"}  # internal: the job entrypoint catches it itself

    assert public_errors <= set(rq_signals.__all__)
    assert rq_signals.SerializationError is exceptions.SerializationError
    assert all(hasattr(rq_signals, name) for name in rq_signals.__all__)
