"""Failure hook: ask the job's policy, then schedule a precise retry or fail the job."""

from __future__ import annotations


class RetryMixin:
    """Placeholder: filled in by the module's owner."""
