"""What is sent, and what a user reads in Windmill when Kustomer or the network misbehaves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
import wait_for_bulk_results
from conftest import API_KEY, US, FakeTime

MESSAGE: dict[str, Any] = {"channel": "sms", "app": "twilio", "direction": "out", "externalId": "SM123"}
BOTH = pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])


def body_for(script: ModuleType) -> Any:
    return dict(MESSAGE) if script is create_message else [dict(MESSAGE, _clientRef="row-1")]


def path_for(script: ModuleType) -> str:
    return "/v1/messages" if script is create_message else "/v1/messages/bulk"


@pytest.fixture
def api() -> Iterator[respx.Router]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def fail(script: ModuleType, api: respx.Router, *responses: Any, auth: dict[str, str] | None = None) -> Any:
    """Run the script against these answers, expect it to fail, and return the exception."""
    api.post(f"{US}{path_for(script)}").mock(side_effect=list(responses))
    with pytest.raises(script.KustomerError) as failure:
        script.main(auth or {"apiKey": API_KEY}, body_for(script))
    assert API_KEY not in str(failure.value)
    return failure.value


# ---- the request ----


@BOTH
def test_request_carries_key_json_body_and_a_user_agent_naming_the_project(
    script: ModuleType, api: respx.Router
) -> None:
    route = api.post(f"{US}{path_for(script)}").respond(201, json={"data": {"id": "x"}})
    body = body_for(script)
    assert script.main({"apiKey": API_KEY}, body) == {"data": {"id": "x"}}
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("windmill-kustomer-scripts/")
    assert json.loads(request.content) == body


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.prod2.kustomerapp.com", "https://api.prod2.kustomerapp.com/v1/messages"),
        ("https://api.prod4.kustomerapp.com/", "https://api.prod4.kustomerapp.com/v1/messages"),
        ("https://acme.api.kustomerapp.com", "https://acme.api.kustomerapp.com/v1/messages"),
        ("", "https://api.kustomerapp.com/v1/messages"),
        ("  ", "https://api.kustomerapp.com/v1/messages"),
        (None, "https://api.kustomerapp.com/v1/messages"),
    ],
)
def test_base_url_picks_the_region(base_url: str | None, expected: str, api: respx.Router) -> None:
    route = api.post(expected).respond(201, json={})
    resource: Any = {"apiKey": API_KEY, "baseUrl": base_url}  # a resource saved with the field left empty
    create_message.main(resource, dict(MESSAGE))
    assert route.call_count == 1


def test_the_key_is_trimmed_of_pasted_whitespace(api: respx.Router) -> None:
    route = api.post(f"{US}/v1/messages").respond(201, json={})
    create_message.main({"apiKey": f" {API_KEY}\n"}, dict(MESSAGE))
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_bulk_accepts_any_2xx(api: respx.Router) -> None:
    api.post(f"{US}/v1/messages/bulk").respond(201, json={"data": {"type": "bulk", "id": "b"}})
    assert bulk_create_messages.main({"apiKey": API_KEY}, [dict(MESSAGE)])["data"]["id"] == "b"


# ---- answers that are not what they should be ----


@BOTH
def test_5xx_is_never_repeated_and_says_the_outcome_is_unknown(script: ModuleType, api: respx.Router) -> None:
    error = fail(script, api, httpx.Response(503, json={"errors": [{"code": "unavailable", "title": "Try later"}]}))
    assert isinstance(error, script.KustomerOutcomeUnknownError)
    assert api.calls.call_count == 1
    text = str(error)
    assert "503 Service Unavailable" in text
    assert "unavailable: Try later" in text
    assert "may or may not have been created" in text
    assert "'SM123'" in text  # which message to look up before running again


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


def test_html_error_page_is_summarised_by_its_title(api: respx.Router) -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>" + b"<p>nginx</p>" * 100_000 + b"</body></html>"
    error = fail(create_message, api, httpx.Response(502, content=page))
    assert "502 Bad Gateway" in str(error)
    assert len(str(error)) < 1000


def test_huge_plain_error_body_is_clipped(api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(400, content=b"x" * 2_000_000))
    assert len(str(error)) < 1000
    assert "400 Bad Request" in str(error)


def test_empty_error_body_still_explains(api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(401))
    assert "401 Unauthorized" in str(error)
    assert "(no error details in the answer)" in str(error)
    assert "org.permission.message.create" in str(error)


def test_error_body_of_unexpected_json_shape(api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(400, json={"errors": "oops", "message": 5}))
    assert "400 Bad Request" in str(error)


def test_a_redirect_after_a_post_is_not_followed_and_its_outcome_is_unknown(api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(303, headers={"Location": "https://evil.example/v1/messages"}))
    assert api.calls.call_count == 1
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)  # the request arrived: never "not sent"
    assert "The request arrived, so it may have taken effect; it was neither followed" in str(error)
    assert "Nothing was created" not in str(error)
    assert "https://evil.example/v1/messages" in str(error)


def test_key_echoed_by_the_server_is_redacted(api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(401, json={"errors": [{"title": f"bad token {API_KEY}"}]}))
    assert "bad token [redacted]" in str(error)


def test_key_in_an_unexpected_exception_is_redacted(api: respx.Router) -> None:
    error = fail(create_message, api, RuntimeError(f"boom with {API_KEY}"))
    assert "boom with [redacted]" in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


# ---- rate limits ----


@BOTH
def test_429_every_time_gives_up_within_the_bound(script: ModuleType, api: respx.Router, fake_time: FakeTime) -> None:
    limited = httpx.Response(429, headers={"x-ratelimit-reset": str(int(fake_time.now) + 60)})
    api.post(f"{US}{path_for(script)}").mock(side_effect=lambda request: limited)
    with pytest.raises(script.KustomerRateLimitError) as failure:
        script.main({"apiKey": API_KEY}, body_for(script))
    assert sum(fake_time.sleeps) <= script.POLICY.max_total_wait  # the bound is time, not a count
    assert api.calls.call_count >= 2
    text = str(failure.value)
    assert text.startswith("Rate limited by Kustomer")
    assert "Nothing was created" in text
    assert re.search(r"the window (resets|was announced to reset) at \d{4}-", text)


def test_429_waits_until_the_reset_epoch(api: respx.Router, fake_time: FakeTime) -> None:
    reset = fake_time.now + 42
    api.post(f"{US}/v1/messages").mock(
        side_effect=[httpx.Response(429, headers={"x-ratelimit-reset": str(reset)}), httpx.Response(201, json={})]
    )
    create_message.main({"apiKey": API_KEY}, dict(MESSAGE))
    assert 42 < fake_time.sleeps[0] <= 43


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-reset": "1600000000"},  # in the past
        {"x-ratelimit-reset": "soon"},  # unparsable
        {},  # missing
    ],
    ids=["past", "unparsable", "missing"],
)
def test_429_without_a_usable_reset_backs_off_with_jitter(
    headers: dict[str, str], api: respx.Router, fake_time: FakeTime
) -> None:
    api.post(f"{US}/v1/messages").mock(
        side_effect=[httpx.Response(429, headers=headers), httpx.Response(429, headers=headers), httpx.Response(201)]
    )
    with pytest.raises(create_message.KustomerOutcomeUnknownError):  # 201 with an empty body
        create_message.main({"apiKey": API_KEY}, dict(MESSAGE))
    assert api.calls.call_count == 3
    assert 0.5 <= fake_time.sleeps[0] <= 1
    assert 1 <= fake_time.sleeps[1] <= 2


def test_429_reset_in_milliseconds_and_retry_after_date(api: respx.Router, fake_time: FakeTime) -> None:
    from email.utils import formatdate

    api.post(f"{US}/v1/messages").mock(
        side_effect=[
            httpx.Response(429, headers={"x-ratelimit-reset": str(int((fake_time.now + 10) * 1000))}),
            httpx.Response(429, headers={"Retry-After": formatdate(fake_time.now + 50, usegmt=True)}),
            httpx.Response(201, json={}),
        ]
    )
    create_message.main({"apiKey": API_KEY}, dict(MESSAGE))
    assert 10 < fake_time.sleeps[0] <= 11  # until the reset given in epoch milliseconds
    assert 50 < sum(fake_time.sleeps) <= 51  # then until the HTTP date, 50 s after the start


def test_429_asking_for_more_than_a_window_gives_up_at_once(api: respx.Router, fake_time: FakeTime) -> None:
    error = fail(create_message, api, httpx.Response(429, headers={"Retry-After": "3600"}))
    assert isinstance(error, create_message.KustomerRateLimitError)
    assert fake_time.sleeps == []
    assert "in 3600 s" in str(error)


# ---- found by the benchmark: jobs of a parallel import competing for the same windows ----


def test_rate_limit_waiting_is_bounded_by_time_not_by_attempts(api: respx.Router, fake_time: FakeTime) -> None:
    """Losing the race for a window 7 times in 40 s is no reason to give up a 120 s wait budget."""
    start, answered = fake_time.now, []

    def answer(request: httpx.Request) -> httpx.Response:
        answered.append(request)
        if len(answered) <= 7:  # each time, the window it waited for filled up before its turn
            return httpx.Response(429, headers={"x-ratelimit-reset": str(start + 5 * len(answered))})
        return httpx.Response(201, json={"data": {"id": "finally"}})

    api.post(f"{US}/v1/messages").mock(side_effect=answer)
    assert create_message.main({"apiKey": API_KEY}, dict(MESSAGE)) == {"data": {"id": "finally"}}
    assert api.calls.call_count == 8
    assert sum(fake_time.sleeps) <= create_message.POLICY.max_total_wait


def test_longer_waiters_wake_sooner_after_the_reset(fake_time: FakeTime) -> None:
    """The jitter after a reset shrinks with each 429 a job has had, so the longest waiter goes first."""
    policy = create_message.POLICY
    for losses in (1, 2, 4):
        for _ in range(50):
            wait = create_message.rate_limit_wait(fake_time.now + 10, losses, 0.0, policy)
            assert wait is not None
            assert 10 < wait <= 10 + 1.0 / losses


def test_the_waiter_starts_no_wait_that_would_end_past_max_wait_seconds(fake_time: Any, api: respx.Router) -> None:
    """A server answering 429 to everything, its window resetting a minute ahead: the job gives up
    within max_wait_seconds, not max_wait_seconds plus the 60 s kept for an answer in flight."""
    reset = str(int(fake_time.now) + 60)
    api.get(url__regex=r".*/v1/bulk/.*").respond(429, headers={"x-ratelimit-reset": reset}, json={})
    started = fake_time.now
    with pytest.raises(wait_for_bulk_results.KustomerError):
        wait_for_bulk_results.main({"apiKey": API_KEY}, "5f0c1a2b3c4d5e6f7a8b9c0d", max_wait_seconds=15)
    assert fake_time.now - started <= 15
