"""A staff user sees the jobs waiting in the outbox; nobody can add or edit them there."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from rq_signals.models import OutboxEntry

pytestmark = pytest.mark.django_db


def staff_with_view_permission() -> User:
    user = User.objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_outboxentry"))
    return user


def test_staff_with_the_view_permission_sees_waiting_jobs(client):
    OutboxEntry.objects.create(
        job_id="job-1",
        queue="high",
        receiver="tests.receivers.record_order",
        data="{}",
        created_at=timezone.now(),
        attempts=2,
        last_error="ConnectionError",
    )
    client.force_login(staff_with_view_permission())

    page = client.get("/admin/rq_signals/outboxentry/")

    assert page.status_code == 200
    assert b"job-1" in page.content and b"ConnectionError" in page.content
    assert client.get("/admin/rq_signals/outboxentry/add/").status_code == 403


def test_anonymous_and_non_staff_users_are_sent_to_the_login(client):
    assert client.get("/admin/rq_signals/outboxentry/").status_code == 302
    client.force_login(User.objects.create_user("customer", password="x"))
    assert client.get("/admin/rq_signals/outboxentry/").status_code == 302
