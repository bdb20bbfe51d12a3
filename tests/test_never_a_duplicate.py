"""Never a duplicate: a request is sent again only when none of it went out (or it is a GET); a write
whose answer was lost is an unknown outcome, settled by a lookup that proves it only by the message sent."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
from conftest import API_KEY, US, FakeTime
from hostile_server import HostileServer
from script_calls import BOTH, CONVERSATION, MESSAGE, attempt, body_for, fail, message_found, path_for, posts, run

from workbench.sandbox import Sandbox


def test_a_refused_connection_is_not_an_unknown_outcome(fake_time: FakeTime) -> None:
    with HostileServer([]) as server:
        url = server.url
    _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": url})  # nothing listens there now
    assert isinstance(error, create_message.KustomerConnectionError)
    assert "Nothing was sent, so nothing was created" in str(error)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (message_found("SM-someone-else"), "was a message with another externalId"),
        (message_found("SM-1", "aaaaaaaaaaaaaaaaaaaaaaaa"), "in another conversation"),
        ({"data": []}, "held 0 messages, not one"),
        (None, "was nothing (null), not a message"),
        ({"errors": [{"title": "nope"}]}, "not a message"),
        ({"data": {**message_found("SM-1")["data"], "type": "conversation"}}, "not a message"),
        ({"data": [message_found("SM-1")["data"]] * 2}, "held 2 messages, not one"),
    ],
    ids=["other-external-id", "other-conversation", "empty-list", "null", "errors-in-a-200", "a-conversation", "two"],
)
def test_a_lookup_proves_creation_only_by_the_message_that_was_sent(answer: Any, said: str) -> None:
    body = dict(MESSAGE, conversation=CONVERSATION)
    with respx.mock() as api:
        api.post(f"{US}/v1/messages").mock(return_value=httpx.Response(503))
        answered = httpx.Response(200, content=json.dumps(answer).encode())  # `null` too, as a body
        api.get(f"{US}/v1/messages/externalid=SM-1").mock(return_value=answered)
        _, error = attempt(create_message, {"apiKey": API_KEY}, body)
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)
    assert said in str(error)
    assert "so it proves nothing" in str(error)


def test_a_lookup_that_finds_the_message_sent_returns_it() -> None:
    body = dict(MESSAGE, conversation=CONVERSATION)
    with respx.mock() as api:
        api.post(f"{US}/v1/messages").mock(return_value=httpx.Response(503))
        api.get(f"{US}/v1/messages/externalid=SM-1").mock(return_value=httpx.Response(200, json=message_found("SM-1")))
        result, error = attempt(create_message, {"apiKey": API_KEY}, body)
    assert error is None, error
    assert result == message_found("SM-1")


def test_an_external_id_holding_a_slash_is_looked_up_as_itself_not_as_a_longer_path() -> None:
    body = dict(MESSAGE, externalId="<order/1042@mail.example>")
    with respx.mock() as api:
        api.post(f"{US}/v1/messages").mock(return_value=httpx.Response(503))
        lookup = api.get(f"{US}/v1/messages/externalid=%3Corder%2F1042%40mail.example%3E").mock(
            return_value=httpx.Response(200, json=message_found("<order/1042@mail.example>"))
        )
        result, error = attempt(create_message, {"apiKey": API_KEY}, body)
    assert error is None, error
    assert lookup.call_count == 1
    assert lookup.calls.last.request.url.raw_path == b"/v1/messages/externalid=%3Corder%2F1042%40mail.example%3E"
    assert result == message_found("<order/1042@mail.example>")


def test_an_empty_external_id_is_not_looked_up() -> None:
    """An empty externalId names no message: a lookup by it could only find another message."""
    with respx.mock(assert_all_called=False) as api:
        api.post(f"{US}/v1/messages").mock(return_value=httpx.Response(503))
        lookup = api.get(url__startswith=f"{US}/v1/messages/externalid=").mock(
            return_value=httpx.Response(200, json=message_found(""))
        )
        _, error = attempt(create_message, {"apiKey": API_KEY}, dict(MESSAGE, externalId=""))
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)
    assert lookup.call_count == 0
    assert "may or may not have been created" in str(error)


@BOTH
def test_5xx_is_never_repeated_and_says_the_outcome_is_unknown(script: ModuleType, api: respx.Router) -> None:
    error = fail(script, api, httpx.Response(503, json={"errors": [{"code": "unavailable", "title": "Try later"}]}))
    assert isinstance(error, script.KustomerOutcomeUnknownError)
    assert api.calls.call_count == 1
    text = str(error)
    assert "503 Service Unavailable" in text
    assert "unavailable: Try later" in text
    assert "may or may not have been created" in text
    assert "'SM-1'" in text  # which message to look up before running again


def test_bulk_unknown_outcome_names_client_refs_when_no_external_id(api: respx.Router) -> None:
    api.post(f"{US}/v1/messages/bulk").respond(502)
    body = [{"channel": "sms", "app": "x", "_clientRef": f"row-{i}"} for i in range(12)]
    with pytest.raises(bulk_create_messages.KustomerOutcomeUnknownError) as failure:
        bulk_create_messages.main({"apiKey": API_KEY}, body)
    assert "_clientRef 'row-0', 'row-1'" in str(failure.value)
    assert "and 2 more" in str(failure.value)


@BOTH
def test_read_timeout_after_sending_is_not_repeated(script: ModuleType, api: respx.Router) -> None:
    error = fail(script, api, httpx.ReadTimeout("timed out"))
    assert isinstance(error, script.KustomerOutcomeUnknownError)
    assert api.calls.call_count == 1
    assert "no answer came within the read timeout" in str(error)


@BOTH
def test_connection_dropped_after_sending_is_not_repeated(script: ModuleType, api: respx.Router) -> None:
    error = fail(script, api, httpx.RemoteProtocolError("Server disconnected without sending a response."))
    assert isinstance(error, script.KustomerOutcomeUnknownError)
    assert api.calls.call_count == 1


@BOTH
def test_refused_connection_is_retried_because_nothing_was_sent(
    script: ModuleType, api: respx.Router, fake_time: FakeTime
) -> None:
    api.post(f"{US}{path_for(script)}").mock(
        side_effect=[httpx.ConnectError("[Errno 111] Connection refused"), httpx.Response(201, json={"ok": 1})]
    )
    assert script.main({"apiKey": API_KEY}, body_for(script)) == {"ok": 1}
    assert api.calls.call_count == 2
    assert len(fake_time.sleeps) == 1
    assert 0.5 <= fake_time.sleeps[0] <= 1


@BOTH
def test_unreachable_host_gives_up_after_bounded_attempts(
    script: ModuleType, api: respx.Router, fake_time: FakeTime
) -> None:
    error = fail(script, api, *[httpx.ConnectError("[Errno -2] Name or service not known")] * 10)
    assert isinstance(error, script.KustomerConnectionError)
    assert api.calls.call_count == script.POLICY.max_failed_attempts
    assert sum(fake_time.sleeps) <= script.POLICY.max_total_wait
    assert "Name or service not known" in str(error)
    assert "Nothing was sent, so nothing was created" in str(error)


def test_connect_timeout_is_retried(api: respx.Router) -> None:
    api.post(f"{US}/v1/messages").mock(side_effect=[httpx.ConnectTimeout("slow"), httpx.Response(201, json={})])
    assert create_message.main({"apiKey": API_KEY}, dict(MESSAGE)) == {}
    assert api.calls.call_count == 2


@pytest.mark.parametrize("raw", [b"", b"OK", b"<html>done</html>"])
def test_2xx_that_is_not_json_fails_without_repeating(raw: bytes, api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(201, content=raw))
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)
    assert "which means success, but its answer was not JSON" in str(error)
    assert api.calls.call_count == 1


def test_a_redirect_after_a_post_is_not_followed_and_its_outcome_is_unknown(api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(303, headers={"Location": "https://evil.example/v1/messages"}))
    assert api.calls.call_count == 1
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)  # the request arrived: never "not sent"
    assert "The request arrived, so it may have taken effect; it was neither followed" in str(error)
    assert "Nothing was created" not in str(error)
    assert "https://evil.example/v1/messages" in str(error)


@BOTH
def test_connection_closed_mid_response_is_not_repeated(
    script: ModuleType, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault="drop")
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "answered 201" in str(outcome.error)
    assert "but its answer broke off" in str(outcome.error)
    assert "'SM-1'" in str(outcome.error)
    assert posts(sandbox) == 1


@BOTH
@pytest.mark.parametrize("fault", ["not_json", "empty"])
def test_2xx_that_is_not_json_is_not_repeated(
    script: ModuleType, fault: str, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault=fault)
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "which means success, but its answer was not JSON" in str(outcome.error)
    assert posts(sandbox) == 1


def test_a_lost_bulk_names_the_messages_without_an_external_id_too(api: respx.Router) -> None:
    """Advice to look up the externalIds alone ("leave out those that exist") would send the others again."""
    api.post(f"{US}/v1/messages/bulk").mock(return_value=httpx.Response(502))
    body = [
        dict(MESSAGE, _clientRef="row-1", externalId="SM-1"),
        {k: v for k, v in MESSAGE.items() if k != "externalId"} | {"_clientRef": "row-2"},
        dict(MESSAGE, _clientRef="row-3", externalId="SM-3"),
    ]
    error = attempt(bulk_create_messages, {"apiKey": API_KEY}, body)[1]
    assert isinstance(error, bulk_create_messages.KustomerOutcomeUnknownError)
    said = str(error)
    assert "look up externalId 'SM-1', 'SM-3'" in said
    assert "without an externalId cannot be looked up: check the timelines for body[1] (_clientRef 'row-2')" in said
    assert api.calls.call_count == 1
