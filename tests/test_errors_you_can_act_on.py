"""Errors you can act on: Kustomer's own words however its error body is shaped (an HTML page, a
megabyte of text, nothing, unexpected JSON), and a log that says which attempt and how long a wait."""

from __future__ import annotations

import pickle
import re
import socket
from types import ModuleType

import create_message
import httpx
import pytest
import respx
import wait_for_bulk_results
from conftest import API_KEY, FakeTime
from hostile_server import Answer, HostileServer
from script_calls import BOTH, attempt, body_for, fail, posts, run

from workbench.sandbox import Sandbox


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


@BOTH
def test_5xx_with_a_megabyte_of_html_gives_a_short_message(
    script: ModuleType, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.configure(fault="html_500")
    outcome = run(script, sandbox.url, capsys)
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "500 Internal Server Error" in str(outcome.error)
    assert len(str(outcome.error)) < 1000
    assert posts(sandbox) == 1


def test_connection_retries_say_in_the_log_how_long_and_which_attempt(
    fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # nothing listens there now: every connection is refused
    outcome = run(create_message, url, capsys)
    assert isinstance(outcome.error, create_message.KustomerConnectionError)
    logged = [line for line in outcome.printed.splitlines() if "waiting" in line]
    waits = [w for w in fake_time.sleeps if w >= 1]
    assert len(logged) == len(waits) >= 2
    pattern = r"the connection failed.*; waiting \d+ s, until .* UTC, then attempt \d of at most 5\."
    assert all(re.search(pattern, line) for line in logged), logged


@pytest.mark.parametrize(("allowed", "said"), [(5, "5 attempts over"), (1, "1 attempt over")])
def test_a_connection_that_never_comes_counts_its_attempts_in_english(
    fake_time: FakeTime, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, allowed: int, said: str
) -> None:
    monkeypatch.setattr(create_message, "POLICY", create_message.POLICY._replace(max_failed_attempts=allowed))
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # nothing listens there now: every connection is refused
    outcome = run(create_message, url, capsys)
    assert isinstance(outcome.error, create_message.KustomerConnectionError)
    assert f"Connection refused), {said} " in str(outcome.error), str(outcome.error)
    assert "(s)" not in str(outcome.error)


def test_a_read_that_cannot_connect_never_says_nothing_was_created(fake_time: FakeTime) -> None:
    """The waiter runs after bulk_create_messages created the messages: "nothing was created" there would
    read as if they were not, and send a user back to create them a second time."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # nothing listens there now: every connection is refused
    auth = {"apiKey": "k" * 40, "baseUrl": url}
    with pytest.raises(wait_for_bulk_results.KustomerConnectionError) as raised:
        wait_for_bulk_results.main(auth, "5f0c1a2b3c4d5e6f7a8b9c0d")  # type: ignore[arg-type]
    said = str(raised.value)
    assert "nothing was created" not in said.lower(), said
    assert "this read changed nothing in Kustomer (what earlier steps created is unaffected)" in said


def test_every_error_survives_pickling_whole(api: respx.Router) -> None:
    """A caller that runs a script in a process pool gets its error back with every field."""
    invalid = {"errors": [{"code": "invalid", "title": "Bad channel", "source": {"pointer": "/data/channel"}}]}
    raised = fail(create_message, api, httpx.Response(400, json=invalid))
    assert (raised.status, raised.code, raised.pointer) == (400, "invalid", "/data/channel")
    errors = [
        raised,
        create_message.KustomerRateLimitError("Rate limited by Kustomer. ", "Run again later.", 1.7e9, 20),
        create_message.KustomerOutcomeUnknownError("The request was sent, and the connection broke.", 502),
        wait_for_bulk_results.KustomerBulkPendingError("Still running.", "0123456789abcdef01234567", "running"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301  # bytes this test just made
        assert (type(copy), str(copy), vars(copy)) == (type(error), str(error), vars(error))


def test_a_host_named_like_kustomers_that_cannot_be_reached_is_told_the_regions_hosts(fake_time: FakeTime) -> None:
    unknown_host = httpx.ConnectError("[Errno -2] Name or service not known")
    with respx.mock() as mock:
        mock.post(url__startswith="https://api.kustomerapp.eu").mock(side_effect=unknown_host)
        with pytest.raises(create_message.KustomerConnectionError) as raised:
            create_message.main({"apiKey": API_KEY, "baseUrl": "https://api.kustomerapp.eu"}, body_for(create_message))
    said = str(raised.value)
    assert "Could not connect to https://api.kustomerapp.eu" in said
    assert "set auth.baseUrl to the key's region: EU https://api.prod2.kustomerapp.com" in said


@BOTH
def test_a_4xx_whose_error_body_breaks_off_still_says_nothing_was_created(script: ModuleType) -> None:
    """The status is the answer: a 400 whose body is cut off is still a refusal, not an unknown outcome."""
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    with HostileServer([Answer([head + b'{"errors": [{"title": "conversation is requi'])]) as server:
        _, error = attempt(script, {"apiKey": API_KEY, "baseUrl": server.url})
        assert server.posts() == 1
    assert isinstance(error, script.KustomerAPIError), error
    assert error.status == 400
    assert "Nothing was created" in str(error)


@BOTH
def test_an_unexpected_error_before_anything_is_sent_says_nothing_was_created(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def a_bug(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(script, "trusted_context", a_bug)  # fails before any client exists
    _, error = attempt(script, {"apiKey": API_KEY})
    assert isinstance(error, script.KustomerConnectionError), error
    assert "Unexpected error before Kustomer answered (RuntimeError: a bug), so nothing was created." in str(error)
    assert "may or may not" not in str(error)


def test_each_of_several_errors_kustomer_lists_is_shown(api: respx.Router) -> None:
    errors = [
        {"title": "Invalid value", "source": {"pointer": f"/data/attributes/{field}"}}
        for field in ("channel", "direction", "sentAt")
    ]
    error = fail(create_message, api, httpx.Response(400, json={"errors": errors}))
    for field in ("channel", "direction", "sentAt"):
        assert f"at pointer /data/attributes/{field}" in str(error)
    assert error.pointer == "/data/attributes/channel"


def test_an_error_pages_words_show_even_after_a_page_of_blank_lines_and_markup(api: respx.Router) -> None:
    """An HTML error page without a title: its markup and blank lines are not what gets shown."""
    page = b"<html><body>" + b"<div>\n\n</div>" * 500 + b"<p>Upstream request timed out</p></body></html>"
    error = fail(create_message, api, httpx.Response(400, content=page))
    assert "Upstream request timed out" in str(error)
