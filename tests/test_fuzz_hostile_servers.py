"""Fuzzing the scripts against hostile servers: random statuses, headers, encodings, chunking and
pacing, on a real loopback server. On every example the promises hold:

- the key shows nowhere: not in the result, the error (text, attributes, chain, traceback) or the log;
- time is bounded: each attempt ends within the response deadline, and waits stay within the policy;
- memory is bounded: a compressed answer never inflates past a small multiple of the size limit;
- exactly one POST, unless Kustomer answered 429 (then one more per 429);
- "outcome unknown" only when the request was sent; a refusal (4xx) is never called unknown.
"""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
import zlib
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import pytest
from conftest import FakeTime
from hostile_server import Answer, HostileServer, gzip_bomb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hardening import everything_shown

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
    kind = draw(st.sampled_from(["json", "echo", "text", "empty", "gzip", "deflate", "bomb", "bad-encoding"]))
    document = {"data": {"id": "m1", "type": "message"}, "errors": [{"detail": draw(st.text(max_size=30))}]}
    if kind == "json":
        return json.dumps(document).encode(), {"Content-Type": "application/json"}
    if kind == "echo":  # the key, whole, cut, URL-encoded, amid control characters
        cut = draw(st.integers(16, len(KEY)))
        echo = [KEY, KEY[:cut], f"\x1b[31m{KEY}\u202e", KEY.replace("_", "%5F")]
        return json.dumps({"data": {"echo": echo}, "errors": [{"detail": " ".join(echo)}]}).encode(), {}
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
    slept_before = len(fake_time.sleeps)  # the fixture lives across examples
    body: Any = dict(MESSAGE) if script is create_message else [dict(MESSAGE, _clientRef="r1")]
    with HostileServer(script_answers) as server:
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
    assert KEY not in shown
    assert KEY[:16] not in shown.replace(json.dumps(result, default=str), "")  # cut keys hidden in what we wrote
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


def _status(answer: Answer) -> int | None:
    """The status the answer announces, if its status line and headers arrive whole."""
    raw = b"".join(answer.chunks)
    if b"\r\n\r\n" not in raw:
        return None
    try:
        return int(raw.split(b"\r\n", 1)[0].split()[1])
    except (IndexError, ValueError):
        return None
