"""Security of the signal path, the dashboards and the Redis connection (issue "Nothing lost").

- Only functions registered with ``@async_receiver`` run through the job entrypoint.
- No pickle on the signal path: the payload and the job envelope rq stores are JSON, and workers run
  only run_receiver (and RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]), refusing pickled jobs (worker subprocess).
- A payload size limit refused at send time (RQ_SIGNALS["MAX_PAYLOAD_BYTES"]).
- The admin and django-rq pages are staff-only; the outbox admin wants its view permission and is
  read-only; django-rq's requeue/delete/empty need the rq_signals.manage_jobs permission.
- A Redis URL with a password works end to end and the password is never logged; ``rediss://`` too.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.contrib.auth.models import User
from django.db import connection as db_connection
from django.db import transaction
from django.test import Client, override_settings
from django.urls import reverse
from rq import Queue
from rq.job import Job, JobStatus

from rq_signals import queues, registration
from rq_signals.exceptions import SerializationError, UnknownReceiver
from rq_signals.gate import job_gate
from rq_signals.jobs import run_receiver
from rq_signals.models import OutboxEntry
from tests.chaos.canary import SENTINEL_DIR_ENV, Boom
from tests.receivers import invoice_noted, invoice_paid
from tests.settings import SETTINGS_ENV
from tests.support.processes import REPO_ROOT, Proc
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.testapp.models import Effect, Invoice
from worker.gate.gate import installed_job_gate
from worker.serializers import JSONOrPickleSerializer, JSONSerializer

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE_NAMES = ("high", "default", "low")
POST_SAVE = "django.db.models.signals.post_save"
JOB_FUNCTION = "rq_signals.jobs.run_receiver"
PAYLOAD = {"format": 1, "signal": "post_save", "receiver": "x", "kwargs": {}}
PASSWORD = "Sup3r-s3cret-Pa55word-4-tests"  # distinctive: found anywhere in a log, it leaked


# -- only registered receivers run ---------------------------------------------------------------


@pytest.mark.parametrize(
    "receiver_id",
    ["os.system", "builtins.exec", "subprocess.call", "tests.chaos.canary.unregistered_canary", "this.s"],
)
def test_a_job_naming_anything_but_a_registered_receiver_runs_and_imports_nothing(
    receiver_id, tmp_path, monkeypatch
):
    monkeypatch.setenv(SENTINEL_DIR_ENV, str(tmp_path))
    imported_before = set(sys.modules)
    registry_before = dict(registration._registry)

    with pytest.raises(UnknownReceiver, match=re.escape(f"Receiver {receiver_id!r} is not registered")):
        run_receiver(receiver_id, POST_SAVE, PAYLOAD)

    assert list(tmp_path.iterdir()) == []  # the canary, had it run, leaves a file here
    assert set(sys.modules) - imported_before == set()  # `this` prints the Zen when imported
    assert registration._registry == registry_before


def test_a_registered_receiver_runs_only_for_a_signal_it_is_connected_to():
    with pytest.raises(UnknownReceiver, match="not connected to signal 'os.system'"):
        run_receiver("tests.receivers.record_invoice", "os.system", PAYLOAD)


def test_every_runnable_receiver_id_is_a_decorated_function_at_its_own_dotted_path():
    for declared in registration.registered():
        assert declared.receiver_id == f"{declared.func.__module__}.{declared.func.__qualname__}"
        assert registration.lookup(declared.receiver_id) is declared


def test_unknown_receiver_is_permanent_so_a_hostile_job_is_never_retried():
    from worker.exceptions import PermanentJobError

    assert issubclass(UnknownReceiver, PermanentJobError)


def test_a_receiver_id_that_is_not_a_string_is_an_unknown_receiver():
    with pytest.raises(UnknownReceiver, match=re.escape("['os.system']")):
        run_receiver(["os.system"], POST_SAVE, PAYLOAD)  # type: ignore[arg-type]


# -- no pickle on the signal path ----------------------------------------------------------------


def committed_job(connection: redis.Redis) -> Job:
    """The one job a committed payment sends to `default` (record_payment), as stored in Redis."""
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="SEC-1", total="12.50")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=12)
    [job_id] = [raw.decode() for raw in connection.lrange("rq:queue:default", 0, -1)]
    return Job.fetch(job_id, connection=connection, serializer=queues.get_queue("default").serializer)


def test_the_job_of_a_signal_carries_its_arguments_as_json(connection):
    job = committed_job(connection)

    assert job.func_name == "rq_signals.jobs.run_receiver"
    receiver_id, signal_path, payload = job.args
    assert (receiver_id, signal_path) == ("tests.receivers.record_payment", "tests.receivers.invoice_paid")
    assert json.loads(json.dumps(list(job.args), allow_nan=False)) == list(job.args)  # plain JSON types
    assert payload["kwargs"]["invoice"]["__rqs__"] == "model"  # an instance travels by reference
    assert job.kwargs == {}
    assert json.loads(json.dumps(job.meta)) == job.meta  # the retry policy is plain data too


def test_the_stored_job_envelope_is_json_not_pickle(connection):
    job = committed_job(connection)
    stored = connection.hgetall(job.key)

    data = zlib.decompress(stored[b"data"])
    assert queues.get_queue("default").serializer is JSONSerializer, (
        f"serializer {queues.get_queue('default').serializer!r}; data starts {data[:2]!r} "
        f"(pickle protocol {data[1]}), meta starts {stored[b'meta'][:2]!r}"
    )
    assert json.loads(data)[0] == "rq_signals.jobs.run_receiver"
    assert json.loads(stored[b"meta"]) == job.meta


def test_the_workers_load_jobs_with_json_and_run_only_run_receiver_by_default():
    gate = job_gate()
    assert gate.serializer is JSONSerializer
    assert gate.allowed_functions == ("rq_signals.jobs.run_receiver",)
    assert not gate.accept_pickle
    assert installed_job_gate() == gate  # what AppConfig.ready() installed for every worker
    with override_settings(RQ_SIGNALS={"ALLOWED_JOB_FUNCTIONS": ["shop.jobs.*"], "ACCEPT_PICKLE": True}):
        gate = job_gate()
        assert gate.allows("shop.jobs.report") and gate.allows("rq_signals.jobs.run_receiver")
        assert not gate.allows("os.system")
        assert gate.serializer is JSONOrPickleSerializer
        assert queues.get_queue("default").serializer is JSONOrPickleSerializer


def test_the_workers_send_rq_webhooks_only_where_allowed_webhook_urls_says():
    metadata = "http://169.254.169.254/latest/meta-data/"  # where a forged webhook would go
    assert not job_gate().allows_webhook(metadata)
    with override_settings(RQ_SIGNALS={"ALLOWED_WEBHOOK_URLS": ["https://hooks.example.com/rq/"]}):
        gate = job_gate()
        assert gate.allows_webhook("https://hooks.example.com/rq/done")
        assert not gate.allows_webhook(metadata)
        assert 'RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"]' in gate.webhooks_setting
    with override_settings(RQ_SIGNALS={"ALLOWED_JOB_FUNCTIONS": ["*"]}):
        assert job_gate().allows_webhook(metadata)  # "*": rq's behaviour, webhooks included


# -- what a worker run by manage.py rqworker runs ------------------------------------------------

CANARY = "tests.chaos.canary.unregistered_canary"


def note_job_args(connection: redis.Redis) -> list[object]:
    """The arguments of a genuine run_receiver job of record_note (sender "template"), taken off the queue."""
    invoice_noted.send(sender="template", note="hello")  # on_commit=False: enqueued at once
    [job_id] = [raw.decode() for raw in connection.lrange("rq:queue:default", 0, -1)]
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    queues.get_queue("default").remove(job_id)
    job.delete()
    return list(job.args)


def push_forged_jobs(connection: redis.Redis, *, pickled_args: list[object], meta: object) -> dict[str, str]:
    """Jobs pushed past the app, as anyone who can write to Redis could; kind to job id.

    A JSON job naming the canary; a pickled (plain rq) job of run_receiver with `pickled_args`; a
    JSON job of a genuine record_note call whose meta is pickled `meta`.
    """
    args = note_job_args(connection)
    json_queue = Queue("default", connection=connection, serializer=JSONSerializer)
    pickle_queue = Queue("default", connection=connection)  # rq's default: pickle
    with_pickled_meta = json_queue.enqueue_call(JOB_FUNCTION, args=tuple(args))
    connection.hset(with_pickled_meta.key, "meta", pickle.dumps(meta))
    return {
        "other function": json_queue.enqueue_call(CANARY, args=("forged",)).id,
        "pickled data": pickle_queue.enqueue_call(JOB_FUNCTION, args=tuple(pickled_args)).id,
        "pickled meta": with_pickled_meta.id,
    }


def rqworker(tmp_path: Path, sentinels: Path, *extra: str, settings: dict[str, object] | None = None) -> Proc:
    args = [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqworker", *extra, *QUEUE_NAMES]
    env = {**database_env(), SENTINEL_DIR_ENV: str(sentinels)}
    if settings is not None:
        env[SETTINGS_ENV] = json.dumps(settings)
    return Proc(args, env=env, log_path=tmp_path / f"worker-{len(list(tmp_path.glob('worker-*')))}.log")


def test_a_worker_refuses_other_functions_and_pickles_each_failing_clearly_and_stays_up(connection, tmp_path):
    # Given forged jobs whose pickles would call the canary when unpickled, and a worker
    sentinels = tmp_path / "sentinels"
    sentinels.mkdir()
    receiver_id, signal_path, payload = note_job_args(connection)
    evil_args = [receiver_id, signal_path, {**payload, "canary": Boom()}]
    forged = push_forged_jobs(connection, pickled_args=evil_args, meta={"retry_policy": Boom()})
    worker = rqworker(tmp_path, sentinels)
    try:
        # When it works the queues, then each forged job ends in the failed registry ...
        failed = queues.get_queue("default").failed_job_registry
        wait_until(
            lambda: set(forged.values()) <= set(failed.get_job_ids()), timeout=60, what="forged jobs to fail"
        )
        texts = {
            kind: zlib.decompress(connection.hget(Job.key_for(job_id), "exc_info")).decode()
            for kind, job_id in forged.items()
        }
        # ... with an error naming the job, what was refused and the setting to change
        assert (
            f"Job {forged['other function']}: refused: function '{CANARY}' is not allowed"
            in texts["other function"]
        )
        assert 'RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]' in texts["other function"]
        assert (
            f"Job {forged['pickled data']}: refused: its data (function name and arguments) is pickled"
            in texts["pickled data"]
        )
        assert f"Job {forged['pickled meta']}: refused: its meta is pickled" in texts["pickled meta"]
        assert all(
            'RQ_SIGNALS["ACCEPT_PICKLE"] = True' in texts[kind] for kind in ("pickled data", "pickled meta")
        )
        # ... nothing ran: no canary file, no receiver call ...
        assert list(sentinels.iterdir()) == []
        assert not Effect.objects.filter(receiver="record_note").exists()
        # ... and the same worker is still up and runs a proper job
        invoice_noted.send(sender="after", note="still here")
        wait_until(
            lambda: Effect.objects.filter(receiver="record_note", key="after").exists(),
            timeout=60,
            what="the worker to run a proper job after the forged ones",
        )
        assert worker.alive(), worker.output()[-3000:]
    finally:
        worker.stop()


def test_a_worker_runs_other_functions_and_pickles_when_the_settings_allow_them(connection, tmp_path):
    sentinels = tmp_path / "sentinels"
    sentinels.mkdir()
    forged = push_forged_jobs(
        connection, pickled_args=note_job_args(connection), meta={"note": "pickled, harmless"}
    )
    allow = {"ALLOWED_JOB_FUNCTIONS": [CANARY], "ACCEPT_PICKLE": True}
    worker = rqworker(tmp_path, sentinels, "--burst", settings=allow)
    assert worker.wait(60) == 0, worker.output()[-3000:]
    statuses = {
        kind: Job.fetch(job_id, connection=connection, serializer=JSONOrPickleSerializer).get_status()
        for kind, job_id in forged.items()
    }
    assert statuses == dict.fromkeys(forged, JobStatus.FINISHED)
    assert len(list(sentinels.iterdir())) == 1  # the canary ran, being allowed
    assert Effect.objects.filter(receiver="record_note", key="template").count() == 2


# -- a payload size limit, refused at send time --------------------------------------------------


@override_settings(RQ_SIGNALS={"MAX_PAYLOAD_BYTES": 1024})
def test_a_payload_over_the_size_limit_is_refused_at_send_time_naming_the_receiver(connection):
    invoice = Invoice.objects.create(reference="SEC-BIG")
    too_big = pytest.raises(SerializationError, match=r"record_payment.*MAX_PAYLOAD_BYTES")
    with too_big, transaction.atomic():
        invoice_paid.send(sender="checkout", invoice=invoice, amount="9" * 4096)
    assert connection.llen("rq:queue:default") == 0


# -- dashboards: staff only, and a permission to change anything ---------------------------------


@pytest.fixture
def failed_job(connection) -> Job:
    """A job in the failed registry of `default` (django-rq's queue index 1), and one queued there."""
    queue = queues.get_queue("default")
    queue.enqueue_call("rq_signals.jobs.run_receiver", args=("tests.receivers.record_note", "x", PAYLOAD))
    job = queue.enqueue_call(
        "rq_signals.jobs.run_receiver", args=("tests.receivers.always_fails", "x", PAYLOAD)
    )
    queue.remove(job)
    job.set_status(JobStatus.FAILED)
    queue.failed_job_registry.add(job, ttl=3600, exc_string="Flaky: cannot handle it")
    return job


def client_for(kind: str) -> Client:
    client = Client()
    if kind == "anonymous":
        return client
    user = User.objects.create_user(
        username=kind, password="pw", is_staff=kind != "member", is_superuser=kind == "superuser"
    )
    client.force_login(user)
    return client


#: POST views of django-rq that change jobs or queues, by URL name and arguments (queue index 1).
MUTATIONS = {
    "requeue one failed job": ("django_rq:requeue_job", lambda job: [1, job.id]),
    "delete a job": ("django_rq:delete_job", lambda job: [1, job.id]),
    "requeue all failed": ("django_rq:requeue_all", lambda job: [1]),
    "clear failed registry": ("django_rq:delete_failed_jobs", lambda job: [1]),
    "empty a queue": ("django_rq:clear", lambda job: [1]),
}


def untouched(job: Job, connection: redis.Redis) -> bool:
    """The failed job is still failed (not requeued or deleted) and the queued one still queued."""
    return (
        connection.zscore("rq:failed:default", job.id) is not None
        and job.get_status() == JobStatus.FAILED
        and connection.llen("rq:queue:default") == 1
    )


@pytest.mark.parametrize("kind", ["anonymous", "member"])
def test_dashboards_send_anonymous_and_non_staff_users_to_the_login_page(kind, failed_job, connection):
    client = client_for(kind)
    pages = [
        reverse("django_rq:home"),
        reverse("django_rq:failed_jobs", args=[1]),
        reverse("django_rq:job_detail", args=[1, failed_job.id]),
        "/admin/",
        "/admin/django_rq/dashboard/",
        "/admin/rq_signals/outboxentry/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith("/admin/login/"), page

    for name, args in MUTATIONS.values():
        response = client.post(reverse(name, args=args(failed_job)))
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), name
    assert untouched(failed_job, connection)


def test_the_stats_api_wants_staff_or_the_api_token(failed_job):
    response = Client().get(reverse("django_rq:home_json"))
    assert response.status_code == 401
    assert "job" not in response.content.decode().lower()


def test_staff_see_the_dashboard_and_a_superuser_can_requeue(failed_job, connection):
    staff = client_for("staff")
    assert staff.get(reverse("django_rq:home")).status_code == 200
    assert staff.get(reverse("django_rq:job_detail", args=[1, failed_job.id])).status_code == 200

    response = client_for("superuser").post(reverse("django_rq:requeue_job", args=[1, failed_job.id]))
    assert response.status_code == 302
    assert connection.lrange("rq:queue:default", 0, -1)[-1] == failed_job.id.encode()


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_staff_without_permission_cannot_change_jobs_or_queues(mutation, failed_job, connection):
    name, args = MUTATIONS[mutation]
    response = client_for("staff").post(reverse(name, args=args(failed_job)))

    assert untouched(failed_job, connection), f"{mutation}: done by a staff user without permission"
    assert response.status_code == 403


def test_staff_without_permission_cannot_act_on_selected_jobs_enqueue_or_stop(failed_job, connection):
    staff = client_for("staff")
    posts = {
        "django_rq:actions": ([1], {"action": "requeue", "job_ids": [failed_job.id]}),
        "django_rq:enqueue_job": ([1, failed_job.id], {}),
        "django_rq:stop_job": ([1, failed_job.id], {}),
    }
    for name, (args, data) in posts.items():
        assert staff.post(reverse(name, args=args), data).status_code == 403, name
    assert untouched(failed_job, connection)


def test_the_dashboard_in_the_admin_wants_the_permission_too(failed_job, connection):
    response = client_for("staff").post(reverse("admin:django_rq_requeue_job", args=[1, failed_job.id]))

    assert untouched(failed_job, connection), "requeued through the admin by a staff user without permission"
    assert response.status_code == 403


def test_staff_with_the_manage_jobs_permission_can_requeue(failed_job, connection):
    # Given a staff user (not a superuser) granted rq_signals.manage_jobs
    manager = staff_with("manage_jobs")

    # When they press Requeue on the failed job
    response = manager.post(reverse("django_rq:requeue_job", args=[1, failed_job.id]))

    # Then it is back on its queue, as for a superuser
    assert response.status_code == 302
    assert connection.lrange("rq:queue:default", 0, -1)[-1] == failed_job.id.encode()


def test_staff_without_the_permission_still_see_every_read_only_page(failed_job):
    staff = client_for("staff")
    pages = [reverse("django_rq:home"), reverse("django_rq:home_json")]
    pages += [
        reverse(f"django_rq:{name}", args=[1])
        for name in ("jobs", "queue_details", "finished_jobs", "failed_jobs", "scheduled_jobs")
        + ("started_jobs", "deferred_jobs", "workers")
    ]
    pages.append(reverse("django_rq:job_detail", args=[1, failed_job.id]))
    for page in pages:
        assert staff.get(page).status_code == 200, page


def test_every_django_rq_view_but_the_read_only_ones_wants_the_permission():
    import django_rq.urls

    from rq_signals import dashboard
    from rq_signals import urls as gated_urls

    # django-rq's views are exactly the read-only ones and these (a new one fails here, and is gated)
    names = {pattern.name for pattern in django_rq.urls.urlpatterns}
    assert names - dashboard.READ_ONLY == {
        "delete_failed_jobs",
        "clear",
        "requeue_all",
        "delete_job",
        "requeue_job",
        "enqueue_job",
        "stop_job",
        "confirm_action",
        "actions",
    }
    overview = {"receivers", "receivers_json", "receivers_requeue", "receivers_delete"}
    metrics = "rq_signals_metrics"  # staff or the metrics token (tests/app/test_metrics.py): reads only
    assert dashboard.READ_ONLY - names <= {"metrics", "receivers", "receivers_json"}  # metrics: prometheus
    # and rq_signals.urls keeps every path and name, gating all views but the read-only ones
    theirs_and_ours = [
        pattern for pattern in gated_urls.urlpatterns if pattern.name not in overview | {metrics}
    ]
    for theirs, ours in zip(django_rq.urls.urlpatterns, theirs_and_ours, strict=True):
        assert (str(ours.pattern), ours.name) == (str(theirs.pattern), theirs.name)
        gated = getattr(ours.callback, "required_permission", None) == dashboard.MANAGE_PERMISSION
        assert gated == (ours.name not in dashboard.READ_ONLY), ours.name
    # the overview's actions are gated too, its pages are not
    for pattern in gated_urls.urlpatterns:
        if pattern.name in overview:
            gated = getattr(pattern.callback, "required_permission", None) == dashboard.MANAGE_PERMISSION
            assert gated == (pattern.name not in dashboard.READ_ONLY), pattern.name
    [metrics_page] = [pattern for pattern in gated_urls.urlpatterns if pattern.name == metrics]
    assert getattr(metrics_page.callback, "required_permission", None) is None
    assert gated_urls.app_name == "django_rq"


@pytest.fixture
def outbox_row() -> OutboxEntry:
    from django.utils import timezone

    OutboxEntry.objects.bulk_create(  # no model signal for the row
        [OutboxEntry(job_id="job-1", queue="default", receiver="r", data="{}", created_at=timezone.now())]
    )
    return OutboxEntry.objects.get(job_id="job-1")


def staff_with(*codenames: str) -> Client:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user(username="clerk", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="rq_signals", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_outbox_admin_wants_the_view_permission_and_is_read_only(outbox_row):
    changelist = "/admin/rq_signals/outboxentry/"
    change = f"/admin/rq_signals/outboxentry/{outbox_row.pk}/change/"
    delete = f"/admin/rq_signals/outboxentry/{outbox_row.pk}/delete/"

    # Staff without the permission are refused
    assert client_for("staff").get(changelist).status_code == 403

    # Staff who may view see the rows, but cannot add, change or delete one
    viewer = staff_with("view_outboxentry")
    assert viewer.get(changelist).status_code == 200
    assert viewer.get(change).status_code == 200  # read-only view
    assert viewer.post(change, {"queue": "high"}).status_code == 403
    assert viewer.get("/admin/rq_signals/outboxentry/add/").status_code == 403
    assert viewer.post(delete, {"post": "yes"}).status_code == 403
    assert OutboxEntry.objects.get(pk=outbox_row.pk).queue == "default"


# -- Redis with a password: works, and the password is never logged ------------------------------


@pytest.fixture
def secret_redis() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD).start()
    rq_queues = {name: {"URL": server.url, "DEFAULT_TIMEOUT": 60} for name in QUEUE_NAMES}
    try:
        with override_settings(RQ_QUEUES=rq_queues):
            yield server
    finally:
        queues.reset()
        server.cleanup()


def database_env() -> dict[str, str]:
    """PostgreSQL: a worker subprocess must use pytest-django's test database, which it cannot guess."""
    return {"RQ_SIGNALS_TEST_DB_NAME": str(db_connection.settings_dict["NAME"])}


def burst_worker(url: str, tmp_path: Path, *extra: str) -> str:
    """A `manage.py rqworker --burst` on `url` (logging at DEBUG); its output, which must not fail."""
    args = [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqworker", "--burst", "-v", "3"]
    args += ["--worker-class", "worker.SimpleRetryWorker", *extra, *QUEUE_NAMES]
    env = {
        "RQ_SIGNALS_TEST_REDIS_URL": url,
        "RQ_SIGNALS_TEST_DB_NAME": str(db_connection.settings_dict["NAME"]),
    }
    proc = Proc(args, env=env, log_path=tmp_path / f"worker-{len(list(tmp_path.glob('worker-*')))}.log")
    code = proc.wait(60)
    output = proc.log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    return output


def test_a_redis_url_with_a_password_works_and_the_password_is_never_logged(secret_redis, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    # A client without the password is refused: the server really wants it
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=secret_redis.port).ping()

    # Given a worker on the password-protected Redis, which runs a note sent there
    worker = Proc(
        [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqworker", "-v", "3", *QUEUE_NAMES],
        env={"RQ_SIGNALS_TEST_REDIS_URL": secret_redis.url, **database_env()},
        log_path=tmp_path / "worker.log",
    )
    try:
        invoice_noted.send(sender="security", note="hello")
        wait_until(
            lambda: Effect.objects.filter(receiver="record_note", key="security").exists(),
            timeout=60,
            what="the worker to run the note",
        )

        # When Redis goes away and comes back: the worker reconnects, a send falls back to the
        # outbox, a relay pass fails, a worker started meanwhile cannot reach Redis
        secret_redis.stop()
        wait_until(lambda: "Redis unavailable" in worker.output(), timeout=30, what="the worker to notice")
        invoice_noted.send(sender="security", note="while down")
        from rq_signals.relay import relay_once

        assert not relay_once(using="default").ok
        late = Proc(
            [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqworker", "--burst", *QUEUE_NAMES],
            env={"RQ_SIGNALS_TEST_REDIS_URL": secret_redis.url},
            log_path=tmp_path / "worker-late.log",
        )
        late.wait(60)
        secret_redis.start()
        wait_until(lambda: "reachable again" in worker.output(), timeout=30, what="the worker to reconnect")
    finally:
        worker.stop()

    # Then the password appears in no log, no outbox row, no error
    texts = {
        "worker log": worker.log_path.read_text(errors="replace"),
        "log of a worker started while Redis was down": late.log_path.read_text(errors="replace"),
        "app log": caplog.text,
        "outbox rows": repr(list(OutboxEntry.objects.values())),
    }
    assert "ConnectionError" in caplog.text  # the failures were logged, so there was something to leak
    for where, text in texts.items():
        assert PASSWORD not in text, f"the Redis password appears in the {where}"


# -- rediss:// -----------------------------------------------------------------------------------


class TlsRedisServer(RedisServer):
    """redis-server serving TLS only (``--port 0``) on `port`, with a certificate for 127.0.0.1."""

    def __init__(self, certs: Path, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.certs = certs

    @property
    def url(self) -> str:
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.certs / 'ca.crt'}"

    def command(self) -> list[str]:
        args = super().command()
        args[args.index("--port") + 1] = "0"
        return [
            *args,
            *("--tls-port", str(self.port), "--tls-auth-clients", "no"),
            *(
                "--tls-cert-file",
                str(self.certs / "server.crt"),
                "--tls-key-file",
                str(self.certs / "server.key"),
            ),
            *("--tls-ca-cert-file", str(self.certs / "ca.crt")),
        ]

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.AuthenticationError:
            return True
        except (redis.RedisError, OSError):
            return False


def make_certificates(folder: Path) -> None:
    """A throwaway CA and a server certificate for IP 127.0.0.1, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("rediss:// needs the openssl command to make a test certificate")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rq-signals test CA",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", "ca.key",
        "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out",
        "server.csr")  # fmt: skip
    # Python 3.13 verifies with VERIFY_X509_STRICT: key usages and the Authority Key Identifier too
    (folder / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nauthorityKeyIdentifier=keyid,issuer\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
        "1", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip


@pytest.fixture
def tls_redis(tmp_path) -> Iterator[TlsRedisServer]:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    server = TlsRedisServer(certs, password=PASSWORD)
    try:
        server.start()
    except RuntimeError as exc:  # a redis-server built without TLS refuses the --tls-* options
        server.cleanup()
        pytest.skip(f"this redis-server cannot serve TLS: {exc}")
    rq_queues = {name: {"URL": server.url, "DEFAULT_TIMEOUT": 60} for name in QUEUE_NAMES}
    try:
        with override_settings(RQ_QUEUES=rq_queues):
            yield server
    finally:
        queues.reset()
        server.cleanup()


def test_a_rediss_url_carries_jobs_over_verified_tls(tls_redis, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    # The server speaks TLS only, with a certificate a client checks against our CA
    plain = f"redis://:{PASSWORD}@127.0.0.1:{tls_redis.port}/0"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(plain, socket_timeout=2).ping()
    unverified = tls_redis.url.split("?")[0]  # the system's CAs do not know ours
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(unverified, socket_timeout=2).ping()

    # A note sent over rediss:// is run by a worker connected over rediss://
    invoice_noted.send(sender="tls", note="over TLS")
    output = burst_worker(tls_redis.url, tmp_path)

    assert Effect.objects.filter(receiver="record_note", key="tls").exists(), output[-2000:]
    assert PASSWORD not in output and PASSWORD not in caplog.text
    wait_until(lambda: Effect.objects.filter(key="tls").count() == 1, timeout=5, what="exactly one run")
