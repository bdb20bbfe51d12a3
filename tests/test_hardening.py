"""The promises tried the hostile way: a resource that holds the key in the wrong place, servers that
echo the key, drip, bomb, lie about their rate limits or write escape codes, and results that
Windmill's worker would rewrite. Each test names the hardening item it protects."""

from __future__ import annotations

import gzip
import json
import time
import traceback
import tracemalloc
import zlib
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
from conftest import API_KEY, US, FakeTime
from hostile_server import Answer, HostileServer, gzip_bomb

from workbench.paths import SCRIPTS
from workbench.worker import run_job

BOTH = pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])
MESSAGE: dict[str, Any] = {"channel": "sms", "app": "twilio", "direction": "in", "externalId": "SM-hard-1"}
LONG_KEY = "kst_" + "0123456789abcdefghij" * 12  # 244 characters: longer than any clipped excerpt


def body_for(script: ModuleType) -> Any:
    return dict(MESSAGE) if script is create_message else [dict(MESSAGE, _clientRef="row-1")]


def attempt(script: ModuleType, auth: Any, body: Any = None) -> tuple[Any, BaseException | None]:
    try:
        return script.main(auth, body_for(script) if body is None else body), None
    except Exception as exc:  # the test inspects whatever the script raised
        return None, exc


def everything_shown(error: BaseException | None, result: Any = None) -> str:
    """All a user or a log could see of a job: the error's text, attributes, chained exceptions and
    traceback (what Windmill's wrapper writes), and the result."""
    seen = [json.dumps(result, default=str)]
    while error is not None:
        seen += [str(error), repr(error.args), json.dumps(error.__dict__, default=str)]
        seen += traceback.format_exception(type(error), error, error.__traceback__)
        error = error.__cause__ or error.__context__
    return "\n".join(seen)


def assert_key_hidden(key: str, error: BaseException | None, result: Any = None) -> None:
    shown = everything_shown(error, result)
    assert key not in shown
    assert key[:16] not in shown or len(key) < 16, "a clipped part of the key shows"


# ---- 1. a mis-shaped resource never shows its values ----


@pytest.mark.parametrize(
    "auth",
    [
        LONG_KEY,
        [LONG_KEY],
        {"apiKey": "https://api.kustomerapp.com", "baseUrl": LONG_KEY},
        {"apiKey": 12345, "baseUrl": [LONG_KEY]},
        {"api_key": LONG_KEY},
        {"apiKey": LONG_KEY, "baseUrl": f"https://{LONG_KEY}@api.kustomerapp.com"},
        {"apiKey": LONG_KEY, "baseUrl": f"https://api.kustomerapp.com/?token={LONG_KEY}"},
    ],
    ids=["bare-string", "list", "swapped", "wrong-types", "misspelled", "key-as-userinfo", "key-in-query"],
)
def test_a_mis_shaped_resource_is_refused_without_showing_the_key(auth: Any) -> None:
    with respx.mock(assert_all_called=False) as api:
        result, error = attempt(create_message, auth)
    assert isinstance(error, create_message.KustomerInputError)
    assert api.calls.call_count == 0
    assert_key_hidden(LONG_KEY, error, result)
    assert "auth" in str(error)


@respx.mock
def test_a_short_key_is_not_found_inside_a_host_name() -> None:
    respx.post("https://abc.api.kustomerapp.com/v1/messages").mock(return_value=httpx.Response(201, json={"data": {}}))
    auth = {"apiKey": "abc", "baseUrl": "https://abc.api.kustomerapp.com"}
    create_message.main(auth, {"channel": "chat", "app": "a", "direction": "in"})  # type: ignore[arg-type]
    assert respx.calls.call_count == 1
    _, error = attempt(create_message, {"apiKey": "abc", "baseUrl": "abc"})
    assert "auth.baseUrl: holds the API key" in str(error)


def test_a_misspelled_resource_key_gets_a_suggestion() -> None:
    _, error = attempt(create_message, {"api_key": API_KEY})
    assert "auth.apiKey: missing; the resource has a similar key: did you mean apiKey?" in str(error)


# ---- 2, 3, 14. text from the server: key hidden before it is shortened, no control characters ----


def test_a_long_key_echoed_in_an_error_body_location_and_reason_never_shows_even_clipped() -> None:
    detail = "x" * 250 + LONG_KEY  # clipping at 300 characters would keep the key's first 50
    answers = [
        Answer.http(400, json.dumps({"errors": [{"code": "bad", "detail": detail}]}).encode(), reason=LONG_KEY[:60]),
        Answer.http(307, headers={"Location": f"https://evil.example/{'y' * 100}?k={LONG_KEY}"}),
        Answer.http(401, ("<html>" + "z" * 280 + LONG_KEY + "</html>").encode()),
    ]
    for index in range(len(answers)):
        with HostileServer(answers[index:]) as server:
            result, error = attempt(create_message, {"apiKey": LONG_KEY, "baseUrl": server.url})
        # a 307 to a POST is an unknown outcome (the request arrived); the others are refusals
        assert isinstance(error, create_message.KustomerAPIError | create_message.KustomerOutcomeUnknownError)
        assert_key_hidden(LONG_KEY, error, result)
        assert LONG_KEY[:8] not in str(error)
        assert server.posts() == 1


def test_a_short_key_does_not_mangle_the_scripts_own_words_or_kustomers() -> None:
    """The sandbox accepts any key, so "k" is a common one: "look up" must not read "loo[redacted] up"."""
    answer = Answer.http(503, json.dumps({"errors": [{"title": "look k"}]}).encode())
    with HostileServer([answer]) as server:
        _, error = attempt(create_message, {"apiKey": "k", "baseUrl": server.url})
    text = str(error)
    assert "look up externalId 'SM-hard-1'" in text
    assert "look [redacted]" in text  # Kustomer's words: the key as a word is hidden, "look" is not touched
    assert "[redacted]" not in text.replace("look [redacted]", "")


def test_control_and_format_characters_from_the_server_are_removed() -> None:
    evil = "Bad \x1b[31mred\x1b[0m \u202eevil\u202c back\x08space nul\x00 zero\u200bwidth bell\x07"
    with HostileServer([Answer.http(400, json.dumps({"errors": [{"detail": evil}]}).encode())]) as server:
        _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": server.url})
    text = str(error)
    assert "Bad red evil back space nul zerowidth bell" in text
    for char in ("\x1b", "\u202e", "\u202c", "\x08", "\x00", "\u200b", "\x07"):
        assert char not in text


# ---- 4. the result ----


@BOTH
def test_a_2xx_that_echoes_the_authorization_header_is_returned_without_the_key(script: ModuleType) -> None:
    echo = {"data": {"id": "m1", "echo": f"Bearer {LONG_KEY}", "headers": {LONG_KEY: [LONG_KEY, 1]}}}
    with HostileServer([Answer.http(201, json.dumps(echo).encode())]) as server:
        result, error = attempt(script, {"apiKey": LONG_KEY, "baseUrl": server.url})
    assert error is None
    assert result["data"]["echo"] == "Bearer [redacted]"
    assert result["data"]["headers"] == {"[redacted]": ["[redacted]", 1]}


# ---- 5. nothing the job raises carries the key ----


@BOTH
@pytest.mark.parametrize(
    "answer",
    [Answer([b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"]), Answer([b"garbage\r\n\r\n"]), Answer([])],
    ids=["body-broke-off", "not-http", "closed-at-once"],
)
def test_no_exception_carries_the_key_in_its_context_attributes_or_traceback(
    script: ModuleType, answer: Answer
) -> None:
    with HostileServer([answer]) as server:
        result, error = attempt(script, {"apiKey": LONG_KEY, "baseUrl": server.url})
    assert isinstance(error, script.KustomerOutcomeUnknownError)
    assert error.__cause__ is None
    assert error.__context__ is None
    assert_key_hidden(LONG_KEY, error, result)
    assert server.posts() == 1


# ---- 7. baseUrl is one host and nothing else ----


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
    ],
)
def test_a_base_url_with_userinfo_query_fragment_or_path_is_refused(base_url: str, expected: str) -> None:
    with respx.mock(assert_all_called=False) as api:
        _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": base_url})
    assert isinstance(error, create_message.KustomerInputError)
    assert f"auth.baseUrl: {expected}" in str(error) or expected in str(error)
    assert "s3cr3t-pass" not in str(error)
    assert api.calls.call_count == 0


# ---- 8. "outcome unknown" only when something was sent ----


@pytest.mark.parametrize(
    "proxy", ["socks5://127.0.0.1:9", "ftp://user:pw@127.0.0.1:9"], ids=["socks-without-socksio", "unknown-scheme"]
)
def test_an_unusable_proxy_setting_says_nothing_was_sent(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    _, error = attempt(create_message, {"apiKey": API_KEY})
    assert isinstance(error, create_message.KustomerConnectionError)
    assert "Nothing was sent to Kustomer" in str(error)
    assert "HTTPS_PROXY" in str(error)
    assert "pw@" not in str(error)
    assert "may or may not" not in str(error)


def test_a_refused_connection_is_not_an_unknown_outcome(fake_time: FakeTime) -> None:
    with HostileServer([]) as server:
        url = server.url
    _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": url})  # nothing listens there now
    assert isinstance(error, create_message.KustomerConnectionError)
    assert "Nothing was sent, so nothing was created" in str(error)


# ---- 9 and 17. rate-limit headers that lie ----


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, None),  # in the past: not believed
        ({"x-ratelimit-reset": "1700000042"}, 42.0),  # epoch seconds
        ({"x-ratelimit-reset": "1700000042000"}, 42.0),  # epoch milliseconds
        ({"x-ratelimit-reset": "42"}, 42.0),  # seconds from now
        ({"x-ratelimit-reset": "10", "Retry-After": "20"}, 20.0),  # both: the later one
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "1e300"}, None),
        ({"Retry-After": "-5"}, None),
        ({"x-ratelimit-reset": "1e20"}, None),
        ({"x-ratelimit-reset": "-1700000042"}, None),
        ({"x-ratelimit-reset": "soon"}, None),
        ({"Retry-After": "7200"}, None),  # more than max_reset_ahead: not believed
        ({}, None),
    ],
)
def test_reset_time_table(headers: dict[str, str], expected: float | None) -> None:
    now = 1_700_000_000.0
    reset = create_message.reset_time(httpx.Headers(headers), now, create_message.POLICY)
    assert (reset - now if reset is not None else None) == expected


@BOTH
@pytest.mark.parametrize("absurd", ["inf", "1e300", "1e20", "-3", "nan"])
def test_an_absurd_reset_header_falls_back_to_backoff(script: ModuleType, absurd: str, fake_time: FakeTime) -> None:
    path = "/v1/messages" if script is create_message else "/v1/messages/bulk"
    headers = {"Retry-After": absurd, "x-ratelimit-reset": absurd}
    with respx.mock() as api:
        api.post(f"{US}{path}").mock(side_effect=[httpx.Response(429, headers=headers), httpx.Response(201, json={})])
        assert script.main({"apiKey": API_KEY}, body_for(script)) == {}
    assert len(fake_time.sleeps) == 1
    assert 0.5 <= fake_time.sleeps[0] <= 1.0


def test_giving_up_on_absurd_headers_is_a_rate_limit_error(fake_time: FakeTime) -> None:
    with respx.mock() as api:
        api.post(f"{US}/v1/messages").mock(return_value=httpx.Response(429, headers={"Retry-After": "1e300"}))
        _, error = attempt(create_message, {"apiKey": API_KEY})
    assert isinstance(error, create_message.KustomerRateLimitError)
    assert "Kustomer did not say when its rate-limit window resets" in str(error)


def test_a_server_announcing_a_reset_one_second_ahead_forever_gets_a_handful_of_requests(
    fake_time: FakeTime,
) -> None:
    """It used to get 121 requests in 120 s; past an announced reset, the wait backs off too."""
    with respx.mock() as api:
        route = api.post(f"{US}/v1/messages").mock(
            side_effect=lambda request: httpx.Response(429, headers={"x-ratelimit-reset": str(fake_time.now + 1)})
        )
        _, error = attempt(create_message, {"apiKey": API_KEY})
    assert isinstance(error, create_message.KustomerRateLimitError)
    assert route.call_count <= 20
    assert sum(fake_time.sleeps) <= create_message.POLICY.max_total_wait


def test_a_parallel_import_still_gets_the_next_window_longest_waiter_first(fake_time: FakeTime) -> None:
    """With a 10 s window, a job that lost four times still wakes right after the reset, and sooner
    than one that lost once: the benchmark's import keeps every window full."""
    policy = create_message.POLICY
    reset = fake_time.now + 10
    fourth = [create_message.rate_limit_wait(reset, 4, 30.0, policy) for _ in range(50)]
    first = [create_message.rate_limit_wait(reset, 1, 0.0, policy) for _ in range(50)]
    assert all(w is not None and 10 < w <= 10.25 for w in fourth)
    assert max(w for w in fourth if w is not None) < min(w for w in first if w is not None) + 0.75


# ---- 15. memory ----


@BOTH
def test_a_gzip_bomb_is_stopped_at_the_size_limit_without_inflating(script: ModuleType) -> None:
    bomb = gzip_bomb(layers=2, inflated=1_000_000_000)  # a few KB on the wire, 1 GB once decoded
    assert len(bomb) < 10_000
    answer = Answer.http(201, bomb, headers={"Content-Encoding": "gzip, gzip", "Content-Type": "application/json"})
    with HostileServer([answer]) as server:
        tracemalloc.start()
        try:
            _, error = attempt(script, {"apiKey": API_KEY, "baseUrl": server.url})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert isinstance(error, script.KustomerOutcomeUnknownError)
    assert "too large to read" in str(error)
    assert peak < 5 * script.POLICY.max_response_bytes, f"peak {peak / 1e6:.0f} MB"


def test_gzip_and_deflate_answers_are_read() -> None:
    body = json.dumps({"data": {"id": "zipped"}}).encode()
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        with HostileServer([Answer.http(201, data, headers={"Content-Encoding": encoding})]) as server:
            result, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": server.url})
        assert error is None, error
        assert result == {"data": {"id": "zipped"}}


# ---- 16. time ----


@BOTH
@pytest.mark.parametrize("part", ["status-line-and-headers", "body"])
def test_the_deadline_covers_the_whole_exchange_however_it_drips(
    script: ModuleType, part: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(script, "POLICY", script.POLICY._replace(response_deadline=1.5, read_timeout=5.0))
    full = Answer.http(201, json.dumps({"data": {"id": "slow"}}).encode()).chunks[0]
    head_size = full.index(b"\r\n\r\n") + 4
    if part == "body":  # the head at once, then the body a byte every 0.25 s
        chunks = [full[:head_size]] + [full[i : i + 1] for i in range(head_size, len(full))]
    else:  # a byte every 0.25 s from the first: each read is well within the read timeout
        chunks = [full[i : i + 1] for i in range(len(full))]
    message = {"channel": "sms", "app": "twilio", "direction": "in"}  # no externalId: no lookup after the POST
    body: Any = message if script is create_message else [message]
    with HostileServer([Answer(chunks, delay=0.25)]) as server:
        started = time.monotonic()
        result, error = attempt(script, {"apiKey": API_KEY, "baseUrl": server.url}, body)
        elapsed = time.monotonic() - started
    assert isinstance(error, script.KustomerOutcomeUnknownError), (result, error)
    assert "took longer than 2 s" in str(error) or "took longer than 1 s" in str(error)
    assert elapsed < 1.5 + 1.0
    assert server.posts() == 1


# ---- 18. the result is Kustomer's JSON, unchanged, on a real worker ----


def test_the_result_keeps_nan_infinity_and_nul_in_its_text_through_the_worker_wrapper() -> None:
    preview = "To Infinity and beyond, NaN times, \u0000 -Infinity"
    answer = {"data": {"type": "message", "id": "m1", "attributes": {"preview": preview}}}
    with HostileServer([Answer.http(201, json.dumps(answer).encode())]) as server:
        job = run_job(
            SCRIPTS / "create_message.py",
            {"auth": {"apiKey": API_KEY, "baseUrl": server.url}, "body": dict(MESSAGE, preview=preview)},
        )
    assert job.exit_code == 0, job.result
    assert job.result["data"]["attributes"]["preview"] == preview
    assert json.loads(job.output) == answer


def test_without_the_annotation_the_worker_wrapper_rewrites_such_text(tmp_path: Any) -> None:
    """The rule local-run imitates (python_executor.rs, get_result_postprocessor), shown on a probe."""
    probe = tmp_path / "probe.py"
    probe.write_text('def main():\n    return {"preview": "To Infinity and beyond"}\n')
    assert run_job(probe, {}).result == {"preview": "To  null  and beyond"}
    probe.write_text('# skip_result_postprocessing\ndef main():\n    return {"preview": "To Infinity and beyond"}\n')
    assert run_job(probe, {}).result == {"preview": "To Infinity and beyond"}


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_an_answer_with_non_json_number_tokens_is_not_taken_for_json(token: bytes) -> None:
    with HostileServer([Answer.http(201, b'{"data": {"size": ' + token + b"}}")]) as server:
        _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": server.url})
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)
    assert "its answer was not JSON" in str(error)


# ---- second round (issue "Hardening, second round") ----


def test_a_number_too_large_for_a_float_in_a_success_answer_is_kept_as_its_text_and_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = Answer.http(201, b'{"data": {"id": "5f9a3c1e2b4d6f8a0c1e3b5d", "attributes": {"n": 1e400, "m": 2.5}}}')
    with HostileServer([answer]) as server:
        result, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": server.url})
    assert error is None, error
    assert result == {"data": {"id": "5f9a3c1e2b4d6f8a0c1e3b5d", "attributes": {"n": "1e400", "m": 2.5}}}
    json.dumps(result, allow_nan=False)  # strict JSON, as Windmill stores it
    said = capsys.readouterr().out
    assert "(id 5f9a3c1e2b4d6f8a0c1e3b5d)" in said
    assert "1 number(s) too large for JSON (1e400)" in said


@pytest.mark.parametrize("layers", [3, 2000])
def test_more_than_two_content_encoding_layers_are_refused_before_decoding(layers: int) -> None:
    body = json.dumps({"data": {"id": "x"}}).encode()
    for _ in range(min(layers, 3)):
        body = gzip.compress(body)
    answer = Answer.http(201, body, headers={"Content-Encoding": ", ".join(["gzip"] * layers)})
    with HostileServer([answer]) as server:
        started = time.monotonic()
        _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": server.url})
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)
    assert f"encoded {layers} times over; at most 2 layers are read" in str(error)
    assert time.monotonic() - started < 5


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


CONVERSATION = "5f9a3c1e2b4d6f8a0c1e3b5d"


def message_found(external_id: str, conversation: str = CONVERSATION) -> dict[str, Any]:
    return {
        "data": {
            "type": "message",
            "id": "0f6c2b8e5d1a4c7b9e3f2a10",
            "attributes": {"externalId": external_id},
            "relationships": {"conversation": {"data": {"type": "conversation", "id": conversation}}},
        }
    }


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (message_found("SM-someone-else"), "was a message with another externalId"),
        (message_found("SM-hard-1", "aaaaaaaaaaaaaaaaaaaaaaaa"), "in another conversation"),
        ({"data": []}, "held 0 messages, not one"),
        (None, "was nothing (null), not a message"),
        ({"errors": [{"title": "nope"}]}, "not a message"),
    ],
    ids=["other-external-id", "other-conversation", "empty-list", "null", "errors-in-a-200"],
)
def test_a_lookup_proves_creation_only_by_the_message_that_was_sent(answer: Any, said: str) -> None:
    body = dict(MESSAGE, conversation=CONVERSATION)
    with respx.mock() as api:
        api.post(f"{US}/v1/messages").mock(return_value=httpx.Response(503))
        answered = httpx.Response(200, content=json.dumps(answer).encode())  # `null` too, as a body
        api.get(f"{US}/v1/messages/externalid=SM-hard-1").mock(return_value=answered)
        _, error = attempt(create_message, {"apiKey": API_KEY}, body)
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)
    assert said in str(error)
    assert "so it proves nothing" in str(error)


def test_a_lookup_that_finds_the_message_sent_returns_it() -> None:
    body = dict(MESSAGE, conversation=CONVERSATION)
    with respx.mock() as api:
        api.post(f"{US}/v1/messages").mock(return_value=httpx.Response(503))
        api.get(f"{US}/v1/messages/externalid=SM-hard-1").mock(
            return_value=httpx.Response(200, json=message_found("SM-hard-1"))
        )
        result, error = attempt(create_message, {"apiKey": API_KEY}, body)
    assert error is None, error
    assert result == message_found("SM-hard-1")
