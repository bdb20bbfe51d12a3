"""Hardening, second round (issue 15): what a lying or broken server can put in *successful* answers,
and the bounds of a whole job.

- Every string from the server is cleaned once before it is logged, raised or put in a report
  (control and format characters out, the key and any 16 characters of it hidden, length bounded);
  a success result keeps Kustomer's JSON otherwise exactly.
- wait_for_bulk_results: one deadline for every wait and request; pages bounded in number and bytes;
  a page seen twice, a chain that does not end, a link out of the operation, or a malformed page is
  an error that says so, never "complete".
- Each attempt is bounded from the moment its connection starts, a proxy's CONNECT included; a whole
  job by `max_job_seconds` (a create and its lookup) or by max_wait_seconds + READ_TIME (the waiter).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
import wait_for_bulk_results as wait
from conftest import US, FakeTime
from hostile_server import Answer, HostileServer

LONG_KEY = "kst_" + "0123456789abcdefghijklmnopqrstuvwxyz" * 6  # 220 characters
AUTH = {"apiKey": LONG_KEY}
BULK = "5f0c1a2b3c4d5e6f7a8b9c0d"
BATCHES = f"{US}/v1/bulk/{BULK}/batches"
EVIL = "\x1b[2J\x1b[Hcomplete \u202eetelpmoc\u202c\x07"


def fragments_of(key: str) -> list[str]:
    return [key[:-1], key[1:], key[7:23], key[100:116]]


def assert_no_16_characters_of_the_key(text: str) -> None:
    for i in range(len(LONG_KEY) - 15):
        assert LONG_KEY[i : i + 16] not in text, f"characters {i}..{i + 16} of the key show"


def page(results: list[dict[str, Any]], next_link: Any = None, **batch: Any) -> dict[str, Any]:
    fields = {"status": "complete", "successCount": sum(r.get("status") == "created" for r in results)}
    answer: dict[str, Any] = {"data": [{"type": "batch", "attributes": {**fields, **batch, "results": results}}]}
    if next_link is not None:
        answer["links"] = {"next": next_link}
    return answer


def created(ref: str) -> dict[str, Any]:
    return {"_clientRef": ref, "status": "created", "objectId": "6a" * 12}


def waiter(**args: Any) -> tuple[Any, BaseException | None]:
    try:
        return wait.main(AUTH, BULK, **args), None  # type: ignore[arg-type]
    except Exception as exc:  # the test inspects whatever the script raised
        return None, exc


# ---- 1 and 2: one cleaning step for every string from the server ----


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


# ---- 4: one deadline for the waiter ----


def test_429s_and_pacing_count_against_max_wait_seconds(fake_time: FakeTime) -> None:
    started = fake_time.now
    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(429, headers={"Retry-After": "60"})
        _, error = waiter(max_wait_seconds=60, min_interval_seconds=20)
    assert isinstance(error, wait.KustomerError)
    assert fake_time.now - started <= 60 + wait.READ_TIME  # was hours: each look waited its own 429s
    assert sum(fake_time.sleeps) <= 60 + wait.READ_TIME


def test_with_expected_items_the_pages_are_read_again_only_once_the_status_says_complete(fake_time: FakeTime) -> None:
    statuses = iter(["queued", "running", "complete"])
    with respx.mock() as mock:
        status = mock.get(f"{US}/v1/bulk/{BULK}").mock(
            side_effect=lambda _: httpx.Response(200, json={"data": {"attributes": {"status": next(statuses)}}})
        )
        pages = mock.get(BATCHES).mock(
            side_effect=[
                httpx.Response(200, json=page([], status="queued")),
                httpx.Response(200, json=page([created("r0"), created("r1")])),
            ]
        )
        report, error = waiter(expected_items=2, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert report["created"] == 2
    assert (pages.call_count, status.call_count) == (2, 3)  # not every page at every look


def chain(link: Callable[[int], Any], results: Callable[[int], list[dict[str, Any]]] = lambda n: []) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("page", "1"))
        return httpx.Response(200, json=page(results(number), link(number)))

    return answer


@pytest.mark.parametrize(
    ("link", "results", "said"),
    [
        (lambda n: f"/v1/bulk/{BULK}/batches", lambda n: [], "leads back to an earlier page"),
        (lambda n: f"/v1/bulk/{BULK}/batches?page={n + 1}", lambda n: [], "still links to a next one"),
        (lambda n: f"/v1/bulk/{BULK}/batches?page={n + 1}", lambda n: [created("r0")], "more than once"),
        (lambda n: f"/v1/bulk/{BULK}/batches?page={n + 1}", lambda n: [created(f"r{n}")], "more than the 1 messages"),
    ],
    ids=["repeats-a-page", "never-ends", "same-items-again", "too-many-items"],
)
def test_pages_that_repeat_or_never_end_are_an_error_never_complete(
    link: Callable[[int], Any], results: Callable[[int], list[dict[str, Any]]], said: str
) -> None:
    with respx.mock() as mock:
        route = mock.get(url__startswith=BATCHES).mock(side_effect=chain(link, results))
        report, error = waiter(expected_items=1, submitted_at="2020-01-01T00:00:00Z")
    assert report is None
    assert isinstance(error, wait.KustomerAPIError)
    assert said in str(error)
    assert "No outcome is taken from such pages" in str(error)
    assert route.call_count <= wait.MAX_PAGES + 1


def test_a_repeated_client_ref_echoing_the_key_is_named_without_it() -> None:
    ref = "\x1b[31m" + LONG_KEY[10:60]
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=page([created(ref), created(ref)]))
        _, error = waiter(expected_items=2, submitted_at="2020-01-01T00:00:00Z")
    assert isinstance(error, wait.KustomerAPIError)
    assert "more than once" in str(error)
    assert "\x1b" not in str(error)
    assert_no_16_characters_of_the_key(str(error))


def test_a_page_over_its_byte_bound_is_not_read() -> None:
    huge = page([created("r0")], padding="x" * wait.MAX_PAGE_BYTES)
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=huge)
        _, error = waiter(expected_items=1, submitted_at="2020-01-01T00:00:00Z")
    assert isinstance(error, wait.KustomerConnectionError)
    assert f"over {wait.MAX_PAGE_BYTES:,} bytes" in str(error)


# ---- 5: a next link is followed only on the same operation, malformed pages are named ----


@pytest.mark.parametrize(
    ("link", "said"),
    [
        (f"/v1/bulk/{BULK}/batches/../../../v1/customers", "leads out of this operation's batches"),
        (f"https://evil.example/v1/bulk/{BULK}/batches/%2e%2e/%2e%2e/x", "leads out of this operation's batches"),
        (f"/v1/bulk/{'0' * 24}/batches?page=2", "leads out of this operation's batches"),
        (f"/v1/bulk/{BULK}/batches?page=2#frag", "holds spaces, control or non-ASCII characters or #"),
        (f"/v1/bulk/{BULK}/batches?page=\u00e92", "holds spaces, control or non-ASCII characters or #"),
        (f"/v1/bulk/{BULK}/batches?page=2\r\nX-Evil: 1", "holds spaces, control or non-ASCII characters or #"),
        ("https://[::1/v1/bulk", "leads out of this operation's batches"),
        (5, "its next link is a number, not a link"),
    ],
    ids=["dot-dot", "encoded-dot-dot", "other-operation", "fragment", "non-ascii", "crlf", "invalid-url", "number"],
)
def test_a_next_link_leaving_the_operation_or_malformed_is_a_clear_error_and_not_followed(link: Any, said: str) -> None:
    with respx.mock() as mock:
        first = mock.get(BATCHES).respond(200, json=page([created("r0")], link))
        _, error = waiter(expected_items=1, submitted_at="2020-01-01T00:00:00Z")
    assert isinstance(error, wait.KustomerAPIError), error
    assert said in str(error)
    assert "\r" not in str(error)
    assert "\n" not in str(error)
    assert first.call_count == 1  # nothing else was asked for


def test_a_next_link_on_another_host_is_read_from_the_chosen_host_after_normalising() -> None:
    with respx.mock() as mock:
        second = mock.get(f"{BATCHES}?page=2").respond(200, json=page([created("r1")]))
        mock.get(BATCHES).respond(
            200, json=page([created("r0")], f"https://x.example/v1//bulk/./{BULK}/batches?page=2")
        )
        report, error = waiter(expected_items=2, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert second.call_count == 1
    assert second.calls[0].request.url.host == "api.kustomerapp.com"
    assert [i["_clientRef"] for i in report["items"]] == ["r0", "r1"]


@pytest.mark.parametrize(
    ("batch", "said"),
    [
        ({"results": 5}, "its batch 0 gives results as a number, not a list"),
        ({"objectIds": {"a": 1}}, "its batch 0 gives objectIds as an object, not a list"),
        ("batch", "its batch 0 is a string, not an object"),
    ],
    ids=["results-number", "ids-object", "batch-string"],
)
def test_a_malformed_page_names_what_is_wrong(batch: Any, said: str) -> None:
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json={"data": [batch]})
        _, error = waiter(expected_items=1, submitted_at="2020-01-01T00:00:00Z")
    assert isinstance(error, wait.KustomerAPIError), error
    assert said in str(error)


# ---- 11 and 16: every attempt bounded from its connection's start; every job bounded ----


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
