"""Warm and cold shutdown that lose no job."""

from __future__ import annotations


class ShutdownMixin:
    """Placeholder: filled in by the module's owner."""
