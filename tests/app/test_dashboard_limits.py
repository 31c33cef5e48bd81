"""A staff user opens the page of a job whose data is a zlib bomb: a note, not a 500 nor a gigabyte.

django-rq's pages fetched jobs with rq's `Job`, whose restore decompresses without a bound; one GET
of such a job cost the web process hundreds of MB.
"""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rq import Queue

from tests.receivers import invoice_flagged
from tests.support.memory import PeakRss, zlib_bomb
from worker.serializers import JSONSerializer

pytestmark = pytest.mark.django_db

GROWTH_LIMIT_BYTES = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zlib_bomb(300 * 1024 * 1024)


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    return client


def bomb_job(connection, bomb: bytes) -> str:
    queue = Queue("default", connection=connection, serializer=JSONSerializer)  # index 0 of the dashboard
    job = queue.enqueue_call("tests.receivers.record_order", args=(1,))
    connection.hset(job.key, "data", bomb)
    return job.id


@pytest.mark.parametrize("prefix", ["/django-rq", "/admin/django_rq/dashboard"])
def test_the_job_page_of_a_bomb_shows_it_raw_with_a_note_and_memory_stays_bounded(
    staff, connection, bomb, prefix
):
    # Given a job whose data decompresses to 300 MiB
    job_id = bomb_job(connection, bomb)
    # When a staff user opens its page, the process's memory watched
    with PeakRss() as rss:
        baseline = rss.process.memory_info().rss
        page = staff.get(f"{prefix}/queues/0/{job_id}/")
    print(f"job page {prefix}: RSS grew {(rss.peak - baseline) / 2**20:.1f} MiB")
    # Then the page answers, says which limit the data exceeds, and the bomb was never decompressed
    assert page.status_code == 200
    text = page.content.decode()
    assert f"Job {job_id}: cannot load its data: it decompresses past 2097152 bytes" in text
    assert "RQ_SIGNALS[&quot;MAX_JOB_DATA_BYTES&quot;]" in text
    assert rss.peak - baseline < GROWTH_LIMIT_BYTES, f"grew {(rss.peak - baseline) / 2**20:.0f} MiB"
    assert connection.hget(f"rq:job:{job_id}", "data") == bomb


def test_the_queue_pages_list_a_bomb_job_without_decompressing_it(staff, connection, bomb):
    job_id = bomb_job(connection, bomb)
    with PeakRss() as rss:
        baseline = rss.process.memory_info().rss
        page = staff.get("/django-rq/queues/0/")
    assert page.status_code == 200
    assert job_id in page.content.decode()
    assert rss.peak - baseline < GROWTH_LIMIT_BYTES, f"grew {(rss.peak - baseline) / 2**20:.0f} MiB"


def test_the_limit_is_read_from_the_settings_on_each_page(staff, connection):
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue_call("tests.receivers.record_order", args=("x" * 2000,))
    with override_settings(RQ_SIGNALS={"MAX_JOB_DATA_BYTES": 1000}):
        noted = staff.get(f"/django-rq/queues/0/{job.id}/").content.decode()
    assert "cannot load its data: it decompresses past 1000 bytes" in noted
    assert "cannot load its data" not in staff.get(f"/django-rq/queues/0/{job.id}/").content.decode()


def plant_result_bomb(connection, job_id: str, bomb: bytes) -> None:
    """A failed result of `job_id` whose failure text is `bomb`, as rq writes one (its result stream)."""
    connection.xadd(
        f"rq:results:{job_id}", {"type": 2, "worker_name": "w", "exc_string": base64.b64encode(bomb)}
    )
    connection.zadd("rq:failed:default", {job_id: 9999999999})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", ["django-rq's (a plain job)", "ours (a receiver job)"])
def test_the_job_page_of_a_job_whose_failure_result_is_a_bomb_answers_and_memory_stays_bounded(
    staff, connection, bomb, run_worker, page
):
    # Given a failed job (a plain one: django-rq's page; a receiver call: ours) whose latest result's
    # failure text someone replaced by a zlib bomb (300 MiB once decompressed)
    if page.startswith("ours"):
        invoice_flagged.send(sender="desk", reason="fraud")
        run_worker()
        [raw_id] = connection.zrange("rq:failed:default", 0, -1)
        job_id = raw_id.decode()
    else:
        queue = Queue("default", connection=connection, serializer=JSONSerializer)
        job_id = queue.enqueue_call("tests.receivers.record_order", args=(1,)).id
    plant_result_bomb(connection, job_id, bomb)
    # When a staff user opens its page, the process's memory watched
    with PeakRss() as rss:
        baseline = rss.process.memory_info().rss
        answer = staff.get(f"/django-rq/queues/0/{job_id}/")
    print(f"job page, {page}: RSS grew {(rss.peak - baseline) / 2**20:.1f} MiB")
    # Then the page answers, and the bomb was never decompressed
    assert answer.status_code == 200
    assert rss.peak - baseline < GROWTH_LIMIT_BYTES, f"grew {(rss.peak - baseline) / 2**20:.0f} MiB"
    assert len(answer.content) < 1024 * 1024
