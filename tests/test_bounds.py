"""Bounded: an attempt from its connection's start however an answer drips, an answer however it is
compressed, the waiter's pages, and a whole job, every wait and request counted."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
import wait_for_bulk_results as wait
from conftest import API_KEY, US, FakeTime
from hostile_server import Answer, HostileServer, gzip_bomb
from script_calls import AUTH, BATCHES, BOTH, BULK, attempt, created, page, posts, run, waiter

from workbench.sandbox import Sandbox


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


def test_429s_and_pacing_count_against_max_wait_seconds(fake_time: FakeTime) -> None:
    started = fake_time.now
    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(429, headers={"Retry-After": "60"})
        _, error = waiter(max_wait_seconds=60, min_interval_seconds=20)
    assert isinstance(error, wait.KustomerError)
    assert fake_time.now - started <= 60 + wait.READ_TIME  # was hours: each look waited its own 429s
    assert sum(fake_time.sleeps) <= 60 + wait.READ_TIME


def test_a_page_over_its_byte_bound_is_not_read() -> None:
    huge = page([created("r0")], padding="x" * wait.MAX_PAGE_BYTES)
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=huge)
        _, error = waiter(expected_items=1, submitted_at="2020-01-01T00:00:00Z")
    assert isinstance(error, wait.KustomerConnectionError)
    assert f"over {wait.MAX_PAGE_BYTES:,} bytes" in str(error)


def test_a_proxy_dripping_its_connect_answer_costs_one_bounded_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    drip = Answer([bytes([c]) for c in b"HTTP/1.1 200 Connection established\r\n\r\n"], delay=0.2)
    monkeypatch.setattr(create_message, "POLICY", create_message.POLICY._replace(response_deadline=1.5))
    with HostileServer([drip]) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        started = time.monotonic()
        with pytest.raises(create_message.KustomerConnectionError) as caught:
            create_message.main(AUTH, {"channel": "chat", "app": "api", "direction": "in"})  # type: ignore[arg-type]
        took = time.monotonic() - started
    assert took < 4, f"{took:.1f} s: the CONNECT was not under the attempt's deadline"
    assert [r.split(b" ")[0] for r in proxy.requests] == [b"CONNECT"]  # one attempt, not five
    assert "took longer than 2 s and was cut off" in str(caught.value)
    assert "Nothing was sent" in str(caught.value)


def test_a_create_and_its_lookup_end_within_max_job_seconds(fake_time: FakeTime) -> None:
    started = fake_time.now
    deadline = started + create_message.POLICY.max_job_seconds
    attempts: list[float] = []

    def slow(status: int) -> Callable[[httpx.Request], httpx.Response]:
        def answer(request: httpx.Request) -> httpx.Response:
            attempts.append(fake_time.now)
            fake_time.now = min(deadline, fake_time.now + 50)  # 50 s each, cut off at the deadline (as its timer)
            return httpx.Response(status, headers={"Retry-After": "1"})

        return answer

    body = {"channel": "chat", "app": "api", "direction": "in", "externalId": "ext-1"}
    with respx.mock() as mock:
        mock.post(f"{US}/v1/messages").mock(side_effect=slow(502))
        lookup = mock.get(url__startswith=f"{US}/v1/messages/externalid=").mock(side_effect=slow(429))
        with pytest.raises(create_message.KustomerOutcomeUnknownError) as caught:
            create_message.main(AUTH, body)  # type: ignore[arg-type]
    assert fake_time.now <= deadline
    assert all(moment < deadline - 1 for moment in attempts)  # no attempt starts when the time is up
    assert lookup.call_count >= 2  # the lookup had its share of the time, and no more
    assert "past this job's time, 300 s at most" in str(caught.value)


@BOTH
def test_server_that_never_answers_fails_within_the_read_timeout_after_one_request(
    script: ModuleType, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(script, "POLICY", script.POLICY._replace(read_timeout=1.0))
    sandbox.configure(fault="hang")
    started = time.monotonic()
    outcome = run(script, sandbox.url, capsys)
    elapsed = time.monotonic() - started
    assert isinstance(outcome.error, script.KustomerOutcomeUnknownError)
    assert "no answer came within the read timeout" in str(outcome.error)
    assert "may or may not have been created" in str(outcome.error)
    assert posts(sandbox) == 1
    assert elapsed < 1.0 + 2.0  # the timeout, plus process and loopback slack


def test_the_deadline_also_cuts_an_attempt_on_a_connection_kept_open_from_the_one_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 429 on a kept-alive connection, then the retry on that same connection (no new connect, so no
    new socket to learn of) dripping its answer: the retry is cut at its deadline all the same."""
    listener = socket.create_server(("127.0.0.1", 0))
    body = json.dumps({"data": {"id": "slow"}}).encode()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            for answer in range(2):
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, rest = request.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(rest) < length:
                    rest += connection.recv(65536)
                if answer == 0:
                    connection.sendall(
                        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n{}"
                    )
                    continue
                connection.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(body))
                for byte in body:
                    time.sleep(0.25)
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        return

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(
        create_message, "POLICY", create_message.POLICY._replace(response_deadline=1.5, read_timeout=5.0)
    )
    started = time.monotonic()  # the Retry-After wait is on the fake clock: only the attempts take real time
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    message = {"channel": "sms", "app": "twilio", "direction": "in"}
    result, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": url}, message)
    elapsed = time.monotonic() - started
    listener.close()
    assert isinstance(error, create_message.KustomerOutcomeUnknownError), (result, error)
    assert "took longer than 2 s" in str(error) or "took longer than 1 s" in str(error)
    assert elapsed < 1.5 + 1.0  # the cut attempt and slack; the drip would take 6 s


@pytest.mark.parametrize(
    ("value", "limit"),
    [(["x" * 58, "y" * 10_000_000], 60), ({"k" * 57: "y" * 10_000_000}, 60), ([123456, "y" * 10_000_000], 6)],
    ids=["a-list-item", "a-dict-value", "past-a-short-item"],
)
def test_show_renders_within_its_budget_not_a_long_string_past_it(value: Any, limit: int) -> None:
    """A string that starts where the budget is already spent gets a room below 0: it is cut to nothing,
    not to value[:-2], which copied (and JSON-encoded) nearly all of it before the shown text was cut."""
    tracemalloc.start()
    try:
        shown = create_message.show(value, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(shown) <= limit
    assert peak < 100_000, f"peak {peak / 1e6:.0f} MB"


def test_a_bulk_request_ends_within_max_job_seconds_however_slowly_its_429s_come(fake_time: FakeTime) -> None:
    started = fake_time.now
    deadline = started + bulk_create_messages.POLICY.max_job_seconds
    attempts: list[float] = []

    def slow_429(request: httpx.Request) -> httpx.Response:
        attempts.append(fake_time.now)
        fake_time.now = min(deadline, fake_time.now + 50)  # 50 s each, cut off at the deadline (as its timer)
        return httpx.Response(429, headers={"Retry-After": "1"})

    with respx.mock() as mock:
        mock.post(f"{US}/v1/messages/bulk").mock(side_effect=slow_429)
        _, error = attempt(bulk_create_messages, AUTH)
    assert isinstance(error, bulk_create_messages.KustomerRateLimitError)
    assert fake_time.now <= deadline
    assert all(moment < deadline - 1 for moment in attempts)  # no attempt starts when the time is up
    assert "past this job's time, 300 s at most" in str(error)


def test_an_answer_of_exactly_the_size_limit_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = json.dumps({"data": {"id": "6a" * 12, "attributes": {"preview": "x" * 1000}}}).encode()
    monkeypatch.setattr(create_message, "POLICY", create_message.POLICY._replace(max_response_bytes=len(answer)))
    with respx.mock() as mock:
        mock.post(f"{US}/v1/messages").respond(201, content=answer)
        result, error = attempt(create_message, AUTH)
    assert error is None, error
    assert result == json.loads(answer)


def test_pacing_that_would_push_a_read_past_the_jobs_time_ends_it_as_pending_within_that_time(
    fake_time: FakeTime,
) -> None:
    """A read whose turn comes after max_wait_seconds + 60 s is not waited for: the job ends in time, as
    pending, with the bulk_id to look again with (not as a connection that failed)."""
    started = fake_time.now
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(200, json={"data": {"attributes": {"status": "complete"}}})
        mock.get(BATCHES).respond(200, json=page([created("r0")]))
        _, error = waiter(max_wait_seconds=60, min_interval_seconds=150)
    assert isinstance(error, wait.KustomerBulkPendingError), error
    assert f"Run this script again later with bulk_id {BULK}" in str(error)
    assert fake_time.now - started <= 60 + wait.READ_TIME


def test_read_outcomes_starts_no_request_past_the_deadline_it_is_given(fake_time: FakeTime) -> None:
    """The import flow's one look ends by its deadline: a status read that took 30 s leaves no time for
    the pages before a 10 s deadline, so they are not read."""
    started, asked = fake_time.now, []

    def slow_status(request: httpx.Request) -> httpx.Response:
        asked.append(fake_time.now - started)
        fake_time.now += 30
        return httpx.Response(200, json={"data": {"attributes": {"status": "complete"}}})

    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").mock(side_effect=slow_status)
        pages = mock.get(BATCHES).respond(200, json=page([created("r0")]))
        with pytest.raises(wait.KustomerBulkPendingError):
            wait.read_outcomes(AUTH, BULK, 0, deadline=started + 10)  # type: ignore[arg-type]
    assert asked == [0]
    assert pages.call_count == 0
