"""Short heartbeats and recovery of jobs whose worker died."""

from __future__ import annotations


class RecoveryMixin:
    """Placeholder: filled in by the module's owner."""
