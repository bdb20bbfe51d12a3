"""The key never shows, and server text is cleaned: not in results, errors, their attributes or chained
exceptions, logs or reports, even when a server echoes it, cuts it or wraps it in escape codes."""

from __future__ import annotations

import hashlib
import json
from types import ModuleType
from typing import Any
from urllib.parse import quote, quote_plus

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
import wait_for_bulk_results as wait
from conftest import API_KEY, US
from hostile_server import Answer, HostileServer
from script_calls import (
    AUTH,
    BATCHES,
    BOTH,
    BULK,
    EVIL,
    LONG_KEY,
    MESSAGE,
    assert_key_hidden,
    assert_no_16_characters_of_the_key,
    attempt,
    created,
    fail,
    fragments_of,
    page,
    posts,
    run,
    waiter,
)

from workbench.paths import SCRIPTS
from workbench.sandbox import Sandbox
from workbench.worker import run_job


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
    assert "look up externalId 'SM-1'" in text
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


@BOTH
def test_a_2xx_that_echoes_the_authorization_header_is_returned_without_the_key(script: ModuleType) -> None:
    echo = {"data": {"id": "m1", "echo": f"Bearer {LONG_KEY}", "headers": {LONG_KEY: [LONG_KEY, 1]}}}
    with HostileServer([Answer.http(201, json.dumps(echo).encode())]) as server:
        result, error = attempt(script, {"apiKey": LONG_KEY, "baseUrl": server.url})
    assert error is None
    assert result["data"]["echo"] == "Bearer [redacted]"
    assert result["data"]["headers"] == {"[redacted]": ["[redacted]", 1]}


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


@pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])
def test_a_success_answer_echoing_pieces_of_the_key_hides_each_and_keeps_the_rest_exactly(script: ModuleType) -> None:
    cut, tail, piece, inner = fragments_of(LONG_KEY)
    answer = {
        "data": {
            "id": "6a" * 12,
            "attributes": {"preview": "line one\nline two\t\u00e9", "echo": cut, "more": [f"x{tail}y", 3, None]},
            "meta": {piece: inner},
        }
    }
    body: Any = {"channel": "chat", "app": "api", "direction": "in"}
    with respx.mock(assert_all_called=True) as mock:
        mock.post(url__startswith=US).respond(201, json=answer)
        result = script.main(AUTH, body if script is create_message else [body])
    shown = json.dumps(result, ensure_ascii=False)
    assert_no_16_characters_of_the_key(shown)
    attributes = result["data"]["attributes"]
    assert attributes["preview"] == "line one\nline two\t\u00e9"  # Kustomer's own text is not cleaned
    assert attributes["echo"] == "[redacted]"
    assert attributes["more"] == ["x[redacted]y", 3, None]
    assert result["data"]["meta"] == {"[redacted]": "[redacted]"}


def test_a_bulk_status_with_escapes_the_key_and_megabytes_is_cleaned_in_the_log_the_error_and_its_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = EVIL + LONG_KEY[3:40] + "x" * 1_900_000  # a 9 MB status is not read at all: over MAX_PAGE_BYTES
    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(200, json={"data": {"attributes": {"status": status}}})
        _, error = waiter(max_wait_seconds=10)
    logs = capsys.readouterr().out
    assert isinstance(error, wait.KustomerBulkPendingError)
    for text in (str(error), error.status, logs):
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "\x07" not in text
        assert_no_16_characters_of_the_key(text)
    assert len(error.status) <= 40
    assert error.status.startswith("complete etelpmoc")  # what it said, readable, and not taken for complete
    assert len(str(error)) < 1000
    assert max(len(line) for line in logs.splitlines()) < 1000


def test_an_item_error_echoing_the_key_with_escapes_is_cleaned_in_the_report() -> None:
    failed = {"_clientRef": "r1", "status": "error", "error": {"code": "bad", "detail": EVIL + LONG_KEY[:-2]}}
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=page([created("r0"), failed], failureCount=1))
        report, error = waiter(expected_items=2, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    message = report["items"][1]["error"]
    assert message.startswith("bad: complete etelpmoc")
    assert "\x1b" not in message
    assert "\u202e" not in message
    assert_no_16_characters_of_the_key(json.dumps(report))
    assert (report["created"], report["failed"]) == (1, 1)


def test_the_progress_shown_is_numbers_whatever_the_server_puts_there() -> None:
    fields = {"status": "running", "batches": {"complete": EVIL, "total": LONG_KEY}}
    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(200, json={"data": {"attributes": fields}})
        _, error = waiter(max_wait_seconds=5)
    assert "is still running (0 of 0 batches done)" in str(error)


def test_a_repeated_client_ref_echoing_the_key_is_named_without_it() -> None:
    ref = "\x1b[31m" + LONG_KEY[10:60]
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=page([created(ref), created(ref)]))
        _, error = waiter(expected_items=2, submitted_at="2020-01-01T00:00:00Z")
    assert isinstance(error, wait.KustomerAPIError)
    assert "more than once" in str(error)
    assert "\x1b" not in str(error)
    assert_no_16_characters_of_the_key(str(error))


def test_key_echoed_by_the_server_is_redacted(api: respx.Router) -> None:
    error = fail(create_message, api, httpx.Response(401, json={"errors": [{"title": f"bad token {API_KEY}"}]}))
    assert "bad token [redacted]" in str(error)


def test_key_in_an_unexpected_exception_is_redacted(api: respx.Router) -> None:
    error = fail(create_message, api, RuntimeError(f"boom with {API_KEY}"))
    assert "boom with [redacted]" in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


@BOTH
def test_redirect_to_another_host_is_not_followed(
    script: ModuleType, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault="redirect")
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)  # a POST that arrived
    assert "neither followed (the API key stays with the host you chose) nor repeated" in str(outcome.error)
    assert "http://127.0.0.2:" in str(outcome.error)
    assert posts(sandbox) == 1


def test_a_whole_worker_job_prints_nothing_of_the_key(sandbox: Sandbox) -> None:
    """The same faults through a real worker-style process: its result file and its logs."""
    for fault in ("drop", "html_500", "redirect"):
        sandbox.configure(fault=fault)
        job = run_job(
            SCRIPTS / "create_message.py", {"auth": {"apiKey": API_KEY, "baseUrl": sandbox.url}, "body": dict(MESSAGE)}
        )
        assert job.exit_code == 1
        assert API_KEY not in job.output + job.logs
        assert job.result["name"] in ("KustomerOutcomeUnknownError", "KustomerAPIError")


@pytest.mark.parametrize(
    ("script", "call"),
    [
        (create_message, lambda auth: create_message.main(auth, {"channel": API_KEY, "app": "a", "direction": "in"})),
        (bulk_create_messages, lambda auth: bulk_create_messages.main(auth, [{"conversation": API_KEY}])),
        (wait, lambda auth: wait.main(auth, API_KEY)),
        (wait, lambda auth: wait.main(auth, "5f0c1a2b3c4d5e6f7a8b9c0d", submitted_at=API_KEY)),
        (create_message, lambda auth: create_message.main(auth, {"channel": "sms", "app": "a", API_KEY[:20]: 1})),
    ],
    ids=["body-field", "bulk-item", "bulk_id", "submitted_at", "a-field-name-of-20-characters-of-it"],
)
def test_a_key_pasted_into_another_input_is_not_quoted_in_the_input_error(script: ModuleType, call: Any) -> None:
    with pytest.raises(script.KustomerInputError) as raised:
        call({"apiKey": API_KEY})
    said = str(raised.value)
    assert API_KEY[:16] not in said, said
    assert API_KEY[-16:] not in said, said
    assert "[redacted]" in said


def test_a_key_pasted_as_the_external_id_is_not_quoted_when_the_answer_is_lost_and_the_lookup_fails() -> None:
    body = {"channel": "sms", "app": "a", "direction": "in", "externalId": API_KEY}
    with respx.mock() as mock:
        mock.post(url__startswith=US).respond(502)  # the create's outcome is unknown
        mock.get(url__startswith=US).respond(400)  # and the lookup by that externalId fails
        with pytest.raises(create_message.KustomerOutcomeUnknownError) as raised:
            create_message.main({"apiKey": API_KEY}, body)
    said = str(raised.value)
    assert "Looking it up by its externalId failed too" in said
    assert API_KEY[:16] not in said, said
    assert API_KEY[-16:] not in said, said
    assert "look up externalId '[redacted]'" in said


def test_a_key_pasted_as_the_external_id_is_not_quoted_when_an_unexpected_error_follows_the_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The advice of an unexpected error after the request went out (a bug, an httpx surprise) is the same
    `if_unknown` as every other lost answer's: the key pasted as an externalId is hidden there too."""

    def a_bug(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(json, "loads", a_bug)  # reading the answer fails as no KustomerError or ValueError
    body = [dict(MESSAGE, externalId=LONG_KEY, _clientRef="r1")]
    with HostileServer([Answer.http(202, b'{"data": {}}')]) as server:
        _, error = attempt(bulk_create_messages, {"apiKey": LONG_KEY, "baseUrl": server.url}, body)
    assert isinstance(error, bulk_create_messages.KustomerOutcomeUnknownError), error
    assert "Unexpected error while calling Kustomer (RuntimeError: a bug)" in str(error)
    assert "look up externalId '[redacted]" in str(error)
    assert_no_16_characters_of_the_key(str(error))


def test_a_key_echoed_url_encoded_is_hidden_however_it_was_encoded() -> None:
    """A base64 key holds + / =: echoed in a URL, each is %-encoded, and no 16 characters of it stay whole."""
    key = "Ab3+Xy9/Qw7=Zt5+Pl2/Mn8=Rk4+Vb6/Hj1="
    encoded = [quote(key, safe=""), quote_plus(key, safe="")]
    answer = {"errors": [{"title": "bad token", "detail": f"got {encoded[0]} and {encoded[1]}"}]}
    with respx.mock() as mock:
        mock.post(f"{US}/v1/messages").respond(401, json=answer, headers={"Location": f"/login?t={encoded[0]}"})
        _, error = attempt(create_message, {"apiKey": key})
    assert isinstance(error, create_message.KustomerAPIError)
    for form in encoded:
        assert form not in str(error)
    assert "got [redacted] and [redacted]" in str(error)


def test_any_16_characters_of_a_key_from_any_offset_are_hidden_in_a_success_answer() -> None:
    """With a key whose characters do not repeat in a pattern, as real keys do not."""
    key = "".join(hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(5))  # 80 characters
    pieces = [key[i : i + 16] for i in range(len(key) - 15)]
    with respx.mock() as mock:
        mock.post(f"{US}/v1/messages").respond(201, json={"data": {"id": "6a" * 12, "echo": pieces}})
        result = create_message.main({"apiKey": key}, dict(MESSAGE))
    assert result["data"]["echo"] == ["[redacted]"] * len(pieces)


def test_the_id_a_lookup_gives_the_import_flow_is_cleaned_of_escape_codes() -> None:
    """The import's report quotes the id Kustomer gave for a message found by its externalId: server text."""
    found = {"data": {"type": "message", "id": EVIL + "6a" * 12, "attributes": {"externalId": "SM-1"}}}
    with respx.mock() as mock:
        mock.get(f"{US}/v1/messages/externalid=SM-1").respond(200, json=found)
        message_id = create_message.message_id_by_external_id(AUTH, "SM-1")  # type: ignore[arg-type]
    assert message_id is not None
    assert "\x1b" not in message_id
    assert "\u202e" not in message_id
    assert "\x07" not in message_id
