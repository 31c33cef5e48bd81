"""Models the tests save, delete and send through signals (no migrations: created by syncdb)."""

from __future__ import annotations

import uuid

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL)
    reference = models.CharField(max_length=40)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    placed_at = models.DateTimeField(null=True, blank=True)
    ship_on = models.DateField(null=True, blank=True)
    notes = models.JSONField(default=dict, blank=True)
    tags = models.ManyToManyField(Tag, blank=True)

    def __str__(self) -> str:
        return self.reference


class Token(models.Model):
    """A model with a UUID primary key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    label = models.CharField(max_length=50)
    blob = models.BinaryField(default=b"")
    ttl = models.DurationField(null=True, blank=True)

    def __str__(self) -> str:
        return self.label


class Effect(models.Model):
    """A row a receiver writes, so a test can observe that the receiver ran (and how often)."""

    receiver = models.CharField(max_length=200)
    key = models.CharField(max_length=200, blank=True)
    value = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.receiver} {self.key}"


class PublishedManager(models.Manager["Article"]):
    def get_queryset(self) -> models.QuerySet[Article]:
        return super().get_queryset().filter(published=True)


class Article(models.Model):
    """A model whose default manager hides rows (unpublished ones), as soft-delete managers do.

    Its file field holds a `FieldFile` once read, a value JSON has no tag for.
    """

    title = models.CharField(max_length=100)
    published = models.BooleanField(default=False)
    attachment = models.FileField(blank=True)

    objects = PublishedManager()

    def __str__(self) -> str:
        return self.title


class Invoice(models.Model):
    """Saved, deleted and tagged by the rq_signals app tests; `tests.receivers` listens to it."""

    reference = models.CharField(max_length=40)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    tags = models.ManyToManyField(Tag, blank=True, related_name="invoices")

    def __str__(self) -> str:
        return self.reference


class Shipment(models.Model):
    """Saved and deleted by the rq_signals tests of pre_save / pre_delete receivers."""

    carrier = models.CharField(max_length=40)
    weight_kg = models.DecimalField(max_digits=8, decimal_places=3, default=0)

    def __str__(self) -> str:
        return self.carrier
