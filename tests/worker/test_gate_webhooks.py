"""rq webhooks are HTTP requests a worker sends when a job ends: a gate decides where they may go.

A gate that limits functions sends none unless their URL is allowed (so whoever can write a job to
Redis cannot make workers call hosts of their choosing): a job carrying one fails at once, like a
job naming a function that is not allowed, and nothing is sent. Allowed URLs are sent as rq sends
them, except that a redirect is not followed, and a webhook whose path climbs out of its entry's
(``..``, ``%2e%2e``), whose URL carries a user, or which carries ``Host`` or credential headers its
entry does not name, is refused like one to a URL not allowed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from rq import Queue
from rq.job import JobStatus
from rq.webhook import Webhook

from tests.support.http_sink import Sink, serve_sink
from tests.support.processes import start_worker
from tests.worker import gated_workers, jobs
from tests.worker.retry_support import runs
from tests.worker.test_gate import GATE, assert_refused
from worker import PreforkRetryWorker
from worker.gate.gate import JobGate
from worker.serializers import JSONSerializer
from worker.workers import RetryWorker, SimpleRetryWorker

all_workers = pytest.mark.parametrize("worker_class", [SimpleRetryWorker, RetryWorker, PreforkRetryWorker])


@pytest.fixture
def json_queue(connection) -> Queue:
    return Queue("default", connection=connection, serializer=JSONSerializer)


@pytest.fixture
def sink() -> Iterator[Sink]:
    yield from serve_sink()


@pytest.fixture
def other_sink() -> Iterator[Sink]:
    """A second loopback server: where a redirect points, so nothing must arrive here."""
    yield from serve_sink()


@all_workers
def test_a_job_with_a_webhook_the_gate_does_not_allow_fails_at_once_and_nothing_is_sent(
    connection, json_queue: Queue, sink: Sink, worker_class
):
    # Given a job of an allowed function carrying a webhook to a URL the gate does not list
    url = f"{sink.url}/internal/admin"
    hostile = json_queue.enqueue(jobs.succeed, webhooks=[Webhook(url, "failed"), Webhook(url, "finished")])
    good = json_queue.enqueue(jobs.succeed)
    # When a worker behind a gate that limits functions works the queue
    worker_class([json_queue], connection=connection, job_gate=GATE).work(burst=True)
    # Then the job failed at once, naming the webhook and where to allow it, and did not run
    assert_refused(
        connection, json_queue, hostile.id, f"webhook to '{url}' is not allowed", "allowed_webhook_urls"
    )
    assert runs(connection, hostile) == 0
    # And no request was sent (the worker sends webhooks before work() returns), and the worker went on
    assert sink.paths == []
    assert good.get_status() == JobStatus.FINISHED


def test_a_webhook_under_an_allowed_url_is_sent(connection, json_queue: Queue, sink: Sink):
    gate = JobGate(("tests.worker.jobs.*",), allowed_webhook_urls=(f"{sink.url}/hooks/",))
    job = json_queue.enqueue(jobs.succeed, webhooks=[Webhook(f"{sink.url}/hooks/done", "finished")])
    SimpleRetryWorker([json_queue], connection=connection, job_gate=gate).work(burst=True)
    assert job.get_status() == JobStatus.FINISHED
    assert sink.received.wait(10)
    assert sink.paths == ["/hooks/done"]


def test_allowed_webhook_urls_match_scheme_host_port_and_path_prefix():
    gate = JobGate(("*",), allowed_webhook_urls=("https://hooks.example.com/rq/",))
    assert gate.allows_webhook("https://hooks.example.com/rq/job-done")
    assert gate.allows_webhook("https://HOOKS.example.com/rq/")
    assert not gate.allows_webhook("http://hooks.example.com/rq/job-done")  # scheme
    assert not gate.allows_webhook("https://hooks.example.com.evil.test/rq/x")  # host
    assert not gate.allows_webhook("https://hooks.example.com:8443/rq/x")  # port
    assert not gate.allows_webhook("https://hooks.example.com/admin")  # path
    assert not gate.allows_webhook("https://user@hooks.example.com:bad/rq/")  # unparsable port


def test_by_default_webhooks_go_anywhere_only_when_every_function_is_allowed():
    assert JobGate(("*",)).allows_webhook("http://169.254.169.254/latest/meta-data")
    assert not JobGate(("shop.*",)).allows_webhook("http://169.254.169.254/latest/meta-data")
    assert JobGate(("shop.*",), allowed_webhook_urls=("*",)).allows_any_webhook
    assert not JobGate(("*",), accept_pickle=True, allowed_webhook_urls=()).is_open


@pytest.mark.parametrize("urls", [("ftp://host/x",), ("hooks.example.com",), ("",), "https://a.test/", (3,)])
def test_a_gate_refuses_webhook_entries_that_are_not_http_urls(urls):
    with pytest.raises(ValueError, match="allowed_webhook_urls must be http"):
        JobGate(("*",), allowed_webhook_urls=urls)


def test_rqs_cleanup_of_a_forged_abandoned_job_sends_no_webhook_the_gate_refuses(
    connection, json_queue: Queue, sink: Sink
):
    # Given a forged job hash that looks abandoned (STARTED, expired in the started registry) and
    # carries a webhook, which rq's cleanup sends for the abandoned jobs it fails
    job = json_queue.enqueue(jobs.succeed, webhooks=[Webhook(f"{sink.url}/forged", "failed")])
    json_queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    connection.zadd(json_queue.started_job_registry.key, {f"{job.id}:forged-execution": 1})
    # When a worker behind the gate runs rq's registry maintenance
    SimpleRetryWorker([json_queue], connection=connection, job_gate=GATE).clean_registries()
    # Then the job is failed, as rq fails it, and no request was sent
    assert job.id in json_queue.failed_job_registry
    assert sink.paths == []


def test_a_path_that_climbs_out_of_its_entry_or_a_url_with_a_user_is_not_allowed():
    gate = JobGate(("*",), allowed_webhook_urls=("https://hooks.example.com/rq/",))
    assert gate.allows_webhook("https://hooks.example.com/rq/a%20b/done")
    for url in (
        "https://hooks.example.com/rq/../admin/secret",
        "https://hooks.example.com/rq/%2e%2e/admin/secret",
        "https://hooks.example.com/rq/%2E%2E%2Fadmin",
        "https://hooks.example.com/rq/%252e%252e/admin",  # decoded twice by a proxy and a server
        "https://hooks.example.com/rq/./x",
        "https://hooks.example.com/rq/..\\admin",
        "https://admin:pw@hooks.example.com/rq/x",
    ):
        assert not gate.allows_webhook(url), url


def test_a_gate_takes_entries_naming_the_guarded_headers_sent_there():
    entry = {"url": "https://hooks.example.com/auth/", "headers": ["Authorization"]}
    gate = JobGate(("*",), allowed_webhook_urls=("https://hooks.example.com/rq/", entry))
    assert hash(gate)  # a dict entry is kept as a WebhookTarget: gated_job_class keys on the gate
    with pytest.raises(ValueError, match="allowed_webhook_urls must be http"):
        JobGate(("*",), allowed_webhook_urls=({"url": "https://a.test/", "header": ["Cookie"]},))


GATED_WORKERS = {
    "RetryWorker": gated_workers.GatedRetryWorker,
    "SimpleRetryWorker": gated_workers.GatedSimpleRetryWorker,
    "PreforkRetryWorker": gated_workers.GatedPreforkRetryWorker,
}


def run_gated_worker(redis_url, tmp_path, worker_class: str, allowed: list[object]) -> str:
    """A burst `rq worker` subprocess of `worker_class` behind a gate allowing `allowed`; its log."""
    cls = GATED_WORKERS[worker_class]
    proc = start_worker(
        redis_url,
        ["default"],
        tmp_path=tmp_path,
        worker_class=f"{cls.__module__}.{cls.__qualname__}",
        burst=True,
        env={gated_workers.ALLOWED_WEBHOOK_URLS_ENV: json.dumps(allowed)},
    )
    assert proc.wait(60) == 0, proc.output()[-3000:]
    return proc.output()


@pytest.mark.parametrize("worker_class", sorted(GATED_WORKERS))
def test_a_redirect_from_an_allowed_url_is_not_followed(
    connection, redis_url, json_queue: Queue, sink: Sink, other_sink: Sink, tmp_path, worker_class
):
    # Given an allowed webhook URL that answers 302, pointing at another port on the host
    sink.redirects["/rq/done"] = f"{other_sink.url}/admin/secret"
    job = json_queue.enqueue(jobs.succeed, webhooks=[Webhook(f"{sink.url}/rq/done", "finished")])
    # When a worker runs the job and sends its webhook
    log = run_gated_worker(redis_url, tmp_path, worker_class, [f"{sink.url}/rq/"])
    # Then the allowed URL is asked, and the redirect's target never is
    assert job.get_status() == JobStatus.FINISHED
    assert sink.paths == ["/rq/done"]
    assert other_sink.paths == []
    assert f"answered 302, redirecting to '{other_sink.url}/admin/secret'; not followed" in log


@pytest.mark.parametrize("worker_class", sorted(GATED_WORKERS))
def test_webhooks_climbing_out_of_their_entry_or_carrying_credentials_fail_at_once(
    connection, redis_url, json_queue: Queue, sink: Sink, tmp_path, worker_class
):
    # Given jobs whose webhooks pass a naive prefix check, or carry a Host or credential header
    hostile = [
        ("'..' path segment", Webhook(f"{sink.url}/rq/../admin/secret", "finished")),
        ("'..' path segment", Webhook(f"{sink.url}/rq/%2e%2e/admin/secret", "finished")),
        ("header(s) Authorization", Webhook(f"{sink.url}/rq/x", "finished", headers={"Authorization": "t"})),
        ("header(s) Host", Webhook(f"{sink.url}/rq/x", "finished", headers={"Host": "internal.example"})),
        ("header(s) Cookie", Webhook(f"{sink.url}/auth/x", "finished", headers={"Cookie": "session=1"})),
    ]
    refused = [(text, json_queue.enqueue(jobs.succeed, webhooks=[hook])) for text, hook in hostile]
    # ... and one whose Authorization header goes where an entry names it
    credentialed = json_queue.enqueue(
        jobs.succeed,
        webhooks=[Webhook(f"{sink.url}/auth/done", "finished", headers={"Authorization": "Bearer ok"})],
    )
    # When a worker works the queue
    entry = {"url": f"{sink.url}/auth/", "headers": ["Authorization"]}
    run_gated_worker(redis_url, tmp_path, worker_class, [f"{sink.url}/rq/", entry])
    # Then each hostile job failed at once, naming what was wrong, and did not run
    for text, job in refused:
        assert_refused(connection, json_queue, job.id, text, "webhook to")
        assert runs(connection, job) == 0
    # ... and only the credentialed webhook was sent, with its header
    assert credentialed.get_status() == JobStatus.FINISHED
    assert sink.paths == ["/auth/done"]
    assert sink.headers["/auth/done"]["Authorization"] == "Bearer ok"


@pytest.mark.parametrize("worker_class", sorted(GATED_WORKERS))
def test_a_guarded_header_name_disguised_with_a_space_or_bad_characters_fails_at_once(
    connection, redis_url, json_queue: Queue, sink: Sink, tmp_path, worker_class
):
    # Given jobs whose webhook to an allowed URL carries Authorization under a name that is not a
    # plain header name: urllib sends "Authorization : ..." for the first, which servers may honour
    disguised = ["Authorization ", " Authorization", "Authorization:", "Author\tization", "Authorizätion"]
    refused = [
        (
            name,
            json_queue.enqueue(
                jobs.succeed, webhooks=[Webhook(f"{sink.url}/rq/x", "finished", headers={name: "t"})]
            ),
        )
        for name in disguised
    ]
    # ... and one whose header name differs from the entry's only in case
    credentialed = json_queue.enqueue(
        jobs.succeed,
        webhooks=[Webhook(f"{sink.url}/auth/done", "finished", headers={"AUTHORIZATION": "Bearer ok"})],
    )
    # When a worker behind a gate allowing the URL, and Authorization under /auth/ only, works the queue
    entry = {"url": f"{sink.url}/auth/", "headers": ["authorization"]}
    run_gated_worker(redis_url, tmp_path, worker_class, [f"{sink.url}/rq/", entry])
    # Then each disguised one failed at once, naming the header, did not run, and nothing was sent for it
    for name, job in refused:
        assert_refused(connection, json_queue, job.id, f"header name {name!r}", "not an HTTP token")
        assert runs(connection, job) == 0
    assert credentialed.get_status() == JobStatus.FINISHED
    assert sink.paths == ["/auth/done"]


def test_header_names_are_compared_stripped_and_case_folded_and_must_be_tokens():
    entry = {"url": "https://hooks.example.com/auth/", "headers": ["Authorization"]}
    gate = JobGate(("*",), allowed_webhook_urls=("https://hooks.example.com/rq/", entry))
    assert gate._webhook_refusal("https://hooks.example.com/auth/x", {"aUTHORIZATION": "t"}) is None
    assert "header(s) COOKIE" in (
        gate._webhook_refusal("https://hooks.example.com/auth/x", {"COOKIE": "c"}) or ""
    )
    for name in ("Authorization ", "Host\r\nX", "", "Auth\x00"):
        assert "is not an HTTP token" in (
            gate._webhook_refusal("https://hooks.example.com/rq/x", {name: "t"}) or ""
        )
    with pytest.raises(ValueError, match="allowed_webhook_urls must be http"):
        JobGate(("*",), allowed_webhook_urls=({"url": "https://a.test/", "headers": ["Cookie "]},))
