"""`OutboxEntry`: a job that has not reached Redis yet, kept in the database the signal was sent from.

Rows are written with ``bulk_create`` and removed with a raw ``DELETE`` (see `rq_signals.outbox`), so
no model signal fires for them: an ``@async_receiver`` on ``post_save`` without a sender must not
turn the bookkeeping of one job into another job.
"""

from __future__ import annotations

from django.db import models


class OutboxEntry(models.Model):
    """One RQ job, as JSON, waiting for the relay (`rq_signals.outbox.relay_once`) to enqueue it.

    `data` is the JSON text of the job exactly as it would have been enqueued (id, queue, function,
    arguments, meta with the retry policy, description, timeout in seconds), kept as text so that no
    database rewrites it (PostgreSQL's jsonb reorders keys and normalises numbers).
    """

    id = models.BigAutoField(primary_key=True)  # explicit: the migration must not follow DEFAULT_AUTO_FIELD
    job_id = models.CharField(max_length=64, unique=True)
    queue = models.CharField(max_length=200)
    receiver = models.CharField(max_length=300)
    data = models.TextField()
    created_at = models.DateTimeField(db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Relay passes that could not enqueue it.")
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "outbox entry"
        verbose_name_plural = "outbox entries"
        ordering = ("id",)
        # Checked by rq_signals.dashboard (django-rq has no such permission), not by the outbox admin.
        permissions = (("manage_jobs", "Can requeue, delete, stop and clear RQ jobs and queues"),)

    def __str__(self) -> str:
        return f"Job {self.job_id} on {self.queue!r} ({self.receiver})"


class ReceiversOverview(models.Model):
    """No table: the admin index's link to the receivers overview (`rq_signals.receivers_overview`)."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "receivers overview"
        verbose_name_plural = "receivers overview"

    def __str__(self) -> str:
        return "receivers overview"
