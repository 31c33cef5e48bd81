"""Signal arguments travel to a job as JSON and come back equal: instances by reference, clear errors."""

from __future__ import annotations

import io
import json
import math
from collections import namedtuple
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from django.db import connections, models
from django.test import RequestFactory
from hypothesis import example, given
from hypothesis import strategies as st

from rq_signals.exceptions import MissingInstance, PayloadError, SerializationError, SkipReceiver
from rq_signals.payload import decode_arguments, decode_value, encode_arguments, encode_value
from rq_signals.values import TAG
from tests.testapp.models import Article, Customer, Order, Tag, Token
from worker import PermanentJobError

RECEIVER = "shop.receivers.send_receipt"


def send(kwargs, *, signal_name="post_save"):
    """Encode as at send time, then cross the wire as JSON text, as a job's payload does."""
    payload = encode_arguments(kwargs, signal_name=signal_name, receiver_path=RECEIVER)
    return json.loads(json.dumps(payload, allow_nan=False))


def round_trip(value):
    return decode_value(json.loads(json.dumps(encode_value(value, signal_name="x", receiver_path=RECEIVER))))


def assert_same(expected, actual):
    """Equal, of the same type all the way down (1 == 1.0 == True would hide a changed type)."""
    assert type(actual) is type(expected), (expected, actual)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            assert_same(e, a)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(expected[key], actual[key])
    elif isinstance(expected, (set, frozenset)):
        assert actual == expected
        by_value = {item: item for item in actual}
        for item in expected:
            assert_same(item, by_value[item])
    elif isinstance(expected, (datetime, time)):
        assert actual == expected
        assert actual.utcoffset() == expected.utcoffset()
        if isinstance(expected.tzinfo, ZoneInfo):
            assert (actual.tzinfo, actual.fold) == (expected.tzinfo, expected.fold)
    else:
        assert actual == expected


# -- values -------------------------------------------------------------------------------------

fixed_offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)),
)
zones = st.none() | fixed_offsets | st.timezones()


def scalars(*, allow_nan=True):
    return (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=allow_nan)
        | st.text(max_size=10)
        | st.decimals(allow_nan=False)
        | st.datetimes(timezones=zones)
        | st.dates()
        | st.times(timezones=zones)
        | st.timedeltas()
        | st.uuids()
        | st.binary(max_size=10)
    )


hashables = st.recursive(  # NaN is left out: it is not equal to itself, so a set cannot find it
    scalars(allow_nan=False), lambda inner: st.tuples(inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
reserved_keys = st.sampled_from(["__rqs__", "v", "format", "kwargs"]) | st.text(max_size=10)
values = st.recursive(
    scalars(),
    lambda inner: (
        st.lists(inner)
        | st.tuples(inner, inner)
        | st.dictionaries(reserved_keys, inner)
        | st.dictionaries(hashables, inner)
        | st.sets(hashables)
        | st.frozensets(hashables)
    ),
    max_leaves=20,
)


@given(values)
@example(
    datetime(2000, 1, 1, tzinfo=timezone(timedelta(microseconds=1)))
)  # Python 3.11's fromisoformat drops it
@example(time(1, tzinfo=timezone(-timedelta(seconds=1, microseconds=5))))
@example(datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Paris")))  # a wall time that does not exist
@example(datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")))  # the second 02:30
def test_every_supported_value_comes_back_equal_and_of_the_same_type(value):
    assert_same(value, round_trip(value))


@given(st.dictionaries(st.text(max_size=10), values, max_size=4))
def test_arguments_come_back_equal_through_strict_json(kwargs):
    assert_same(kwargs, decode_arguments(send(kwargs)))


def test_a_user_dict_that_looks_like_a_tag_stays_a_dict():
    lookalike = {"__rqs__": "decimal", "v": "1.10"}
    assert_same(lookalike, round_trip(lookalike))


def test_choices_members_travel_as_their_plain_value():
    class Status(models.TextChoices):
        PAID = "paid"

    class Level(models.IntegerChoices):
        HIGH = 3

    assert_same(["paid", 3], round_trip([Status.PAID, Level.HIGH]))


def test_a_namedtuple_travels_as_a_tuple():
    assert_same([(1, "a")], round_trip([Pair(1, "a")]))


def test_bytearray_and_memoryview_travel_as_bytes():
    assert_same([b"ab", b"cd"], round_trip([bytearray(b"ab"), memoryview(b"cd")]))


def test_the_payload_names_signal_and_receiver_and_drops_the_signal_object():
    payload = send({"signal": object(), "created": True})
    assert payload["signal"] == "post_save"
    assert payload["receiver"] == RECEIVER
    assert decode_arguments(payload) == {"created": True}


def test_model_classes_travel_as_labels():
    payload = send({"sender": Order, "model": Tag.objects.model})
    assert payload["kwargs"]["sender"] == {"__rqs__": "model_class", "v": "testapp.Order"}
    assert decode_arguments(payload) == {"sender": Order, "model": Tag}


# -- model instances ----------------------------------------------------------------------------


@pytest.fixture
def order(db):
    customer = Customer.objects.create(name="Ada")
    return Order.objects.create(
        customer=customer,
        reference="A-1",
        total=Decimal("12.50"),
        placed_at=datetime(2026, 11, 26, 7, 30, tzinfo=timezone.utc),
        ship_on=date(2026, 12, 1),
        notes={"gift": True, "__rqs__": "not a tag"},
    )


@pytest.fixture
def replica(db):
    """A second alias onto the same test database, to see that an instance keeps its alias."""
    connections.settings["replica"] = connections.settings["default"]
    connections["replica"] = connections["default"]
    yield "replica"
    del connections["replica"]
    del connections.settings["replica"]


def test_post_save_instance_is_fetched_fresh_so_the_receiver_sees_the_committed_row(order):
    payload = send({"sender": Order, "instance": order, "created": True})
    Order.objects.filter(pk=order.pk).update(total=Decimal("99.00"))

    instance = decode_arguments(payload)["instance"]

    assert type(instance) is Order
    assert instance.pk == order.pk
    assert instance.total == Decimal("99.00")
    assert not instance._state.adding
    assert instance._state.db == "default"


@pytest.mark.django_db
def test_a_row_the_default_manager_hides_is_still_fetched_as_refresh_from_db_would():
    draft = Article.objects.create(title="Draft", published=False)
    assert not Article.objects.filter(pk=draft.pk).exists()

    instance = decode_arguments(send({"instance": draft}))["instance"]

    assert (instance.pk, instance.title) == (draft.pk, "Draft")


@pytest.mark.django_db
def test_a_file_field_travels_as_its_name():
    article = Article.objects.create(title="Spec", attachment="docs/spec.pdf")
    assert article.attachment.name == "docs/spec.pdf"  # reading it puts a FieldFile in the instance

    payload = send({"instance": article}, signal_name="post_delete")

    assert payload["kwargs"]["instance"]["v"]["fields"]["attachment"] == "docs/spec.pdf"
    assert decode_arguments(payload)["instance"].attachment.name == "docs/spec.pdf"


def test_the_snapshot_holds_foreign_keys_by_id(order):
    snapshot = send({"instance": order})["kwargs"]["instance"]["v"]
    assert snapshot["label"] == "testapp.Order"
    assert snapshot["pk"] == order.pk
    assert snapshot["db"] == "default"
    assert snapshot["fields"]["customer_id"] == order.customer_id
    assert snapshot["fields"]["total"] == {"__rqs__": "decimal", "v": "12.50"}


def test_encoding_never_queries_for_deferred_fields(order, django_assert_num_queries):
    partial = Order.objects.only("reference").get(pk=order.pk)
    with django_assert_num_queries(0):
        payload = send({"instance": partial}, signal_name="post_delete")
    assert set(payload["kwargs"]["instance"]["v"]["fields"]) == {"id", "reference"}


@pytest.mark.parametrize("signal_name", ["pre_delete", "post_delete"])
def test_a_deleted_instance_is_rebuilt_from_its_snapshot(order, signal_name, django_assert_num_queries):
    payload = send({"sender": Order, "instance": order}, signal_name=signal_name)
    pk = order.pk
    order.delete()

    with django_assert_num_queries(0):
        instance = decode_arguments(payload)["instance"]

    assert instance.pk == pk
    assert (instance.reference, instance.total, instance.customer_id) == (
        "A-1",
        Decimal("12.50"),
        order.customer_id,
    )
    assert instance.placed_at == datetime(2026, 11, 26, 7, 30, tzinfo=timezone.utc)
    assert instance.ship_on == date(2026, 12, 1)
    assert instance.notes == {"gift": True, "__rqs__": "not a tag"}
    assert not instance._state.adding
    assert instance._state.db == "default"


def test_a_gone_row_skips_the_receiver_by_default_naming_model_and_pk(order):
    payload = send({"instance": order})
    Order.objects.filter(pk=order.pk).delete()

    with pytest.raises(SkipReceiver, match=rf"testapp\.Order with pk={order.pk} no longer exists") as caught:
        decode_arguments(payload)

    assert isinstance(caught.value.__cause__, MissingInstance)


def test_a_gone_row_can_be_rebuilt_from_the_snapshot(order):
    payload = send({"instance": order})
    Order.objects.filter(pk=order.pk).delete()

    instance = decode_arguments(payload, missing="snapshot")["instance"]

    assert (instance.pk, instance.reference, instance._state.db) == (order.pk, "A-1", "default")
    assert not instance._state.adding


def test_a_gone_row_can_fail_the_job_naming_model_and_pk(order):
    payload = send({"instance": order})
    Order.objects.filter(pk=order.pk).delete()

    with pytest.raises(
        MissingInstance, match=rf"testapp\.Order with pk={order.pk} no longer exists"
    ) as caught:
        decode_arguments(payload, missing="fail")

    assert (caught.value.model_label, caught.value.pk, caught.value.alias) == (
        "testapp.Order",
        order.pk,
        "default",
    )


def test_an_instance_keeps_its_database_alias(order, replica):
    on_replica = Order.objects.using(replica).get(pk=order.pk)

    fetched = decode_arguments(send({"instance": on_replica}))["instance"]
    rebuilt = decode_arguments(send({"instance": on_replica}, signal_name="post_delete"))["instance"]

    assert fetched._state.db == replica
    assert rebuilt._state.db == replica


def test_an_alias_the_worker_does_not_know_is_a_payload_error(order):
    payload = send({"instance": order})
    payload["kwargs"]["instance"]["v"]["db"] = "archive"
    with pytest.raises(
        PayloadError, match=r"argument 'instance': database alias 'archive' of testapp\.Order"
    ):
        decode_arguments(payload)


def test_m2m_changed_arguments_round_trip(order):
    tags = [Tag.objects.create(name="red"), Tag.objects.create(name="blue")]
    order.tags.add(*tags)
    kwargs = {
        "sender": Order.tags.through,
        "instance": order,
        "action": "post_add",
        "reverse": False,
        "model": Tag,
        "pk_set": {tag.pk for tag in tags},
        "using": "default",
    }

    decoded = decode_arguments(send(kwargs, signal_name="m2m_changed"))

    assert decoded["sender"] is Order.tags.through
    assert decoded["model"] is Tag
    assert decoded["pk_set"] == {tag.pk for tag in tags}
    assert set(decoded["instance"].tags.all()) == set(tags)
    assert {k: decoded[k] for k in ("action", "reverse", "using")} == {
        "action": "post_add",
        "reverse": False,
        "using": "default",
    }


@pytest.mark.django_db
def test_pre_save_may_send_an_unsaved_instance_which_comes_back_unsaved():
    draft = Order(reference="D-1", total=Decimal("3.10"))

    instance = decode_arguments(send({"instance": draft}, signal_name="pre_save"))["instance"]

    assert instance.pk is None
    assert (instance.reference, instance.total) == ("D-1", Decimal("3.10"))
    assert instance._state.adding
    assert instance._state.db is None


@pytest.mark.django_db
def test_a_uuid_keyed_instance_with_bytes_and_duration_round_trips():
    token = Token.objects.create(label="api", blob=b"\x00\xff", ttl=timedelta(minutes=5))
    token = Token.objects.get(pk=token.pk)  # as loaded: a memoryview blob on PostgreSQL

    fetched = decode_arguments(send({"instance": token}))["instance"]
    rebuilt = decode_arguments(send({"instance": token}, signal_name="post_delete"))["instance"]

    for instance in (fetched, rebuilt):
        assert isinstance(instance.pk, UUID)
        assert instance.pk == token.pk
        assert bytes(instance.blob) == b"\x00\xff"
        assert instance.ttl == timedelta(minutes=5)


@pytest.mark.django_db
def test_unknown_snapshot_fields_are_ignored_so_a_deploy_between_send_and_run_is_survivable():
    payload = send({"instance": Order(pk=7, reference="R")}, signal_name="post_delete")
    payload["kwargs"]["instance"]["v"]["fields"]["removed_column"] = 1
    assert decode_arguments(payload)["instance"].reference == "R"


# -- what cannot be sent ------------------------------------------------------------------------


Pair = namedtuple("Pair", "left right")


def a_file(tmp_path):
    return (tmp_path / "x.txt").open("w")


@pytest.mark.parametrize(
    ("argument", "make", "path", "type_name"),
    [
        ("request", lambda tmp: RequestFactory().get("/"), "request", "WSGIRequest"),
        ("orders", lambda tmp: Order.objects.all(), "orders", "QuerySet"),
        ("upload", lambda tmp: io.BytesIO(b"x"), "upload", "BytesIO"),
        ("log", a_file, "log", "TextIOWrapper"),
        ("conn", lambda tmp: connections["default"], "conn", "DatabaseWrapper"),
        ("thing", lambda tmp: object(), "thing", "object"),
        ("callback", lambda tmp: lambda: None, "callback", "function"),
        ("extra", lambda tmp: {"items": [1, 2, object()]}, "extra['items'][2]", "object"),
        ("extra", lambda tmp: {object(): 1}, "extra[<key>]", "object"),
        ("extra", lambda tmp: ({1, 2}, frozenset({object()})), "extra[1]{<item>}", "object"),
        ("extra", lambda tmp: [Pair(1, object())], "extra[0][1]", "object"),
    ],
)
def test_an_argument_that_cannot_travel_is_refused_at_send_naming_signal_receiver_argument_and_type(
    tmp_path, argument, make, path, type_name
):
    value = make(tmp_path)
    with pytest.raises(SerializationError) as caught:
        encode_arguments({"created": True, argument: value}, signal_name="post_save", receiver_path=RECEIVER)
    message = str(caught.value)
    assert message.startswith(f"post_save receiver {RECEIVER} got argument '{path}' ({type_name}), ")
    assert "cannot be sent to a job; " in message
    if hasattr(value, "close"):
        value.close()


def test_a_value_that_contains_itself_is_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(SerializationError, match=r"got argument 'extra' \(list\), which contains itself"):
        encode_arguments({"extra": loop}, signal_name="post_save", receiver_path=RECEIVER)


def test_the_request_example_reads_as_documented():
    with pytest.raises(SerializationError) as caught:
        encode_arguments(
            {"request": RequestFactory().get("/")}, signal_name="post_save", receiver_path=RECEIVER
        )
    assert str(caught.value) == (
        f"post_save receiver {RECEIVER} got argument 'request' (WSGIRequest), which cannot be sent to a job; "
        "send the values you need from it (e.g. request.user.pk) instead."
    )


@pytest.mark.parametrize("signal_name", ["pre_delete", "post_delete"])
def test_a_queryset_origin_of_a_bulk_delete_is_refused_saying_to_exclude_origin(db, signal_name):
    with pytest.raises(SerializationError) as caught:
        encode_arguments({"origin": Order.objects.all()}, signal_name=signal_name, receiver_path=RECEIVER)
    assert str(caught.value) == (
        f"{signal_name} receiver {RECEIVER} got argument 'origin' (QuerySet), which cannot be sent to a job; "
        "Django sends the QuerySet as origin when queryset.delete() runs; exclude 'origin'."
    )


def test_a_queryset_is_refused_without_running_it(db, django_assert_num_queries):
    with (
        django_assert_num_queries(0),
        pytest.raises(SerializationError, match=r"\(QuerySet\).*list\(queryset\)"),
    ):
        encode_arguments({"orders": Order.objects.all()}, signal_name="post_save", receiver_path=RECEIVER)


@pytest.mark.parametrize("signal_name", ["post_save", "post_delete", "m2m_changed"])
def test_an_unsaved_instance_is_refused_outside_pre_save(signal_name):
    with pytest.raises(SerializationError) as caught:
        encode_arguments({"instance": Order(reference="x")}, signal_name=signal_name, receiver_path=RECEIVER)
    assert str(caught.value) == (
        f"{signal_name} receiver {RECEIVER} got argument 'instance' (Order), "
        "an unsaved instance (its pk is None), which cannot be sent to a job; "
        "save it first, or send its field values."
    )


def test_a_snapshot_field_that_cannot_travel_is_named_by_its_path():
    order = Order(pk=1, reference="A", notes={"callback": print})
    with pytest.raises(
        SerializationError, match=r"got argument 'instance\.notes\['callback'\]' \(builtin_function"
    ):
        encode_arguments({"instance": order}, signal_name="post_save", receiver_path=RECEIVER)


# -- what cannot be decoded ---------------------------------------------------------------------


def payload_with(value):
    return {"format": 1, "signal": "post_save", "receiver": RECEIVER, "kwargs": {"extra": value}}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not a payload", r"^Payload: expected a JSON object, got 'not a payload'"),
        ({"format": 99, "kwargs": {}}, r"expected format 1 with a 'kwargs' object"),
        (payload_with({"__rqs__": "decimall", "v": "1"}), r"argument 'extra': unknown tag 'decimall'"),
        (payload_with({"__rqs__": "decimal", "v": "1", "x": 2}), r"exactly the keys '__rqs__' and 'v'"),
        (payload_with({"__rqs__": "decimal", "v": "one"}), r"bad 'decimal' value 'one'"),
        (
            payload_with({"__rqs__": "decimal", "v": 1}),
            r"bad 'decimal' value 1: a decimal string expected, got 1",
        ),
        (payload_with({"__rqs__": "datetime", "v": "yesterday"}), r"bad 'datetime' value 'yesterday'"),
        (payload_with({"__rqs__": "timedelta", "v": [1, 2]}), r"bad 'timedelta' value \[1, 2\]"),
        (payload_with({"__rqs__": "bytes", "v": "!!"}), r"bad 'bytes' value '!!'"),
        (payload_with({"__rqs__": "zoned_time", "v": ["10:00", "Mars/Base", 0]}), r"bad 'zoned_time' value"),
        (
            payload_with({"__rqs__": "model_class", "v": "shop.Ordr"}),
            r"names model 'shop\.Ordr', which is not",
        ),
        (
            payload_with({"__rqs__": "tuple", "v": {"a": 1}}),
            r"argument 'extra': a list for 'tuple' expected, got \{'a': 1\}",
        ),
        (
            payload_with({"__rqs__": "model", "v": {"label": "testapp.Order", "mode": "copy"}}),
            r"instance mode",
        ),
        (
            payload_with({"__rqs__": "model", "v": {"label": "nope.Order", "mode": "ref", "db": "default"}}),
            r"names model 'nope\.Order', which is not installed",
        ),
    ],
)
def test_an_undecodable_payload_is_a_permanent_payload_error_saying_what_was_wrong(payload, message):
    with pytest.raises(PayloadError, match=message) as caught:
        decode_arguments(payload)
    assert isinstance(caught.value, PermanentJobError)
    if isinstance(payload, dict) and payload.get("format") == 1:
        assert str(caught.value).startswith(f"Payload of post_save receiver {RECEIVER}: argument 'extra': ")


def test_an_unknown_missing_policy_is_refused():
    with pytest.raises(ValueError, match="missing must be 'skip', 'snapshot' or 'fail', not 'ignore'"):
        decode_arguments(payload_with(1), missing="ignore")


def test_a_set_of_ints_with_colliding_hashes_is_refused_at_once_not_built_in_quadratic_time():
    # Given a forged payload: a set of 20,000 ints that all hash to 0 (building it: ~2 s, quadratic)
    modulus = 2**61 - 1  # CPython hashes an int modulo this prime
    forged = {TAG: "set", "v": [i * modulus for i in range(20_000)]}
    # Then decoding refuses it, naming why, before building the set
    with pytest.raises(PayloadError, match=r"20000 of its 20000 items share the hash 0 \(at most 64 may\)"):
        decode_value(forged)
    # And a real set of as many ints still decodes
    assert decode_value({TAG: "set", "v": list(range(20_000))}) == set(range(20_000))


def test_a_payload_nested_900_deep_is_a_payload_error_not_a_recursion_error():
    nested: object = 1
    for _ in range(900):
        nested = [nested]
    with pytest.raises(PayloadError, match="argument 'value': nested deeper than 100"):
        decode_arguments({"format": 1, "signal": "post_save", "receiver": "r", "kwargs": {"value": nested}})
    assert issubclass(PayloadError, PermanentJobError)  # so the worker never retries it
