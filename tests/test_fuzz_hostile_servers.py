"""Fuzzing the scripts against hostile servers: random statuses, headers, encodings, chunking and
pacing, on a real loopback server. On every example the promises hold:

- the key shows nowhere: not in the result, the error (text, attributes, chain, traceback) or the log;
- time is bounded: each attempt ends within the response deadline, and waits stay within the policy;
- memory is bounded: a compressed answer never inflates past a small multiple of the size limit;
- exactly one POST, unless Kustomer answered 429 (then one more per 429);
- "outcome unknown" only when the request was sent; a refusal (4xx) is never called unknown;
- the result is strict JSON (no NaN or Infinity, whatever numbers the server sent).

The same over TLS, with a test CA made per run; and wait_for_bulk_results against drawn status and
page shapes (repeated and endless pages, links out of the operation, counts out of range, the key
echoed): its job stays within max_wait_seconds + READ_TIME and never calls inconsistent pages complete.
"""

from __future__ import annotations

import gzip
import json
import ssl
import time
import tracemalloc
import zlib
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
import trustme
import wait_for_bulk_results
from conftest import FakeTime
from hostile_server import Answer, HostileServer, gzip_bomb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from script_calls import everything_shown

KEY = "kst_fuzz_" + "A1b2C3d4E5f6" * 6
DEADLINE = 0.6
LIMIT = 200_000  # max_response_bytes for these examples, so a bomb is quick to make and to stop
MESSAGE = {"channel": "sms", "app": "twilio", "direction": "in", "externalId": "SM-fuzz"}

statuses = st.sampled_from([200, 201, 204, 301, 307, 400, 401, 403, 404, 409, 413, 429, 429, 500, 502, 503]) | (
    st.integers(100, 599).filter(lambda s: s not in (100, 101, 102, 103))
)
header_values = st.sampled_from(
    ["inf", "-inf", "nan", "1e300", "1e20", "-5", "0", "1", "3", "1700000000", "soon", "Wed, 21 Oct 2015 07:28 GMT"]
) | st.floats(allow_nan=True, allow_infinity=True).map(repr)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    kinds = ["json", "echo", "success-echo", "huge-number", "text", "empty", "gzip", "deflate", "bomb", "bad-encoding"]
    kind = draw(st.sampled_from(kinds))
    document = {"data": {"id": "m1", "type": "message"}, "errors": [{"detail": draw(st.text(max_size=30))}]}
    if kind == "json":
        return json.dumps(document).encode(), {"Content-Type": "application/json"}
    if kind == "echo":  # the key, whole, cut, URL-encoded, amid control characters
        cut = draw(st.integers(16, len(KEY)))
        echo = [KEY, KEY[:cut], f"\x1b[31m{KEY}\u202e", KEY.replace("_", "%5F")]
        return json.dumps({"data": {"echo": echo}, "errors": [{"detail": " ".join(echo)}]}).encode(), {}
    if kind == "success-echo":  # any 16 or more characters of the key, from anywhere in it, in a success answer
        start = draw(st.integers(0, len(KEY) - 16))
        piece = KEY[start : draw(st.integers(start + 16, len(KEY)))]
        return json.dumps({"data": {"id": "m1", "attributes": {"preview": f"x{piece}y", piece: [piece]}}}).encode(), {}
    if kind == "huge-number":
        number = draw(st.sampled_from(["1e400", "-1e400", "1e308", "123456789012345678901234567890"]))
        return b'{"data": {"id": "m1", "attributes": {"size": ' + number.encode() + b"}}}", {}
    if kind == "text":
        return draw(st.binary(max_size=200)), {"Content-Type": "text/html"}
    if kind == "empty":
        return b"", {}
    if kind == "gzip":
        return gzip.compress(json.dumps(document).encode()), {"Content-Encoding": "gzip"}
    if kind == "deflate":
        return zlib.compress(json.dumps(document).encode()), {"Content-Encoding": "deflate"}
    if kind == "bomb":
        return gzip_bomb(2, 100 * LIMIT), {"Content-Encoding": "gzip, gzip"}
    return b"\x1f\x8b garbage", {"Content-Encoding": draw(st.sampled_from(["gzip", "br", "zstd", "x-custom"]))}


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    status = draw(statuses)
    body, headers = draw(bodies())
    if draw(st.booleans()):
        headers["Retry-After"] = draw(header_values)
    if draw(st.booleans()):
        headers["x-ratelimit-reset"] = draw(header_values)
    if draw(st.booleans()):
        headers["Location"] = f"https://elsewhere.example/?k={KEY}"
    reason = draw(st.sampled_from(["", "OK", KEY, "Bad\x1b[0m\u202e"]))
    answer = Answer.http(status, body, headers, reason=reason, chunk=draw(st.sampled_from([0, 1, 7, 512])))
    if draw(st.integers(0, 9)) == 0:  # now and then, cut off before the end
        answer.chunks = answer.chunks[: max(1, len(answer.chunks) // 2)]
    if len(answer.chunks) <= 40 and status != 429:  # pace only a few answers, so an example stays quick
        answer.delay = draw(st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.05]))
    return answer


@pytest.fixture
def tight_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for script in (create_message, bulk_create_messages):
        policy = script.POLICY._replace(response_deadline=DEADLINE, read_timeout=DEADLINE, max_response_bytes=LIMIT)
        monkeypatch.setattr(script, "POLICY", policy)


@pytest.mark.usefixtures("tight_policy")
@pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])
@settings(
    max_examples=settings().max_examples // 2 or 1,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script_answers=st.lists(answers(), min_size=1, max_size=3))
def test_promises_hold_whatever_the_server_does(
    script: ModuleType,
    script_answers: list[Answer],
    fake_time: FakeTime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    promises_hold(script, script_answers, fake_time, capsys)


@pytest.fixture(scope="module")
def tls_server_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    pem = tmp_path_factory.mktemp("ca") / "fuzz-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return context, str(pem)


@pytest.mark.usefixtures("tight_policy")
@settings(
    max_examples=settings().max_examples // 4 or 1,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script_answers=st.lists(answers(), min_size=1, max_size=3))
def test_promises_hold_over_tls_too(
    script_answers: list[Answer],
    fake_time: FakeTime,
    capsys: pytest.CaptureFixture[str],
    tls_server_context: tuple[ssl.SSLContext, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context, ca_file = tls_server_context
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # the test CA, trusted only here
    promises_hold(create_message, script_answers, fake_time, capsys, context)


def promises_hold(
    script: ModuleType,
    script_answers: list[Answer],
    fake_time: FakeTime,
    capsys: pytest.CaptureFixture[str],
    tls: ssl.SSLContext | None = None,
) -> None:
    slept_before = len(fake_time.sleeps)  # the fixture lives across examples
    body: Any = dict(MESSAGE) if script is create_message else [dict(MESSAGE, _clientRef="r1")]
    with HostileServer(script_answers, tls=tls) as server:
        tracemalloc.start()
        started = time.monotonic()
        try:
            result, error = script.main({"apiKey": KEY, "baseUrl": server.url}, body), None
        except Exception as exc:  # the properties below judge what was raised
            result, error = None, exc
        finally:
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        posts = server.posts()
        statuses_seen = [_status(a) for a in script_answers]
    logs = capsys.readouterr()

    shown = everything_shown(error, result) + logs.out + logs.err
    assert_no_piece_of_the_key(shown)
    json.dumps(result, allow_nan=False)  # strict JSON, as Windmill stores it with no rewriting
    assert isinstance(error, script.KustomerError | type(None)), repr(error)

    assert elapsed < len(server.requests) * (DEADLINE + 0.5) + 0.5  # POSTs, and GETs looking up an unknown outcome
    assert sum(fake_time.sleeps[slept_before:]) <= script.POLICY.max_total_wait
    assert peak < 5 * LIMIT + 2_000_000

    assert posts >= 1
    rate_limited = [statuses_seen[min(i, len(statuses_seen) - 1)] == 429 for i in range(posts - 1)]
    assert all(rate_limited), "a POST was repeated after something other than a 429"

    if isinstance(error, script.KustomerOutcomeUnknownError):
        assert posts >= 1
    last_answer = script_answers[min(posts - 1, len(script_answers) - 1)]
    last = _status(last_answer)
    arrived = last is not None and last_answer.delay == 0  # a paced head may miss the deadline, rightly
    if arrived and last is not None and 400 <= last < 500 and last != 429 and error is not None:
        assert isinstance(error, script.KustomerAPIError), f"{last} answered, yet {type(error).__name__}"
    if arrived and last is not None and 300 <= last < 400 and error is not None:  # a POST arrived: never "not sent"
        assert isinstance(error, script.KustomerOutcomeUnknownError), f"{last} answered, yet {type(error).__name__}"


def assert_no_piece_of_the_key(shown: str) -> None:
    assert not any(KEY[i : i + 16] in shown for i in range(len(KEY) - 15)), "16 characters of the key show"


def _status(answer: Answer) -> int | None:
    """The status the answer announces, if its status line and headers arrive whole."""
    raw = b"".join(answer.chunks)
    if b"\r\n\r\n" not in raw:
        return None
    try:
        return int(raw.split(b"\r\n", 1)[0].split()[1])
    except (IndexError, ValueError):
        return None


# ---- wait_for_bulk_results against drawn status and page shapes ----

BULK = "5f0c1a2b3c4d5e6f7a8b9c0d"
ANY_TEXT = st.sampled_from(["complete", "queued", "running", "\x1b[2Jcomplete\u202e", KEY[5:40], "x" * 5000])
COUNTS = st.sampled_from(["0", "1", "3", "-1", "101", "1e400", "1.5", "true", '"3"', "99999999999999999999"])
LINKS = st.sampled_from(
    [
        None,
        "self",
        "next",
        f"/v1/bulk/{BULK}/batches/../../../v1/customers",
        f"https://other.example/v1/bulk/{BULK}/batches?page=2",
        f"/v1/bulk/{BULK}/batches?page=2#x",
        f"/v1/bulk/{BULK}/batches?page=2\r\nX: 1",
        f"/v1/bulk/{'0' * 24}/batches",
        "5",
    ]
)


@st.composite
def result_items(draw: st.DrawFn) -> str:
    ref = draw(st.sampled_from(['"r0"', '"r1"', '"r2"', "5", "null", '{"a": 1}', json.dumps(KEY[3:30])]))
    status = draw(st.sampled_from(['"created"', '"error"', '"updated"', "null"]))
    error = draw(st.sampled_from(["null", '"bad"', json.dumps(f"\x1b[31m{KEY}"), '{"detail": "no"}', "5"]))
    return f'{{"_clientRef": {ref}, "status": {status}, "objectId": "6a6a", "error": {error}}}'


@st.composite
def batch_pages(draw: st.DrawFn) -> tuple[bytes, int]:
    items = draw(st.lists(result_items(), max_size=4))
    results = draw(st.sampled_from([f"[{', '.join(items)}]", "5", "null", '"x"']))
    link = draw(LINKS)
    fields = f'"status": {json.dumps(draw(ANY_TEXT))}, "successCount": {draw(COUNTS)}, "failureCount": {draw(COUNTS)}'
    page = f'{{"data": [{{"attributes": {{{fields}, "results": {results}}}}}], "links": {{"next": "@LINK@"}}}}'
    status = draw(st.sampled_from([200, 200, 200, 200, 429, 500, 404]))
    return page.replace('"@LINK@"', "null" if link is None else json.dumps(link)).encode(), status


@settings(
    max_examples=settings().max_examples // 2 or 1,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status_text=ANY_TEXT,
    pages=st.lists(batch_pages(), min_size=1, max_size=4),
    expected=st.integers(0, 3),
    max_wait=st.sampled_from([0, 30, 300]),
)
def test_the_waiter_is_bounded_and_honest_whatever_the_pages_say(
    status_text: str,
    pages: list[tuple[bytes, int]],
    expected: int,
    max_wait: int,
    fake_time: FakeTime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = fake_time.now
    base = "https://api.kustomerapp.com"

    def page(request: httpx.Request) -> httpx.Response:
        fake_time.now += 0.5  # each read takes a little of the job's time
        number = int(request.url.params.get("page", "1")) if request.url.params.get("page", "1").isdigit() else 1
        content, status = pages[min(number, len(pages)) - 1]
        link = f"/v1/bulk/{BULK}/batches?page={number + 1}".encode()
        content = content.replace(b'"next": "next"', b'"next": "' + link + b'"')
        content = content.replace(b'"next": "self"', f'"next": "/v1/bulk/{BULK}/batches?page={number}"'.encode())
        return httpx.Response(status, content=content, headers={"Retry-After": "20"})

    status_answer = {"data": {"attributes": {"status": status_text, "batches": {"complete": 1, "total": KEY}}}}
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{base}/v1/bulk/{BULK}").respond(200, json=status_answer)
        mock.get(url__startswith=f"{base}/v1/bulk/{BULK}/batches").mock(side_effect=page)
        other = mock.route().respond(599)
        try:
            result, error = (
                wait_for_bulk_results.main(
                    {"apiKey": KEY},
                    BULK,
                    expected_items=expected,
                    submitted_at="2020-01-01T00:00:00Z",
                    max_wait_seconds=max_wait,
                ),
                None,
            )
        except Exception as exc:  # the properties below judge what was raised
            result, error = None, exc
    logs = capsys.readouterr()

    assert_no_piece_of_the_key(everything_shown(error, result) + logs.out + logs.err)
    json.dumps(result, allow_nan=False)
    assert isinstance(error, wait_for_bulk_results.KustomerError | type(None)), repr(error)
    assert fake_time.now - started <= max_wait + wait_for_bulk_results.READ_TIME
    assert not other.called, "a request left the operation"
    if result is not None:  # "complete" only from pages that can be true
        assert result["created"] + result["failed"] <= (expected or wait_for_bulk_results.MAX_ITEMS)
        refs = [i["_clientRef"] for i in result["items"] if isinstance(i["_clientRef"], str)]
        assert len(refs) == len(set(refs))
        assert all(isinstance(i.get("error", ""), str) and "\x1b" not in i.get("error", "") for i in result["items"])
