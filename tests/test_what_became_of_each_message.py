"""wait_for_bulk_results against the sandbox over real sockets: it waits out the lifecycle, reads
every page of every shape, matches by _clientRef, explains a missing role, and says when to look
again if the wait runs out. Worker-style jobs where the wait is real, in-process with the fake clock
where it would be long."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
import wait_for_bulk_results as wait
from conftest import API_KEY, US, FakeTime
from hostile_server import Answer, HostileServer
from script_calls import BATCHES, BULK, chain, created, page, waiter

from workbench.paths import SCRIPTS
from workbench.sandbox import Sandbox
from workbench.sandbox.state import SIMULATED_FAILURE
from workbench.worker import run_job


def submit(box: Sandbox, count: int, refs: bool = True, **message: Any) -> dict[str, Any]:
    body = [
        {"channel": "chat", "app": "api", **message, **({"_clientRef": f"r{i}"} if refs else {})} for i in range(count)
    ]
    job = run_job(SCRIPTS / "bulk_create_messages.py", {"auth": auth(box), "body": body})
    assert job.exit_code == 0, job.result
    bulk: dict[str, Any] = job.result["data"]
    return bulk


def auth(box: Sandbox) -> dict[str, str]:
    return {"apiKey": "sandbox-key-0123456789", "baseUrl": box.url}


def gets(box: Sandbox) -> list[str]:
    return [r["path"] for r in box.requests if r["method"] == "GET"]


def test_waits_for_the_lifecycle_then_returns_each_message_by_client_ref() -> None:
    with Sandbox(bulk_seconds=1.5, item_failure_rate=0.3, seed=7) as box:
        bulk = submit(box, 10)
        job = run_job(SCRIPTS / "wait_for_bulk_results.py", {"auth": auth(box), "bulk_id": bulk["id"]})
        created = box.created_by_ref
    assert job.exit_code == 0, job.result
    report = job.result
    assert report["status"] == "complete"
    assert [i["_clientRef"] for i in report["items"]] == [f"r{i}" for i in range(10)]
    assert {i["_clientRef"] for i in report["items"] if i["status"] == "created"} == set(created)
    failed = [i for i in report["items"] if i["status"] == "error"]
    assert failed, "seed 7 fails some items"
    assert all(i["error"] in (SIMULATED_FAILURE,) for i in failed)
    assert report["created"] + report["failed"] == 10
    assert report["failed"] == len(failed)
    # a wait of a second or more says so in the log; without submitted_at, it does not claim to know when
    assert ": submitted_at not given, so the first look waits as for an operation just submitted; waiting 5 s" in (
        job.logs
    )


@pytest.mark.parametrize(
    ("submitted", "said"),
    [
        (None, ": submitted_at not given, so the first look waits as for an operation just submitted; waiting 5 s"),
        (0, " was just submitted; waiting 5 s"),
        (-2, " was submitted 2 s ago; waiting 3 s"),
    ],
    ids=["not-given", "just-now", "2-s-ago"],
)
def test_the_first_wait_says_what_it_knows_of_when_the_operation_was_submitted(
    fake_time: FakeTime, capsys: pytest.CaptureFixture[str], submitted: int | None, said: str
) -> None:
    when = (
        {}
        if submitted is None
        else {"submitted_at": f"{datetime.fromtimestamp(fake_time.now + submitted, UTC):%Y-%m-%dT%H:%M:%SZ}"}
    )
    with Sandbox() as box:
        bulk = submit(box, 1)
        wait.main(auth(box), bulk["id"], **when)  # type: ignore[arg-type]
    assert f"Bulk operation {bulk['id']}{said}, until " in capsys.readouterr().out


def test_with_expected_items_one_read_of_a_finished_operation_confirms_it(sandbox: Sandbox) -> None:
    bulk = submit(sandbox, 3)
    job = run_job(
        SCRIPTS / "wait_for_bulk_results.py",
        {"auth": auth(sandbox), "bulk_id": bulk["id"], "expected_items": 3, "submitted_at": "2020-01-01T00:00:00Z"},
    )
    assert job.exit_code == 0, job.result
    assert job.result["created"] == 3
    assert gets(sandbox) == [f"/v1/bulk/{bulk['id']}/batches"]  # no status poll, no first delay


def test_without_client_refs_it_returns_counts_and_ids_and_says_why_no_items() -> None:
    with Sandbox() as box:
        bulk = submit(box, 4, refs=False)
        job = run_job(SCRIPTS / "wait_for_bulk_results.py", {"auth": auth(box), "bulk_id": bulk["id"]})
    assert job.result["items"] == []
    assert job.result["created"] == 4
    assert len(job.result["object_ids"]) == 4
    assert "only when every message of the request carries a _clientRef" in job.result["note"]


@pytest.mark.parametrize("shape", ["array", "jsonapi"])
def test_every_page_of_either_shape_is_read(shape: str, fake_time: FakeTime) -> None:
    with Sandbox(batch_size=10, batches_shape=shape, batches_page_size=2) as box:
        bulk = submit(box, 45)
        report = wait.main(auth(box), bulk["id"], expected_items=45)  # type: ignore[arg-type]
        pages = [p for p in gets(box) if "/batches" in p]
    assert [i["_clientRef"] for i in report["items"]] == [f"r{i}" for i in range(45)]
    assert len(pages) == (3 if shape == "jsonapi" else 1)


def test_a_key_without_the_bulk_read_role_is_explained() -> None:
    denied = Answer.http(403, b'{"errors": [{"code": "forbidden", "title": "Forbidden"}]}')
    with HostileServer([denied]) as server:
        job = run_job(
            SCRIPTS / "wait_for_bulk_results.py",
            {
                "auth": {"apiKey": API_KEY, "baseUrl": server.url},
                "bulk_id": "a" * 24,
                "submitted_at": "2020-01-01T00:00Z",
            },
        )
    assert job.exit_code == 1
    assert job.result["name"] == "KustomerAPIError"
    assert "org.permission.bulk.read" in job.result["message"]
    assert API_KEY not in job.output


def test_when_the_wait_runs_out_it_says_the_operation_is_still_running_and_its_id(fake_time: FakeTime) -> None:
    with Sandbox(bulk_seconds=3600) as box:
        bulk = submit(box, 2)
        with pytest.raises(wait.KustomerBulkPendingError) as failure:
            wait.main(auth(box), bulk["id"], max_wait_seconds=60)  # type: ignore[arg-type]
    text = str(failure.value)
    assert f"Bulk operation {bulk['id']} is still " in text
    assert f"again later with bulk_id {bulk['id']}" in text
    assert failure.value.bulk_id == bulk["id"]
    assert sum(fake_time.sleeps) <= 60


@pytest.mark.parametrize("max_wait", [0, 3])
def test_the_first_look_waits_no_longer_than_max_wait_seconds(fake_time: FakeTime, max_wait: int) -> None:
    with Sandbox(bulk_seconds=3600) as box:
        bulk = submit(box, 2)  # just submitted: the first look would wait 5 s
        with pytest.raises(wait.KustomerBulkPendingError) as failure:
            wait.main(auth(box), bulk["id"], max_wait_seconds=max_wait)  # type: ignore[arg-type]
    assert f"(max_wait_seconds {max_wait})" in str(failure.value)
    assert sum(fake_time.sleeps) <= max_wait


def test_lost_answers_of_a_read_are_asked_again(fake_time: FakeTime) -> None:
    """A GET is idempotent: a 503, or a connection dropped mid-answer, is read again."""
    batches = b'[{"status": "complete", "successCount": 1, "failureCount": 0, "objectIds": ["' + b"b" * 24 + b'"]}]'
    answers = [
        Answer.http(503),
        Answer([b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n[{"]),
        Answer.http(200, batches),
    ]
    with HostileServer(answers) as server:
        report = wait.main({"apiKey": API_KEY, "baseUrl": server.url}, "c" * 24, expected_items=1)
        assert len(server.requests) == 3
    assert report["created"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"bulk_id": "nope"}, "bulk_id: must be a bulk operation's id (24 hex characters)"),
        ({"bulk_id": "a" * 24, "expected_items": -1}, "expected_items: must be 0 (unknown)"),
        ({"bulk_id": "a" * 24, "submitted_at": "yesterday"}, "submitted_at: must be empty or a date-time"),
        ({"bulk_id": "a" * 24, "max_wait_seconds": -5}, "max_wait_seconds: must be 0 to 86400"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(args: dict[str, Any], expected: str) -> None:
    with pytest.raises(wait.KustomerInputError) as failure:
        wait.main({"apiKey": API_KEY, "baseUrl": "http://127.0.0.1:9"}, **args)
    assert expected in str(failure.value)


# ---- create_message after an unknown outcome ----


def create_job(box: Sandbox, message: dict[str, Any], api_key: str = "sandbox-key-0123456789") -> Any:
    return run_job(SCRIPTS / "create_message.py", {"auth": {"apiKey": api_key, "baseUrl": box.url}, "body": message})


MESSAGE = {"channel": "email", "app": "postmark", "direction": "in", "externalId": "<lost-answer@mail.example>"}


def test_an_applied_create_whose_answer_is_lost_is_found_by_external_id(sandbox: Sandbox) -> None:
    sandbox.configure(fault="applied_500", fault_count=1)
    job = create_job(sandbox, MESSAGE)
    assert job.exit_code == 0, job.result
    assert job.result["data"]["type"] == "message"
    assert job.result["data"]["attributes"]["externalId"] == MESSAGE["externalId"]
    assert "found by its externalId" in job.logs
    assert [r["method"] for r in sandbox.requests] == ["POST", "GET"]  # never POSTed again
    assert len(sandbox.messages) == 1
    assert sandbox.requests[1]["path"] == "/v1/messages/externalid=%3Clost-answer%40mail.example%3E"


def test_a_lost_create_not_found_by_lookup_is_still_unknown_and_says_so(sandbox: Sandbox) -> None:
    sandbox.configure(fault="503", fault_count=1)
    job = create_job(sandbox, MESSAGE)
    assert job.exit_code == 1
    assert job.result["name"] == "KustomerOutcomeUnknownError"
    assert "may or may not have been created" in job.result["message"]
    assert "not found at that time; it may still appear" in job.result["message"]
    assert [r["method"] for r in sandbox.requests] == ["POST", "GET"]


def test_a_lookup_refused_for_its_role_says_which_role_would_let_the_script_check() -> None:
    answers = [Answer.http(502), Answer.http(403, b'{"errors": [{"code": "forbidden"}]}')]
    with HostileServer(answers) as server:
        job = run_job(
            SCRIPTS / "create_message.py", {"auth": {"apiKey": API_KEY, "baseUrl": server.url}, "body": MESSAGE}
        )
        assert server.posts() == 1
    assert job.result["name"] == "KustomerOutcomeUnknownError"
    assert "org.permission.message.read" in job.result["message"]
    assert "lets this script check by itself" in job.result["message"]


def test_without_an_external_id_nothing_is_looked_up(sandbox: Sandbox) -> None:
    sandbox.configure(fault="503", fault_count=1)
    job = create_job(sandbox, {k: v for k, v in MESSAGE.items() if k != "externalId"})
    assert job.result["name"] == "KustomerOutcomeUnknownError"
    assert [r["method"] for r in sandbox.requests] == ["POST"]


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


@pytest.mark.parametrize(
    ("expected", "said"), [(3, "fewer than expected_items (3)"), (1, "more than expected_items (1)")]
)
def test_a_wrong_expected_items_is_named_at_once_not_taken_for_a_running_operation(
    fake_time: FakeTime, expected: int, said: str
) -> None:
    """Kustomer says complete and its batches hold 2 outcomes: a wrong expected_items is the user's to fix,
    never "still running" after max_wait_seconds, nor pages that "cannot be read"."""
    with respx.mock(assert_all_called=False) as mock:  # too many outcomes are seen before any status poll
        mock.get(f"{US}/v1/bulk/{BULK}").mock(
            return_value=httpx.Response(200, json={"data": {"attributes": {"status": "complete"}}})
        )
        mock.get(BATCHES).mock(return_value=httpx.Response(200, json=page([created("r0"), created("r1")])))
        report, error = waiter(expected_items=expected, submitted_at="2020-01-01T00:00:00Z")
    assert report is None
    assert isinstance(error, wait.KustomerAPIError), error
    assert not isinstance(error, wait.KustomerBulkPendingError)
    assert said in str(error), str(error)
    assert f"run this script again with expected_items 2 (or 0, unknown) and bulk_id {BULK}" in str(error)
    assert sum(fake_time.sleeps) < 70  # not max_wait_seconds (600) of looks: the short count, 30 s alike


def test_a_complete_operation_whose_counts_lag_behind_its_status_is_looked_at_again_not_refused(
    fake_time: FakeTime,
) -> None:
    """Kustomer's guide does not say that a batch's counts are written before the operation says
    "complete": a short count is looked at again; only one that stays the same 30 s is the input's."""
    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").mock(
            return_value=httpx.Response(200, json={"data": {"attributes": {"status": "complete"}}})
        )
        mock.get(BATCHES).mock(
            side_effect=[
                httpx.Response(200, json=page([created("r0"), created("r1")])),  # the first look, before any poll
                *[httpx.Response(200, json=page([created("r0"), created("r1")]))] * 3,  # "complete", 2 + 4 + 8 s behind
                httpx.Response(200, json=page([created("r0"), created("r1"), created("r2")])),
            ]
        )
        report, error = waiter(expected_items=3, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert [item["_clientRef"] for item in report["items"]] == ["r0", "r1", "r2"]


@pytest.mark.parametrize(
    "counts",
    [{"successCount": 1}, {}, {"successCount": 0, "failureCount": 0}],
    ids=["no-failure-count", "no-counts", "counts-of-zero"],
)
def test_outcomes_listed_without_their_counts_are_counted_not_taken_for_a_wrong_expected_items(
    fake_time: FakeTime, counts: dict[str, int]
) -> None:
    """A batch lists both outcomes, but Kustomer leaves out (or zeroes) a count: the listing counts them, as
    the report does. With the right expected_items it is complete, never "expected_items is wrong"."""
    results = [created("r0"), {"_clientRef": "r1", "status": "error", "error": "bad"}]
    batch = {"data": [{"type": "batch", "attributes": {"status": "complete", **counts, "results": results}}]}
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").mock(
            return_value=httpx.Response(200, json={"data": {"attributes": {"status": "complete"}}})
        )
        mock.get(BATCHES).mock(return_value=httpx.Response(200, json=batch))
        report, error = waiter(expected_items=2, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert (report["created"], report["failed"]) == (1, 1)
    assert sum(fake_time.sleeps) < 10  # one look confirms it


@pytest.mark.parametrize(
    ("link", "results", "said"),
    [
        (lambda n: f"/v1/bulk/{BULK}/batches", lambda n: [], "leads back to an earlier page"),
        (lambda n: f"/v1/bulk/{BULK}/batches?page={n + 1}", lambda n: [], "still links to a next one"),
        (lambda n: f"/v1/bulk/{BULK}/batches?page={n + 1}", lambda n: [created("r0")], "more than once"),
        (
            lambda n: f"/v1/bulk/{BULK}/batches?page={n + 1}",
            lambda n: [created(f"r{n}")],
            "more than expected_items (1)",
        ),
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


def test_every_5xx_to_a_read_500_included_is_asked_again(fake_time: FakeTime) -> None:
    with respx.mock() as mock:
        mock.get(BATCHES).mock(side_effect=[httpx.Response(500), httpx.Response(200, json=page([created("r0")]))])
        report, error = waiter(expected_items=1, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert [item["_clientRef"] for item in report["items"]] == ["r0"]


def test_a_read_whose_connection_closes_before_any_answer_is_asked_again() -> None:
    """The server read the GET and hung up without a word: reading again changes nothing in Kustomer."""
    batches = b'[{"status": "complete", "successCount": 1, "failureCount": 0, "objectIds": ["' + b"b" * 24 + b'"]}]'
    with HostileServer([Answer([]), Answer.http(200, batches)]) as server:
        report = wait.main({"apiKey": API_KEY, "baseUrl": server.url}, "c" * 24, expected_items=1)
        assert len(server.requests) == 2
    assert report["created"] == 1


def test_expected_items_of_a_full_request_of_100_messages_is_accepted(fake_time: FakeTime) -> None:
    outcomes = [created(f"r{i}") for i in range(100)]
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=page(outcomes))
        report, error = waiter(expected_items=100, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert report["created"] == 100
    assert len(report["items"]) == 100


def test_a_submitted_at_in_the_future_makes_the_first_look_wait_no_more_than_5_s(fake_time: FakeTime) -> None:
    """A clock or time-zone mistake (submitted_at an hour ahead) does not hold the first look back an hour."""
    ahead = datetime.fromtimestamp(fake_time.now + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=page([created("r0")]))
        report, error = waiter(expected_items=1, submitted_at=ahead)
    assert error is None, error
    assert report["created"] == 1
    assert fake_time.sleeps == [wait.FIRST_LOOK_AFTER]


def test_no_look_starts_after_max_wait_seconds_once_a_429_wait_took_its_share(fake_time: FakeTime) -> None:
    started, asked = fake_time.now, []

    def status(request: httpx.Request) -> httpx.Response:
        asked.append(fake_time.now - started)
        if len(asked) == 2:  # the second look waits out a 15 s window
            return httpx.Response(429, headers={"Retry-After": "15"})
        return httpx.Response(200, json={"data": {"attributes": {"status": "running"}}})

    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").mock(side_effect=status)
        _, error = waiter(max_wait_seconds=30, submitted_at="2020-01-01T00:00:00Z")
    assert isinstance(error, wait.KustomerBulkPendingError), error
    assert "(max_wait_seconds 30)" in str(error)
    assert max(asked) <= 30, asked


def batches_answer(*batches: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "data": [
            {"type": "batch", "attributes": {"status": status, "successCount": len(results), "results": results}}
            for status, results in batches
        ]
    }


def test_a_batch_still_running_after_complete_is_waited_for_not_taken_for_a_wrong_expected_items(
    fake_time: FakeTime,
) -> None:
    """Kustomer says "complete" while one of its batches still says "running" for over a minute: the count
    is not final, so expected_items is not named wrong; the outcomes are read once that batch is done."""
    started = fake_time.now

    def batches(request: httpx.Request) -> httpx.Response:
        late = ("complete", [created("r1")]) if fake_time.now - started >= 70 else ("running", [])
        return httpx.Response(200, json=batches_answer(("complete", [created("r0")]), late))

    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(200, json={"data": {"attributes": {"status": "complete"}}})
        mock.get(BATCHES).mock(side_effect=batches)
        report, error = waiter(expected_items=2, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert [item["_clientRef"] for item in report["items"]] == ["r0", "r1"]


def test_a_count_still_growing_after_complete_is_not_taken_for_a_wrong_expected_items(fake_time: FakeTime) -> None:
    """The count after "complete" moves (1, 2, 3, then 4 of 4) over more than 30 s: only a count that stays
    the same 30 s is the input's mistake; one that keeps growing is waited for."""
    started = fake_time.now

    def batches(request: httpx.Request) -> httpx.Response:
        elapsed = fake_time.now - started
        done = 1 if elapsed < 10 else 2 if elapsed < 40 else 3 if elapsed < 75 else 4
        return httpx.Response(200, json=batches_answer(("complete", [created(f"r{i}") for i in range(done)])))

    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(200, json={"data": {"attributes": {"status": "complete"}}})
        mock.get(BATCHES).mock(side_effect=batches)
        report, error = waiter(expected_items=4, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert report["created"] == 4


def test_min_interval_seconds_keeps_that_much_time_between_two_reads(fake_time: FakeTime) -> None:
    asked: list[float] = []

    def record(answer: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
        def respond(request: httpx.Request) -> httpx.Response:
            asked.append(fake_time.now)
            return httpx.Response(200, json=answer)

        return respond

    with respx.mock() as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").mock(side_effect=record({"data": {"attributes": {"status": "complete"}}}))
        mock.get(BATCHES).mock(side_effect=record(page([created("r0")])))
        report, error = waiter(submitted_at="2020-01-01T00:00:00Z", min_interval_seconds=20)
    assert error is None, error
    assert report["created"] == 1
    assert len(asked) == 2
    assert asked[1] - asked[0] >= 20


def test_an_operation_whose_status_is_not_given_is_not_taken_for_complete(fake_time: FakeTime) -> None:
    """Without expected_items, only Kustomer's "complete" lets the pages be read: an answer without a status
    (and pages that list nothing yet) is still queued, never a report of nothing created."""
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{US}/v1/bulk/{BULK}").respond(200, json={"data": {"type": "bulk", "attributes": {}}})
        pages = mock.get(BATCHES).respond(200, json={"data": []})
        report, error = waiter(max_wait_seconds=60)
    assert report is None
    assert isinstance(error, wait.KustomerBulkPendingError), error
    assert pages.call_count == 0


def test_a_created_outcome_with_an_empty_error_field_is_created_not_failed(fake_time: FakeTime) -> None:
    """Kustomer's example omits `error` on a created item; a null or empty one says no more. Taken for a
    failure, the message would go to the retry file and be created twice."""
    results = [{**created("r0"), "error": None}, {**created("r1"), "error": ""}, created("r2")]
    with respx.mock() as mock:
        mock.get(BATCHES).respond(200, json=page(results))
        report, error = waiter(expected_items=3, submitted_at="2020-01-01T00:00:00Z")
    assert error is None, error
    assert [(item["_clientRef"], item["status"]) for item in report["items"]] == [
        ("r0", "created"),
        ("r1", "created"),
        ("r2", "created"),
    ]
    assert (report["created"], report["failed"]) == (3, 0)
