"""`manage.py check` reports bad configuration by id: one test per check id."""

from __future__ import annotations

import pytest
from django.test import override_settings

from rq_signals import Backoff, async_receiver, checks
from tests.receivers import invoice_noted


def ids(messages):
    return [message.id for message in messages]


def typo_queue_receiver(sender, **kwargs):
    pass


def test_the_test_settings_pass_every_check():
    everything = checks.check_settings() + checks.check_receiver_queues() + checks.check_worker_class()
    assert everything + checks.check_dashboard_serializers() + checks.check_retry_policies() == []


@pytest.mark.usefixtures("forget_registrations")
def test_e001_a_receiver_queue_missing_from_rq_queues():
    async_receiver(invoice_noted, queue="hihg")(typo_queue_receiver)

    [message] = checks.check_receiver_queues()

    assert message.id == "rq_signals.E001"
    assert message.msg == (
        "receiver tests.app.test_checks.typo_queue_receiver names queue 'hihg', which is not in RQ_QUEUES."
    )


def test_e001_a_default_queue_missing_from_rq_queues_names_the_setting():
    with override_settings(RQ_SIGNALS={"DEFAULT_QUEUE": "normal"}):
        messages = checks.check_receiver_queues()

    assert set(ids(messages)) == {"rq_signals.E001"}
    assert 'RQ_SIGNALS["DEFAULT_QUEUE"]' in messages[0].msg


def test_e002_an_unknown_key_or_a_setting_that_is_not_a_dict():
    with override_settings(RQ_SIGNALS={"DEFAULT_QEUE": "high", "EAGER": False}):
        assert ids(checks.check_settings()) == ["rq_signals.E002"]
        assert "RQ_SIGNALS['DEFAULT_QEUE']" in checks.check_settings()[0].msg
    with override_settings(RQ_SIGNALS=["EAGER"]):
        assert ids(checks.check_settings()) == ["rq_signals.E002"]


def test_e003_a_value_of_the_wrong_type():
    bad = {
        "ACCEPT_PICKLE": "yes",
        "ALLOWED_JOB_FUNCTIONS": "shop.jobs.*",  # a string, not a list of them
        "ALLOWED_WEBHOOK_URLS": ["hooks.example.com"],  # no scheme
        "DEFAULT_QUEUE": 1,
        "DEFAULT_RETRY": {"max_retries": 3},
        "EAGER": "yes",
        "FLUSH": "later",
        "MAX_JOB_DATA_BYTES": "1 MiB",
        "MAX_JOB_META_BYTES": -1,
        "MAX_PAYLOAD_BYTES": 0,
        "MISSING_INSTANCE": "ignore",
        "OUTBOX": True,
    }
    with override_settings(RQ_SIGNALS=bad):
        messages = checks.check_settings()

    assert ids(messages) == ["rq_signals.E003"] * 12
    assert [message.msg.split(" must")[0] for message in messages] == [f'RQ_SIGNALS["{key}"]' for key in bad]
    with override_settings(RQ_SIGNALS={"DEFAULT_RETRY": Backoff(max_retries=1), "MISSING_INSTANCE": "fail"}):
        assert checks.check_settings() == []


def test_e003_job_size_limits_are_whole_numbers_of_bytes():
    with override_settings(RQ_SIGNALS={"MAX_JOB_DATA_BYTES": 1.5, "MAX_JOB_META_BYTES": True}):
        messages = checks.check_settings()
    assert [message.msg for message in messages] == [
        'RQ_SIGNALS["MAX_JOB_DATA_BYTES"] must be a whole number of bytes > 0, got 1.5.',
        'RQ_SIGNALS["MAX_JOB_META_BYTES"] must be a whole number of bytes > 0, got True.',
    ]
    with override_settings(RQ_SIGNALS={"MAX_JOB_DATA_BYTES": 4 * 2**20, "MAX_JOB_META_BYTES": 2**16}):
        assert checks.check_settings() == []


@pytest.mark.parametrize("entry", ["os.system()", "", "shop.*.send", 3])
def test_e003_allowed_job_functions_takes_dotted_paths_prefixes_or_a_star(entry):
    with override_settings(RQ_SIGNALS={"ALLOWED_JOB_FUNCTIONS": ["shop.jobs.send", entry]}):
        [message] = checks.check_settings()
    assert message.id == "rq_signals.E003"
    assert message.msg.startswith(
        'RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"] must be a list of dotted function paths'
    )
    good = {"ALLOWED_JOB_FUNCTIONS": ("shop.jobs.send", "reports.*", "*"), "ACCEPT_PICKLE": True}
    with override_settings(RQ_SIGNALS=good):
        assert checks.check_settings() == []


@pytest.mark.parametrize(
    "urls",
    [
        ["ftp://hooks.example.com/"],
        "https://hooks.example.com/",
        [None],
        [{"url": "https://a.test/", "headers": "Cookie"}],
    ],
)
def test_e003_allowed_webhook_urls_takes_http_urls_or_a_star(urls):
    with override_settings(RQ_SIGNALS={"ALLOWED_WEBHOOK_URLS": urls}):
        [message] = checks.check_settings()
    assert message.id == "rq_signals.E003"
    assert message.msg.startswith('RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"] must be None, or a list of http(s) URL')
    entry = {"url": "https://hooks.example.com/auth/", "headers": ["Authorization"]}
    for good in (None, ["https://hooks.example.com/rq/", "http://127.0.0.1:8000/", entry], ("*",)):
        with override_settings(RQ_SIGNALS={"ALLOWED_WEBHOOK_URLS": good}):
            assert checks.check_settings() == []


@pytest.mark.parametrize("worker_class", ["rq.worker.SimpleWorker", "rq.Worker", "no.such.Worker", None])
def test_w001_a_worker_class_that_ignores_retry_policies(worker_class):
    with override_settings(RQ={"WORKER_CLASS": worker_class} if worker_class else {}):
        assert ids(checks.check_worker_class()) == ["rq_signals.W001"]


def rq_queues(**serializers):
    """The test settings' RQ_QUEUES, each queue's SERIALIZER as given (absent: no SERIALIZER key)."""
    from django.conf import settings

    queues = {name: dict(options) for name, options in settings.RQ_QUEUES.items()}
    for options in queues.values():
        options.pop("SERIALIZER", None)
    for name, serializer in serializers.items():
        queues[name]["SERIALIZER"] = serializer
    return queues


def test_w002_a_queue_we_write_to_without_a_json_serializer_names_the_line_to_add():
    queues = rq_queues(high="rq.serializers.DefaultSerializer", low="rq.serializers.JSONSerializer")
    with override_settings(RQ_QUEUES=queues):
        messages = checks.check_dashboard_serializers()

    assert ids(messages) == ["rq_signals.W002", "rq_signals.W002"]  # default and high; low reads JSON
    default, high = messages
    assert default.msg.startswith("RQ_QUEUES['default'] has no SERIALIZER (rq's pickle), which cannot read")
    assert default.hint == 'Add "SERIALIZER": "worker.serializers.JSONSerializer" to RQ_QUEUES[\'default\'].'
    assert high.msg.startswith("RQ_QUEUES['high'] has SERIALIZER 'rq.serializers.DefaultSerializer'")
    with override_settings(RQ_QUEUES=rq_queues(), RQ_SIGNALS={"ACCEPT_PICKLE": True}):
        hints = {message.hint for message in checks.check_dashboard_serializers()}
    assert 'Add "SERIALIZER": "worker.serializers.JSONOrPickleSerializer" to RQ_QUEUES[\'low\'].' in hints


@pytest.mark.parametrize(
    "worker_class", ["worker.RetryWorker", "worker.workers.SimpleRetryWorker", "worker.PreforkRetryWorker"]
)
def test_w001_is_quiet_for_the_retry_workers(worker_class):
    with override_settings(RQ={"WORKER_CLASS": worker_class}):
        assert checks.check_worker_class() == []


def test_w003_job_data_limit_not_above_the_payload_limit():
    with override_settings(RQ_SIGNALS={"MAX_JOB_DATA_BYTES": 1024 * 1024}):
        [message] = checks.check_job_limits()
    assert message.id == "rq_signals.W003"
    assert message.msg.startswith('RQ_SIGNALS["MAX_JOB_DATA_BYTES"] is 1048576, not above')
    assert (
        message.hint
        == 'Set RQ_SIGNALS["MAX_JOB_DATA_BYTES"] to at least 2097152, or lower MAX_PAYLOAD_BYTES.'
    )
    assert checks.check_job_limits() == []
    with override_settings(RQ_SIGNALS={"MAX_JOB_DATA_BYTES": 4096, "MAX_PAYLOAD_BYTES": 1024}):
        assert checks.check_job_limits() == []


def out_of_bounds(**fields):
    """A `Backoff` as `Backoff()` no longer builds one (from an older version, or altered after)."""
    policy = Backoff()
    for name, value in fields.items():
        object.__setattr__(policy, name, value)
    return policy


def slow_receiver(sender, **kwargs):
    pass


@pytest.mark.usefixtures("forget_registrations")
def test_e004_a_receiver_retry_policy_a_worker_would_reject():
    async_receiver(invoice_noted, retry=out_of_bounds(max_delay=float("inf")))(slow_receiver)

    [message] = checks.check_retry_policies()

    assert message.id == "rq_signals.E004"
    assert message.obj == "tests.app.test_checks.slow_receiver"
    assert "max_delay" in message.msg and "inf" in message.msg


def test_e005_a_default_retry_a_worker_would_reject():
    with override_settings(RQ_SIGNALS={"DEFAULT_RETRY": out_of_bounds(max_retries=10**9)}):
        [message] = checks.check_retry_policies()

    assert message.id == "rq_signals.E005"
    assert 'RQ_SIGNALS["DEFAULT_RETRY"]' in message.msg and "max_retries" in message.msg
    with override_settings(RQ_SIGNALS={"DEFAULT_RETRY": Backoff(max_retries=1000, max_delay=365 * 86400)}):
        assert checks.check_retry_policies() == []
