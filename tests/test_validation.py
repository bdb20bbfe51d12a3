"""Bad input fails the job before any request, with one message naming every problem and where it is."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import pytest
import respx
from conftest import API_KEY, US
from script_calls import BOTH, attempt, body_for

CONVERSATION = "57c8d2b365f7cc14004e674f"
VALID: dict[str, Any] = {"channel": "email", "app": "postmark", "direction": "in", "conversation": CONVERSATION}


@pytest.fixture
def kustomer_api() -> Iterator[respx.Router]:
    """Kustomer stand-in that accepts everything; the tests here check it is never called."""
    with respx.mock(base_url=US, assert_all_called=False) as router:
        router.post("/v1/messages").respond(201, json={"data": {"id": "m1"}})
        router.post("/v1/messages/bulk").respond(200, json={"data": {"id": "b1"}})
        yield router


_KEY_ONLY = {"apiKey": API_KEY}


def create_problems(body: Any, auth: Any = _KEY_ONLY) -> str:
    """The error text create_message gives for `body`; fails the test if anything was sent."""
    with respx.mock(base_url=US, assert_all_called=False) as router:
        route = router.post("/v1/messages").respond(201, json={})
        with pytest.raises(create_message.KustomerInputError) as failure:
            create_message.main(auth, body)
        assert route.call_count == 0, "a request was sent despite bad input"
    text = str(failure.value)
    assert text.startswith("Nothing was sent to Kustomer: the input has ")
    return text


def bulk_problems(body: Any) -> str:
    with respx.mock(base_url=US, assert_all_called=False) as router:
        route = router.post("/v1/messages/bulk").respond(200, json={})
        with pytest.raises(bulk_create_messages.KustomerInputError) as failure:
            bulk_create_messages.main({"apiKey": API_KEY}, body)
        assert route.call_count == 0, "a request was sent despite bad input"
    return str(failure.value)


def with_fields(**fields: Any) -> dict[str, Any]:
    return {**VALID, **fields}


# ---- what passes ----


@pytest.mark.parametrize(
    "body",
    [
        VALID,
        with_fields(lang=None),  # the one field Kustomer lets be null
        with_fields(attachments=["57c8d2b01a57ed1400392073", "57c8d2b01a57ed1400392074"]),
        with_fields(
            attachments=[{"_id": CONVERSATION, "name": "a.pdf", "contentType": "application/pdf", "contentLength": 3}]
        ),
        with_fields(queue={"external": "amazon-connect"}),
        with_fields(queue={"id": CONVERSATION}),
        with_fields(sentiment={"polarity": -1, "confidence": 0.5}),
        with_fields(sentAt="2024-05-01T12:30:00.123+02:00", importedAt="2024-05-01T12:30:00Z"),
        with_fields(custom={"orderNumberStr": "A-1"}, meta={"from": "a@example.com"}),
        with_fields(location={"countryCode": "FR", "latitude": 48.8, "longitude": 2.35}),
        with_fields(error={"status": 550, "code": "bounced", "source": {"x": 1}}),
    ],
)
def test_valid_message_is_sent_unchanged(body: dict[str, Any], kustomer_api: respx.Router) -> None:
    assert create_message.main({"apiKey": API_KEY}, dict(body)) == {"data": {"id": "m1"}}
    assert kustomer_api.calls.last.request.content.decode() != ""
    import json

    assert json.loads(kustomer_api.calls.last.request.content) == body


def test_bulk_item_needs_no_direction(kustomer_api: respx.Router) -> None:
    bulk_create_messages.main({"apiKey": API_KEY}, [{"channel": "chat", "app": "api"}])
    assert kustomer_api.calls.call_count == 1


# ---- required fields, enums, types ----


def test_create_names_each_missing_required_field() -> None:
    text = create_problems({"conversation": CONVERSATION})
    assert "the input has 3 problems" in text
    for field in ("channel", "app", "direction"):
        assert f"- body.{field}: required, but missing" in text


def test_bulk_names_the_position_of_a_bad_channel() -> None:
    body = [dict(channel="email", app="x") for _ in range(4)]
    body[3]["channel"] = "fax"
    text = bulk_problems(body)
    assert "- body[3].channel: 'fax' is not one of email, sms, chat, facebook, twitter-dm" in text


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("direction", "inbound", "body.direction: 'inbound' is not one of in, out"),
        ("status", "delivered", "body.status: 'delivered' is not one of sent, received, error"),
        ("source", "api", "body.source: 'api' is not one of bulk, satisfaction"),
        ("size", "12", "body.size: must be a number, got a string '12'"),
        ("size", True, "body.size: must be a number, got a boolean true"),
        ("auto", "yes", "body.auto: must be true or false, got a string 'yes'"),
        ("app", 7, "body.app: must be a string, got a number 7"),
        ("subject", None, "body.subject: must be a string, got null"),
        ("shortcuts", "57c8d2b01a57ed1400392073", "body.shortcuts: must be a list of strings, got a string"),
        ("meta", [], "body.meta: must be an object, got a list []"),
    ],
)
def test_wrong_type_or_value_is_named(field: str, value: Any, expected: str) -> None:
    assert expected in create_problems(with_fields(**{field: value}))


# ---- length limits ----


@pytest.mark.parametrize(("field", "limit"), [("subject", 256), ("externalId", 256), ("preview", 10240), ("lang", 100)])
def test_string_length_limits(field: str, limit: int, kustomer_api: respx.Router) -> None:
    create_message.main({"apiKey": API_KEY}, with_fields(**{field: "x" * limit}))  # the limit itself is fine
    assert f"body.{field}: {limit + 1} characters, at most {limit} allowed" in create_problems(
        with_fields(**{field: "x" * (limit + 1)})
    )


def test_location_limits() -> None:
    text = create_problems(with_fields(location={"countryCode": "USA", "zipCode": "9" * 31, "latitude": "48"}))
    assert "body.location.countryCode: 3 characters, at most 2 allowed" in text
    assert "body.location.zipCode: 31 characters, at most 30 allowed" in text
    assert "body.location.latitude: must be a number" in text
    assert "body.location.countryCode: 1 characters, at least 2 needed" in create_problems(
        with_fields(location={"countryCode": "U"})
    )


# ---- nested shapes ----


def test_reference_needs_message_and_type() -> None:
    text = create_problems(with_fields(reference={"type": "reply-all", "msg": CONVERSATION}))
    assert "body.reference.message: required, but missing" in text
    assert "body.reference.type: 'reply-all' is not one of reply, replyAll, forward" in text
    assert "body.reference.msg: unknown field" in text


def test_sentiment_bounds() -> None:
    text = create_problems(with_fields(sentiment={"polarity": 2, "confidence": 1.5}))
    assert "body.sentiment.polarity: 2 is not one of -1, 0, 1" in text
    assert "body.sentiment.confidence: 1.5 is above the maximum 1" in text
    assert "body.sentiment.confidence: required, but missing" in create_problems(with_fields(sentiment={"polarity": 0}))


def test_attachment_object_needs_its_four_fields() -> None:
    text = create_problems(with_fields(attachments=[{"_id": CONVERSATION, "name": "a.pdf"}]))
    assert "body.attachments[0].contentType: required, but missing" in text
    assert "body.attachments[0].contentLength: required, but missing" in text


def test_attachment_ids_must_be_ids_and_unique() -> None:
    text = create_problems(with_fields(attachments=[CONVERSATION, CONVERSATION, "file.pdf"]))
    assert "body.attachments[1]: repeats body.attachments[0]; items must be unique" in text
    assert "body.attachments[2]: 'file.pdf' is not a Kustomer id (24 hexadecimal characters)" in text


def test_meta_and_custom_have_at_most_100_keys(kustomer_api: respx.Router) -> None:
    hundred = {f"k{i}Str": "v" for i in range(100)}
    create_message.main({"apiKey": API_KEY}, with_fields(meta=hundred, custom=hundred))
    text = create_problems(with_fields(meta={**hundred, "x": 1}, custom={**hundred, "yStr": "v"}))
    assert "body.meta: 101 keys, at most 100 allowed" in text
    assert "body.custom: 101 keys, at most 100 allowed" in text


def test_error_object_rejects_unknown_keys() -> None:
    assert "body.error.reason: unknown field" in create_problems(with_fields(error={"reason": "x"}))


def test_queue_needs_id_or_external() -> None:
    assert "body.queue.id: required, but missing" in create_problems(with_fields(queue={}))
    assert "body.queue.external: 'genesys' is not one of amazon-connect" in create_problems(
        with_fields(queue={"external": "genesys"})
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("yesterday", "expected YYYY-MM-DDTHH:MM:SS and a time zone"),
        ("01/05/2024 12:30", "expected YYYY-MM-DDTHH:MM:SS and a time zone"),
        ("2024-05-01", "a date without a time: add a time and zone, like T00:00:00Z"),
        ("2024-05-01T12:30:00", "no time zone: add Z or an offset such as +02:00"),
        ("2024-05-01T12:30Z", "no seconds: write the time as HH:MM:SS"),
        ("2024-05-01 12:30:00Z", "join the date and the time with T, not a space"),
        ("2024-05-01T12:30:00+0200", "write the offset as +HH:MM"),
        ("2024-05-01T12:30:00 Z", "no space before the time zone"),
        ("2024-05-01T12:30:00 +02:00", "no space before the time zone"),
        ("2024-05-01T12:30:00,5Z", "write fractions of a second after a dot, not a comma"),
        ("2024-02-30T00:00:00Z", "2024-02-30 is not a date"),
        ("2024-05-01T24:00:00Z", "24:00:00 is not a time of day"),
        ("2024-05-01T12:30:00+24:00", "+24:00 is not a time offset"),
        ("2024-05-01T12:30:60Z", "second 60 exists only at 23:59:60 UTC, a leap second"),
    ],
)
def test_dates_must_be_rfc_3339_date_times_and_the_error_says_what_is_missing(value: str, why: str) -> None:
    """The published schema's `format: date-time` is RFC 3339 section 5.6: seconds and a zone required."""
    text = create_problems(with_fields(sentAt=value))
    assert f"body.sentAt: {value!r} is not an RFC 3339 date-time ({why}), e.g. 2024-05-01T12:30:00Z" in text


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T12:30:00Z",
        "2024-05-01t12:30:00z",  # RFC 3339 allows lowercase t and z
        "2024-05-01T12:30:00.123456+02:00",
        "2024-02-29T00:00:00-05:30",
        "2016-12-31T23:59:60Z",  # a leap second
        "2017-01-01T00:59:60+01:00",  # the same leap second, in another zone
    ],
)
def test_rfc_3339_date_times_pass(value: str, kustomer_api: respx.Router) -> None:
    create_message.main({"apiKey": API_KEY}, with_fields(sentAt=value))
    assert json.loads(kustomer_api.calls.last.request.content)["sentAt"] == value


@pytest.mark.parametrize("field", ["conversation", "customer", "id", "createdBy", "modifiedBy"])
def test_ids_must_be_kustomer_object_ids(field: str) -> None:
    text = create_problems(with_fields(**{field: "jane@example.com"}))
    assert f"body.{field}: 'jane@example.com' is not a Kustomer id (24 hexadecimal characters)" in text


def test_an_id_with_spaces_around_it_is_told_to_lose_them() -> None:
    text = create_problems(with_fields(conversation=" 5f9a3c1e2b4d6f8a0c1e3b5d "))
    assert (
        "body.conversation: ' 5f9a3c1e2b4d6f8a0c1e3b5d ' is not a Kustomer id (24 hexadecimal characters): remove "
        "the spaces around it" in text
    )


# ---- unknown fields ----


def test_unknown_field_suggests_the_closest_known_name() -> None:
    text = create_problems({"chanel": "email", "app": "x", "direction": "in"})
    assert "body.chanel: unknown field; did you mean 'channel'?" in text
    assert "body.channel: required, but missing" in text
    assert "body.ExternalID: unknown field; did you mean 'externalId'?" in create_problems(with_fields(ExternalID="1"))


def test_unknown_field_without_a_close_name_lists_the_allowed_ones() -> None:
    text = create_problems(with_fields(priority=1))
    assert "body.priority: unknown field; allowed: id, externalId, customer, conversation" in text


def test_client_ref_belongs_to_bulk_only() -> None:
    assert "body._clientRef: unknown field" in create_problems(with_fields(_clientRef="row-1"))


# ---- the whole body ----


def test_every_problem_is_reported_at_once() -> None:
    text = create_problems({"channel": "fax", "app": 1, "subject": "s" * 300, "sentiment": {}})
    assert "the input has 6 problems" in text
    assert text.count("\n- ") == 6


def test_a_long_list_of_problems_is_cut_short() -> None:
    body = [{"channel": "fax", "app": "x"} for _ in range(60)]
    text = bulk_problems(body)
    assert "the input has 60 problems" in text
    assert "- ... and 20 more" in text
    assert len(text) < 6000


@pytest.mark.parametrize(
    ("script", "body", "expected"),
    [
        (create_message, [VALID], "body: must be an object, got a list"),
        (create_message, '"{}"', "body: must be an object, got a string"),  # JSON text of a string
        (create_message, None, "body: must be an object, got null"),
        (bulk_create_messages, VALID, "body: must be a list of 1 to 100 message objects, got an object"),
        (bulk_create_messages, [], "body: the list is empty; give 1 to 100 messages"),
        (bulk_create_messages, ["hello"], "body[0]: must be an object, got a string 'hello'"),
    ],
)
def test_body_of_the_wrong_kind(script: ModuleType, body: Any, expected: str) -> None:
    with pytest.raises(script.KustomerInputError, match="Nothing was sent") as failure:
        script.main({"apiKey": API_KEY}, body)
    assert expected in str(failure.value)


def test_nan_in_a_free_form_object_is_refused_before_sending(kustomer_api: respx.Router) -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(create_message.KustomerInputError, match=r"body\.meta\.score: .* is not a number JSON"):
            create_message.main({"apiKey": API_KEY}, with_fields(meta={"score": bad}))
        with pytest.raises(create_message.KustomerInputError, match=r"body\.custom\.scoreNum\[1\]: .* is not a number"):
            create_message.main({"apiKey": API_KEY}, with_fields(custom={"scoreNum": [1, bad]}))
    assert kustomer_api.calls.call_count == 0


def nested(depth: int, leaf: Any, kind: type = list) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind is list else {"k": value}
    return value


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"channel": nested(1000, "email")}, "body.channel: must be one of email"),
        ({"meta": nested(1000, 1, dict)}, "nested more than 32 levels deep (the limit inside body.meta)"),
        ({"custom": {"deep": nested(1000, 1)}}, "body.custom.deep"),
        ({"size": 10**5000}, "body.size: a number of about 5000 digits is too large for Kustomer"),
        ({"meta": {"n": -(10**400)}}, "body.meta.n: a number of about 400 digits is too large"),
        ({"meta": {1: "x"}}, "body.meta: has a key that is not text (a number 1)"),
        ({"location": {("a", "b"): 1}}, "body.location: has a key that is not a string (a tuple <tuple>)"),
        ({"preview": "broken \ud800 text"}, "body.preview: holds an unpaired surrogate"),
        ({"meta": {"text": "\udfff"}}, "body.meta.text: holds an unpaired surrogate"),
        ({"meta": {"broken \udfff": 1}}, "body.meta: has a key that is not text (a string 'broken \\udfff')"),
        ({"meta": {"when": object()}}, "body.meta.when: a object <object> is not a JSON value"),
        ({"attachments": nested(1000, "x")}, "body.attachments"),
    ],
    ids=[
        "deep-list-in-enum",
        "deep-meta",
        "deep-custom",
        "huge-int",
        "huge-int-in-meta",
        "int-key",
        "tuple-key",
        "surrogate",
        "surrogate-in-meta",
        "surrogate-in-a-meta-key",
        "python-object",
        "deep-attachments",
    ],
)
def test_hostile_values_are_refused_naming_their_field(
    fields: dict[str, Any], expected: str, kustomer_api: respx.Router
) -> None:
    """Whatever the value, validation ends in one KustomerInputError naming the field, never a crash."""
    with pytest.raises(create_message.KustomerInputError) as failure:
        create_message.main({"apiKey": API_KEY}, with_fields(**fields))
    assert expected in str(failure.value)
    assert len(str(failure.value)) < 2000  # a deep or huge value is shown short
    assert kustomer_api.calls.call_count == 0


@pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])
def test_a_body_given_as_json_text_nested_1000_deep_is_one_input_error(script: Any, kustomer_api: respx.Router) -> None:
    text = '{"channel": "chat", "app": "a", "meta": ' + "[" * 1200 + "]" * 1200 + "}"
    with pytest.raises(script.KustomerInputError) as failure:
        script.main({"apiKey": API_KEY}, text if script is create_message else "[" + text + "]")
    assert "body: is JSON text nested too deep to read (over about 1,000 levels)" in str(failure.value)
    assert kustomer_api.calls.call_count == 0


def test_free_form_nesting_up_to_the_limit_is_sent(kustomer_api: respx.Router) -> None:
    create_message.main({"apiKey": API_KEY}, with_fields(meta=nested(create_message.MAX_FREE_FORM_DEPTH, 1, dict)))
    assert kustomer_api.calls.call_count == 1


def test_uniqueness_is_checked_in_linear_time() -> None:
    """40,000 attachment ids took 7 s when each was compared with every earlier one."""

    ids = [f"{i:024x}" for i in range(40_000)]
    started = time.perf_counter()
    problems = create_message.schema_problems(with_fields(attachments=[*ids, ids[5]]), "body", ("channel",))
    elapsed = time.perf_counter() - started
    text = "\n".join(problems)
    assert "body.attachments[40000]: repeats body.attachments[5]; items must be unique" in text
    assert elapsed < 2, f"{elapsed:.1f} s"  # linear: well under a second on the CI machine


def test_json_equal_attachments_count_as_repeats() -> None:
    first = {"_id": CONVERSATION, "name": "a.pdf", "contentType": "application/pdf", "contentLength": 1}
    again = {"contentLength": 1.0, "contentType": "application/pdf", "name": "a.pdf", "_id": CONVERSATION}
    assert "body.attachments[1]: repeats body.attachments[0]" in create_problems(
        with_fields(attachments=[first, again])
    )


def test_a_body_far_over_kustomers_request_size_is_refused_by_its_size(kustomer_api: respx.Router) -> None:
    huge = [{"channel": "sms", "app": "x", "preview": "p" * 10_000, "bogus": i} for i in range(150)]
    with pytest.raises(bulk_create_messages.KustomerInputError) as failure:
        bulk_create_messages.main({"apiKey": API_KEY}, huge)
    text = str(failure.value)
    assert "body: over 1,000 KB of JSON; Kustomer accepts about 100 KB per request" in text
    assert "bogus" not in text  # refused by its size alone, before any field is looked at
    assert kustomer_api.calls.call_count == 0


# ---- bulk rules ----


def test_bulk_holds_at_most_100_messages() -> None:
    text = bulk_problems([{"channel": "sms", "app": "x"}] * 101)
    assert "body: 101 messages, at most 100 per request" in text
    assert "f/kustomer/import_messages" in text


def test_bulk_accepts_exactly_100(kustomer_api: respx.Router) -> None:
    bulk_create_messages.main({"apiKey": API_KEY}, [{"channel": "sms", "app": "x"}] * 100)
    assert kustomer_api.calls.call_count == 1


def test_client_ref_on_all_items_or_none() -> None:
    text = bulk_problems([{"channel": "sms", "app": "x", "_clientRef": "a"}, {"channel": "sms", "app": "x"}])
    assert "body: _clientRef is on 1 of 2 messages, not on body[1]; set it on all or none" in text


def test_client_refs_are_unique_non_empty_and_short() -> None:
    body = [{"channel": "sms", "app": "x", "_clientRef": ref} for ref in ("a", "b", "a", "", "r" * 256, 5)]
    text = bulk_problems(body)
    assert "body[2]._clientRef: 'a' repeats body[0]._clientRef; must be unique" in text
    assert "body[3]._clientRef: 0 characters, at least 1 needed" in text
    assert "body[4]._clientRef: 256 characters, at most 255 allowed" in text
    assert "body[5]._clientRef: must be a string, got a number 5" in text


# ---- the resource ----


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (None, "auth: must be a kustomer resource (an object with apiKey), got nothing (null)"),
        ({}, "auth.apiKey: missing or empty"),
        ({"apiKey": "  "}, "auth.apiKey: missing or empty"),
        ({"apiKey": "abc def"}, "auth.apiKey: contains spaces or characters not allowed"),
        ({"apiKey": API_KEY, "baseUrl": "http://api.kustomerapp.com"}, "uses plain http, which would send the API key"),
        ({"apiKey": API_KEY, "baseUrl": "ftp://api.kustomerapp.com"}, "is not an https URL"),
        (
            {"apiKey": API_KEY, "baseUrl": 3},
            "auth.baseUrl: must be a URL string such as https://api.prod2.kustomerapp.com, got a number (not shown)",
        ),
    ],
)
def test_bad_resource_is_named(auth: Any, expected: str) -> None:
    assert expected in create_problems(VALID, auth=auth)


def test_auth_and_body_problems_come_together() -> None:
    text = create_problems({"app": "x", "direction": "in"}, auth={"apiKey": ""})
    assert "auth.apiKey: missing or empty" in text
    assert "body.channel: required, but missing" in text


def test_a_key_with_a_line_break_is_never_echoed() -> None:
    text = create_problems(VALID, auth={"apiKey": "secret-part-1\nsecret-part-2"})
    assert "secret-part" not in text


def test_http_is_allowed_to_loopback_only(kustomer_api: respx.Router) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post("http://127.0.0.1:8080/v1/messages").respond(201, json={"data": {"id": "local"}})
        result = create_message.main({"apiKey": API_KEY, "baseUrl": "http://127.0.0.1:8080"}, dict(VALID))
    assert result == {"data": {"id": "local"}}
    assert route.call_count == 1


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.20", "172.16.0.9", "169.254.169.254", "[fd00::1]"])
def test_plain_http_to_an_address_that_is_not_this_machine_is_refused_even_on_a_private_network(host: str) -> None:
    """Plain http carries the key in clear text: only loopback never leaves the machine, a LAN does."""
    text = create_problems(VALID, auth={"apiKey": API_KEY, "baseUrl": f"http://{host}:8080"})
    assert "uses plain http, which would send the API key unencrypted: use https://" in text


def test_a_misspelled_resource_key_gets_a_suggestion() -> None:
    _, error = attempt(create_message, {"api_key": API_KEY})
    assert "auth.apiKey: missing; the resource has a similar key: did you mean apiKey?" in str(error)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://user:s3cr3t-pass@api.kustomerapp.com", "holds a user name or password before the host"),
        ("https://api.kustomerapp.com/?region=eu", "must be a host and nothing else"),
        ("https://api.kustomerapp.com#eu", "must be a host and nothing else"),
        ("https://api.kustomerapp.com/api/v2", "must be a host and nothing else"),
        ("https://acme.api.kustomerapp.com/v1/", "must be a host and nothing else: leave out /v1 (the scripts add it)"),
        ("https://api.kust omerapp.com", "does not name a host (and port) that can be reached"),
        ("https://%61pi.kustomerapp.com", "does not name a host (and port) that can be reached"),
        ("https://api.kustomerapp.com:99999", "does not name a host (and port) that can be reached"),
        (
            "api.kustomerapp.eu",
            "auth.baseUrl: is not a URL such as https://api.prod2.kustomerapp.com: add https:// in front of the host "
            "(not shown, in case it is a key in the wrong field)",
        ),
        (
            "localhost:8787",  # a local sandbox's address: plain http is allowed there, and only there
            "auth.baseUrl: is not a URL such as https://api.prod2.kustomerapp.com: add http:// in front of the host "
            "(not shown, in case it is a key in the wrong field)",
        ),
        (
            "s3cr3t-pass.s3cr3t-pass.s3cr3t-pass",  # no host name: its last part has digits
            "auth.baseUrl: is not a URL such as https://api.prod2.kustomerapp.com (not shown, in case it is a key in "
            "the wrong field)",
        ),
    ],
)
def test_a_base_url_with_userinfo_query_fragment_or_path_is_refused(base_url: str, expected: str) -> None:
    with respx.mock(assert_all_called=False) as api:
        _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": base_url})
    assert isinstance(error, create_message.KustomerInputError)
    assert f"auth.baseUrl: {expected}" in str(error) or expected in str(error)
    assert "s3cr3t-pass" not in str(error)
    assert api.calls.call_count == 0


@BOTH
@pytest.mark.parametrize("digits", ["２０２４-０５-０１T１２:３０:００Z", "٢٠٢٤-٠٥-٠١T١٢:٣٠:٠٠Z"])
def test_a_date_in_other_digits_than_ascii_is_refused_before_sending(script: ModuleType, digits: str) -> None:
    body = body_for(script)
    (body if isinstance(body, dict) else body[0])["sentAt"] = digits
    with respx.mock(assert_all_called=False) as api:
        _, error = attempt(script, {"apiKey": API_KEY}, body)
    assert isinstance(error, script.KustomerInputError)
    assert "sentAt" in str(error)
    assert "is not an RFC 3339 date-time" in str(error)
    assert api.calls.call_count == 0


def test_the_size_limit_counts_bytes_not_characters() -> None:
    body = [{"channel": "chat", "app": "a", "preview": "😀" * 10_240, "_clientRef": f"r{i}"} for i in range(97)]
    assert sum(len(m["preview"]) for m in body) < 1_000_000 < len(json.dumps(body, ensure_ascii=False).encode())
    with respx.mock(assert_all_called=False) as api:
        _, error = attempt(bulk_create_messages, {"apiKey": API_KEY}, body)
    assert isinstance(error, bulk_create_messages.KustomerInputError)
    assert "over 1,000 KB of JSON" in str(error)
    assert api.calls.call_count == 0
