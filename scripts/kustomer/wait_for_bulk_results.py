# skip_result_postprocessing
# (the line above keeps the worker from rewriting NaN, Infinity and \u0000 inside the result)
"""Wait for bulk results: what became of each message of a Kustomer bulk operation.

POST /v1/messages/bulk only queues the messages: Kustomer answers with a bulk operation whose
status is `queued`, and processes it later, item by item. This script waits (within
`max_wait_seconds`) until the operation is complete, reads GET /v1/bulk/{id}/batches (every page),
and returns one entry per message, matched by its `_clientRef`: `created` with the message id, or
`error` with Kustomer's reason; and the counts. Without `_clientRef` Kustomer gives only counts and
the new messages' ids. The API key needs the role `org.permission.bulk.read` (or the legacy
`org.user.bulk.read`). Reading is safe to repeat, so a lost answer (5xx, timeout) is asked again,
and a 429 is waited out; every wait prints a line in the job's log.

Kustomer's reference: https://developer.kustomer.com/api/core-resources/get-bulk-operation-by-id and
https://developer.kustomer.com/api/core-resources/get-bulk-operation-batches
"""

import contextlib
import functools
import gc
import ipaddress
import json
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple, NotRequired, TypedDict
from urllib.parse import unquote

# ---- shared part "collector": the same in every script of scripts/kustomer ----
# A job is a fresh process: it imports httpx, sends a request or two and exits. Python's cyclic
# collector would walk every object those imports make (tens of thousands, nearly all alive until
# the job ends) while they are made and again at exit, about a fifth of a cold job (README,
# "Decisions"). So it is off while httpx is imported, and what the imports made is frozen: gc.freeze
# moves it out of every later collection, as its documentation suggests for long-lived objects.
# What a job makes afterwards is collected as usual.
_collecting = gc.isenabled()
gc.disable()
import httpx  # noqa: E402  # after gc.disable(), above

gc.freeze()
if _collecting:
    gc.enable()
# ---- end of shared part "collector" ----


# ---- shared part "resource": the same in every script of scripts/kustomer ----
class kustomer(TypedDict):
    """A Kustomer API key, and the host of its region when that is not the US one."""

    apiKey: str
    baseUrl: NotRequired[str]


# ---- end of shared part "resource" ----


# What a flow step may use of this script (typings/f/kustomer checks the steps against it).
__all__ = [
    "FIRST_LOOK_AFTER", "POLICY", "KustomerAPIError", "KustomerBulkPendingError", "KustomerConnectionError",
    "KustomerError", "KustomerInputError", "KustomerOutcomeUnknownError", "KustomerRateLimitError", "RetryPolicy",
    "kustomer", "main", "read_outcomes", "reused_connections"
]  # fmt: skip


def main(
    auth: kustomer,
    bulk_id: str,
    expected_items: int = 0,
    submitted_at: str = "",
    max_wait_seconds: int = 600,
    min_interval_seconds: float = 0.0,
) -> dict[str, Any]:
    """Wait for the bulk operation `bulk_id` to complete and return each message's outcome.

    Args:
        bulk_id: The bulk operation's id: `data.id` of what bulk_create_messages returned.
        expected_items: How many messages the operation holds (0 if unknown). When given, one read of
            its batches can confirm it, with no status poll first.
        submitted_at: When the operation was submitted (its `data.attributes.createdAt`; without a time
            zone, UTC). The first read waits until 5 s after it; empty: 5 s from now.
        max_wait_seconds: How long to wait for the operation to complete, every wait and request
            counted. Then the job fails, saying it is still running and giving the id to look again
            with. The job ends within this plus 60 s, whatever Kustomer answers.
        min_interval_seconds: The least time between two requests, to keep within a share of the org's
            rate limit (0: no pacing).
    """
    problems = _watch_problems(bulk_id, expected_items, submitted_at, max_wait_seconds, min_interval_seconds)
    _raise_if_invalid(auth_problems(auth) + problems, auth)
    watch = _BulkWatch(auth, bulk_id.strip().lower(), expected_items, min_interval_seconds, max_wait_seconds)
    return watch.wait(*_first_look(submitted_at))


def read_outcomes(
    auth: kustomer, bulk_id: str, expected_items: int, deadline: float = math.inf
) -> dict[str, Any] | None:
    """For the import flow: one look at the operation, without waiting: each message's outcome as `main`
    returns them once it is complete, or None while it is not. Its requests end by `deadline` (POLICY's clock)."""
    _raise_if_invalid(auth_problems(auth) + _watch_problems(bulk_id, expected_items, "", 0, 0.0), auth)
    watch = _BulkWatch(auth, bulk_id.strip().lower(), expected_items, 0.0, 0.0)
    watch.deadline = watch.looks_until = min(watch.deadline, deadline)  # a 429 is waited out within it
    return watch.look()


FIRST_LOOK_AFTER = 5.0  # seconds after submission: most operations are done by then, so one read confirms
# Kustomer does not say a batch's counts are written before the operation says "complete": a short count
# is taken for a wrong expected_items only once it has stayed the same this long.
COUNTS_SETTLE = 30.0
READ_TIME = 60.0  # seconds past max_wait_seconds the job may take to finish its last look (one attempt's bound)
BULK_READ_ROLE = "org.permission.bulk.read (or the legacy org.user.bulk.read)"
BULK_NOT_FOUND = (
    "Check bulk_id: it must be the data.id that bulk_create_messages returned, in the key's org and region "
    "(Kustomer may also forget old operations)."
)
MAX_ITEMS = 100  # messages in one bulk request, so outcomes in one operation
MAX_PAGES = 100  # pages of batches: an operation has at most one batch per message
MAX_PAGE_BYTES = 2_000_000  # of a status or a page of batches: 100 outcomes are well under 100 KB


def _watch_problems(bulk_id: Any, expected: Any, submitted_at: Any, max_wait: Any, interval: Any) -> list[str]:
    problems = []
    if not isinstance(bulk_id, str) or not re.fullmatch(r"[0-9a-fA-F]{24}", bulk_id.strip()):
        problems.append(f"bulk_id: must be a bulk operation's id (24 hex characters), got {describe(bulk_id)}")
    if not isinstance(expected, int) or isinstance(expected, bool) or not 0 <= expected <= MAX_ITEMS:
        problems.append(
            f"expected_items: must be 0 (unknown) or the number of messages sent (at most {MAX_ITEMS}), "
            f"got {describe(expected)}"
        )
    if not isinstance(submitted_at, str) or (submitted_at.strip() and _timestamp(submitted_at) is None):
        problems.append(
            f"submitted_at: must be empty or a date-time such as 2024-05-01T12:30:00Z, got {describe(submitted_at)}"
        )
    if not isinstance(max_wait, int | float) or isinstance(max_wait, bool) or not 0 <= max_wait <= 86400:
        problems.append(f"max_wait_seconds: must be 0 to 86400, got {describe(max_wait)}")
    if not isinstance(interval, int | float) or isinstance(interval, bool) or not 0 <= interval <= 600:
        problems.append(f"min_interval_seconds: must be 0 to 600, got {describe(interval)}")
    return problems


def _timestamp(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _first_look(submitted_at: str) -> tuple[float, str]:
    """How long to wait before the first look, and why, for the log: FIRST_LOOK_AFTER after the
    submission, which is taken as now when submitted_at is not given."""
    submitted = _timestamp(submitted_at) if submitted_at.strip() else None
    now = POLICY.clock()
    delay = max(0.0, min(FIRST_LOOK_AFTER, (submitted if submitted is not None else now) + FIRST_LOOK_AFTER - now))
    if submitted is None:
        return delay, ": submitted_at not given, so the first look waits as for an operation just submitted"
    ago = now - submitted
    return delay, " was just submitted" if ago < 1 else f" was submitted {ago:.0f} s ago"


class _BulkWatch:
    """Looks at one bulk operation until it is complete, then reads what became of each message. Every
    wait and every request counts against one deadline: max_wait_seconds for the looks, READ_TIME more
    for the last one to end."""

    def __init__(self, auth: kustomer, bulk_id: str, expected: int, interval: float, max_wait: float) -> None:
        self.auth, self.bulk_id, self.expected, self.interval = auth, bulk_id, expected, interval
        self.key = auth["apiKey"].strip()
        self.status, self.progress, self.last_request, self.reads = "queued", "", -math.inf, 0
        self.short_since: tuple[int, float] | None = None  # a short count after "complete", and since when
        self.policy = POLICY
        self.started, self.max_wait = self.policy.clock(), max_wait
        self.looks_until, self.deadline = self.started + max_wait, self.started + max_wait + READ_TIME

    def wait(self, first_delay: float, first_why: str) -> dict[str, Any]:
        max_wait = self.max_wait
        delays = self.schedule(first_delay, max_wait)
        for look, delay in enumerate(delays, start=1):
            if look > 1 and self.policy.clock() + delay > self.looks_until:
                break  # rate-limit waits and pacing took their share of the time
            why = (
                f"Bulk operation {self.bulk_id} is {self.status}{self.progress}"
                if look > 1
                else f"Bulk operation {self.bulk_id}{first_why}"
            )
            self.pause(delay, why, f"look {look} of at most {len(delays)}")
            report = self.look()
            if report is not None:
                return report
        raise self.pending(f"after {self.policy.clock() - self.started:.0f} s (max_wait_seconds {max_wait:.0f})")

    def pending(self, when: str) -> "KustomerBulkPendingError":
        return KustomerBulkPendingError(
            f"Bulk operation {self.bulk_id} is still {self.status}{self.progress} {when}. Nothing is lost: "
            f"Kustomer goes on processing it. Run this script again later with bulk_id {self.bulk_id} to read "
            "each message's outcome.",
            self.bulk_id,
            self.status,
        )

    def not_as_expected(self, facts: str, counted: int) -> "KustomerAPIError":
        """The operation's count of outcomes disagrees with expected_items, for good: the input is the likely
        cause, not Kustomer, so it is named (waiting, or reading again with the same count, cannot help)."""
        return KustomerAPIError(
            f"Bulk operation {self.bulk_id}: {facts} expected_items ({self.expected}). No outcome is taken from such "
            f"pages. If {counted} message(s) were sent in that request, expected_items is wrong: run this script "
            f"again with expected_items {counted} (or 0, unknown) and bulk_id {self.bulk_id}. Nothing is lost: the "
            "operation is unaffected.",
            200,
        )

    def schedule(self, first_delay: float, max_wait: float) -> list[float]:
        """The waits before each look: the first delay (no longer than `max_wait`), then doubling from 2 s up
        to 30 s, each at least the pacing interval, as many as fit in `max_wait`."""
        first_delay = min(first_delay, max_wait)
        delays, total, step = [first_delay], first_delay, 2.0
        while True:
            delay = max(step, self.interval)
            if total + delay > max_wait:
                return delays
            delays.append(delay)
            total, step = total + delay, min(30.0, step * 2)

    def look(self) -> dict[str, Any] | None:
        """One look: the status (unless one read of the batches can tell, on the first look with
        expected_items), then, once it is complete, the batches; None while it is not done."""
        said_complete = False
        if not self.expected or self.reads:  # a status poll is one small read: the pages are read once done
            answer = self.get(f"/v1/bulk/{self.bulk_id}", MAX_PAGE_BYTES)
            data = answer.get("data") if isinstance(answer, dict) else None
            attributes = data.get("attributes") if isinstance(data, dict) else None
            fields = {**(data or {}), **(attributes or {})} if isinstance(data, dict) else {}
            status = _clean(fields.get("status"), self.key, 40)
            self.status = status or ("unknown" if self.expected else "queued")
            batches = fields.get("batches") if isinstance(fields.get("batches"), dict) else {}
            if batches and "total" in batches:
                self.progress = f" ({_count(batches, 'complete')} of {_count(batches, 'total')} batches done)"
            if (status and status != "complete") or (not status and not self.expected):
                return None
            said_complete = status == "complete"
        self.reads += 1
        batches = self.read_batches()
        done = [b for b in batches if b["status"] in ("", "complete")]
        counted = sum(_outcomes_of(b) for b in done)
        if self.expected and (len(done) < len(batches) or not batches or counted < self.expected):
            if said_complete and batches and len(done) == len(batches) and self.short_for_good(counted):
                said = f"Kustomer says it is complete, and for {COUNTS_SETTLE:.0f} s its batches have counted"
                raise self.not_as_expected(f"{said} {counted} outcome(s), fewer than", counted)
            self.status, self.progress = "running", f" ({counted} of {self.expected} messages done)"
            return None
        if self.expected and self.expected < counted <= MAX_ITEMS:
            raise self.not_as_expected(f"its batches count {counted} outcomes, more than", counted)
        return _report(self.bulk_id, batches, self.expected or MAX_ITEMS)

    def short_for_good(self, counted: int) -> bool:
        """Whether a count short of expected_items, once Kustomer says "complete", has stayed the same for
        COUNTS_SETTLE seconds; the first time it is seen, it may be a count not yet written."""
        if self.short_since is None or self.short_since[0] != counted:
            self.short_since = (counted, self.policy.clock())
        return self.policy.clock() - self.short_since[1] >= COUNTS_SETTLE

    def read_batches(self) -> list[dict[str, Any]]:
        """Every batch, following `links.next` while it stays on this operation's batches; a page seen
        before, or more pages than an operation can have, is an error: never taken for complete."""
        batches: list[dict[str, Any]] = []
        path: str | None = f"/v1/bulk/{self.bulk_id}/batches"
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            if path is None:
                return batches
            seen.add(path)
            answer = self.get(path, MAX_PAGE_BYTES, page)
            batches += _batches_in(answer, self.bulk_id, page, self.key)
            listed = [i for b in batches for i in b["results"]]
            problem = _listing_problem(listed, MAX_ITEMS, self.key)
            if problem:
                raise _unreadable(self.bulk_id, page, problem)
            if self.expected and len(listed) > self.expected:
                raise self.not_as_expected(f"its batches list {len(listed)} outcomes, more than", len(listed))
            path = _next_path(answer, self.bulk_id, page, self.key)
            if path in seen:
                raise _unreadable(self.bulk_id, page, f"its next link leads back to an earlier page ({path})")
        if path is None:
            return batches
        raise _unreadable(self.bulk_id, MAX_PAGES, f"it still links to a next one, past the {MAX_PAGES} pages read")

    def get(self, path: str, max_bytes: int = 0, page: int = 0) -> Any:
        gap = max(0.0, self.last_request + self.interval - self.policy.clock())
        if self.policy.clock() + gap + 1 > self.deadline:
            reading = f"while reading page {page} of its batches" if page else "before its next look"
            raise self.pending(f"when this job's time ran out {reading} (max_wait_seconds + {READ_TIME:.0f} s)")
        if gap > 0:
            self.pause(gap, "Pacing the reads (min_interval_seconds)", "then the next read")
        self.last_request = self.policy.clock()
        endpoint = _Endpoint("GET", path, BULK_READ_ROLE, BULK_NOT_FOUND, max_bytes)
        # A rate-limit wait ends by max_wait_seconds; the READ_TIME past it is for an answer in flight.
        return _call_kustomer(self.auth, endpoint, deadline=self.deadline, waits_until=self.looks_until)

    def pause(self, wait: float, why: str, then: str) -> None:
        _wait_saying_why(self.policy, wait, why, then)


def _unreadable(bulk_id: str, page: int, what: str) -> "KustomerAPIError":
    return KustomerAPIError(
        f"Kustomer's page {page} of the batches of bulk operation {bulk_id} cannot be read: {what}. No outcome "
        f"is taken from such pages. Nothing is lost: the operation is unaffected; run this script again later with "
        f"bulk_id {bulk_id}, or check the messages' conversations in Kustomer.",
        200,
    )


def _batches_in(answer: Any, bulk_id: str, page: int, key: str) -> list[dict[str, Any]]:
    """The batches of one page, as a bare list or JSON:API `data`, each batch's fields at its top or
    under `attributes`, kept as the few fields an outcome needs."""
    data = answer.get("data") if isinstance(answer, dict) else answer
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise _unreadable(bulk_id, page, f"it is {describe(data, shown=False)}, not a list of batches")
    batches: list[dict[str, Any]] = []
    listed = 0
    for i, batch in enumerate(data):
        if not isinstance(batch, dict):
            raise _unreadable(bulk_id, page, f"its batch {i} is {describe(batch, shown=False)}, not an object")
        inner = batch.get("attributes")
        fields = {**batch, **inner} if isinstance(inner, dict) else batch
        for name in ("results", "objectIds"):
            if fields.get(name) is not None and not isinstance(fields[name], list):
                raise _unreadable(
                    bulk_id, page, f"its batch {i} gives {name} as {describe(fields[name], shown=False)}, not a list"
                )
        results = [r for r in fields.get("results") or [] if isinstance(r, dict)]
        listed += len(results)
        if listed > MAX_ITEMS:
            raise _unreadable(bulk_id, page, f"it lists more than {MAX_ITEMS} outcomes, more than a request holds")
        batches.append(
            {
                "status": _clean(fields.get("status"), key, 40),
                "successCount": _count(fields, "successCount"),
                "failureCount": _count(fields, "failureCount"),
                "objectIds": [_clean(i, key, 64) for i in fields.get("objectIds") or [] if isinstance(i, str)],
                "results": [_outcome(r, key) for r in results],
            }
        )
    return batches


def _next_path(answer: Any, bulk_id: str, page: int, key: str) -> str | None:
    """The path (and query) of the next page, after normalisation; None when there is none. A link
    that is no plain URL, or that leads anywhere but this operation's batches, is an error."""
    links = answer.get("links") if isinstance(answer, dict) else None
    following = links.get("next") if isinstance(links, dict) else None
    if following is None or following == "":
        return None
    if not isinstance(following, str):
        raise _unreadable(bulk_id, page, f"its next link is {describe(following, shown=False)}, not a link")
    shown = _clean(following, key, 120)
    if not re.fullmatch(r"[\x21-\x7e]+", following) or "#" in following:
        raise _unreadable(bulk_id, page, f"its next link {shown!r} holds spaces, control or non-ASCII characters or #")
    if "://" in following:
        try:
            url = httpx.URL(following)
            target = url.raw_path.decode("ascii") if url.scheme in ("http", "https") else ""
        except Exception:  # httpx.InvalidURL and its kin: a link that cannot be read is no page
            target = ""
    else:
        target = "/" + following.lstrip("/")
    path, _, query = target.partition("?")
    batches = f"/v1/bulk/{bulk_id}/batches"
    if not path or os.path.normpath(unquote(path)).lower().replace("//", "/") != batches:
        raise _unreadable(bulk_id, page, f"its next link {shown!r} leads out of this operation's batches")
    return batches + ("?" + query if query else "")


def _outcomes_of(batch: dict[str, Any]) -> int:
    """The outcomes a finished batch holds: its counts, or what it lists when Kustomer leaves a count out (or
    gives 0), as the report counts them; else a right expected_items would be taken for a wrong one."""
    counts: int = batch["successCount"] + batch["failureCount"]
    return max(counts, len(batch["results"]), len(batch["objectIds"]))


def _count(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ITEMS else 0


def _outcome(result: dict[str, Any], key: str) -> dict[str, Any]:
    """One listed result: its _clientRef as Kustomer gave it, and a created id or a cleaned error."""
    entry: dict[str, Any] = {"_clientRef": result.get("_clientRef")}
    found = result.get("objectId") or result.get("id")
    if result.get("status") in ("created", "updated") and not result.get("error"):  # "error": null is none
        entry.update(status="created", id=_clean(found, key, 64) if isinstance(found, str) else None)
    else:
        entry.update(status="error", error=_clean(_item_error(result.get("error")), key, 300))
    return entry


def _listing_problem(items: list[dict[str, Any]], most: int, key: str) -> str:
    """What makes the outcomes listed so far impossible (a page repeated under another link); else empty."""
    refs: set[str] = set()
    for item in items:
        ref = item["_clientRef"]
        if isinstance(ref, str) and ref in refs:
            return f"the pages list the outcome of _clientRef {_clean(show(ref, 60), key, 70)} more than once"
        refs.add(ref if isinstance(ref, str) else "")
    if len(items) > most:
        return f"the pages list {len(items)} outcomes, more than the {most} messages of the operation"
    return ""


def _report(bulk_id: str, batches: list[dict[str, Any]], most: int) -> dict[str, Any]:
    items = [entry for batch in batches for entry in batch["results"]]
    object_ids = [i for batch in batches for i in batch["objectIds"]]
    created = sum(b["successCount"] for b in batches) or sum(i["status"] == "created" for i in items)
    failed = sum(b["failureCount"] for b in batches) or sum(i["status"] == "error" for i in items)
    if created + failed > most:
        raise _unreadable(bulk_id, len(batches), f"they count {created + failed} outcomes for at most {most} messages")
    report = {"bulk_id": bulk_id, "status": "complete", "created": created, "failed": failed, "items": items}
    report["object_ids"] = object_ids
    if not items:
        report["note"] = (
            "Kustomer lists each message's outcome only when every message of the request carries a _clientRef: "
            "without it, these counts and the new messages' ids are all it gives. Set _clientRef (the import "
            "flow sets one on each message) to know which messages failed."
        )
    elif failed > sum(i["status"] == "error" for i in items):
        report["note"] = f"{failed - sum(i['status'] == 'error' for i in items)} failure(s) came without a _clientRef."
    return report


def _item_error(error: Any) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        words = [str(error[k]) for k in ("code", "title", "message", "detail") if isinstance(error.get(k), str)]
        return ": ".join(words) or json.dumps(error)[:300]
    return "Kustomer reported an error without details"


# ---- shared part "transport": the same in every script of scripts/kustomer ----
# Copied from parts/transport.py, as a Windmill script is one file: edit it there, then run shared_parts.

DEFAULT_BASE_URL = "https://api.kustomerapp.com"
USER_AGENT = "windmill-kustomer-scripts/1.1"
MAX_PROBLEMS_SHOWN = 40
_ERROR_BODY_BYTES = 65536  # read of an error answer; Kustomer's own are a few hundred bytes


class RetryPolicy(NamedTuple):
    """Every bound on time and size one job respects. Tests swap in `sleep` and `clock`."""

    connect_timeout: float = 10.0  # seconds to open the connection (nothing sent yet: retried)
    read_timeout: float = 30.0  # seconds of silence from Kustomer once the request is sent
    response_deadline: float = 60.0  # seconds of one attempt: from the connection's start (a proxy's
    #                                  CONNECT and the TLS handshake included) to the answer's last byte
    max_job_seconds: float = 300.0  # every attempt and every wait of one job (a create and its lookup)
    max_response_bytes: int = 10_000_000  # of the answer once decoded, counted as it is decoded
    max_failed_attempts: int = 5  # attempts that got no answer: a failed connection (or a lost GET answer)
    max_rate_limited: int = 20  # 429 answers taken before giving up
    max_total_wait: float = 120.0  # seconds slept between attempts, all added up
    max_single_wait: float = 65.0  # one rate-limit window is 60 s; a longer wait is not waited for
    backoff_first: float = 1.0  # seconds of the first backoff, doubled at each further one ...
    backoff_cap: float = 30.0  # ... up to this
    max_reset_ahead: float = 3600.0  # a rate-limit reset announced further ahead is not believed
    log_waits_from: float = 1.0  # a wait this long or longer prints a line in the job's log
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


POLICY = RetryPolicy()


def _attempts(count: int) -> str:
    return f"{count} attempt" + ("" if count == 1 else "s")


class _KeptSocket:
    """The socket, by number, of the connection a client keeps open: an attempt's deadline shuts it. A
    retry, or the next call on a kept client, goes out on that connection without a new connect."""

    fd = -1


# Inside `reused_connections()` (a long job's, the import flow's) every call reuses a client per thread
# and kind of host, its connection kept open: per thread, so that an attempt's deadline shuts the socket
# its own request went out on. Outside it each call has its own client, closed at its end.
_REUSED: dict[tuple[bool, str, str, int], tuple[httpx.Client, _KeptSocket]] | None = None
_REUSED_LOCK = threading.Lock()


@contextlib.contextmanager
def reused_connections() -> Iterator[None]:
    """Keep clients open, one per thread, between the calls made inside this block (a long job's)."""
    global _REUSED
    _REUSED = {}
    try:
        yield
    finally:
        clients, _REUSED = _REUSED, None
        for client, _ in clients.values():
            client.close()


class KustomerError(Exception):
    """A failure of this script; its text is what Windmill shows in the run's result pane."""


class KustomerInputError(KustomerError, ValueError):
    """The input is wrong; nothing was sent."""


class KustomerConnectionError(KustomerError):
    """Kustomer could not be reached, or a read got no answer; nothing was created."""


class KustomerAPIError(KustomerError):
    """Kustomer answered with an error status; `status`, `code` and `pointer` are Kustomer's."""

    def __init__(self, message: str, status: int = 0, code: str | None = None, pointer: str | None = None) -> None:
        super().__init__(message)  # the message alone, so that str() is it; the rest survives pickling as attributes
        self.status, self.code, self.pointer = status, code, pointer


class KustomerRateLimitError(KustomerAPIError):
    """Kustomer kept answering 429 for longer than the policy waits; nothing was created. A caller with
    its own lever (the import flow's budget) words its own advice from `facts`, `reset_at` (epoch
    seconds, None if Kustomer did not say) and `answers` (the 429s taken)."""

    def __init__(self, facts: str, advice: str = "", reset_at: float | None = None, answers: int = 0) -> None:
        super().__init__(facts + advice, 429)
        self.facts, self.reset_at, self.answers = facts, reset_at, answers


class KustomerOutcomeUnknownError(KustomerError):
    """The request was sent but its outcome is unknown: it was not repeated, to avoid duplicates."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _raise_if_invalid(problems: list[str], auth: Any = None) -> None:
    """One input error listing every problem. A problem may quote what the user gave, and a key pasted
    into the wrong field (bulk_id, a body field) would be quoted with it: the key of `auth` is hidden."""
    if not problems:
        return
    key = auth.get("apiKey") if isinstance(auth, dict) else None
    if isinstance(key, str) and key.strip():
        problems = [_hide_secret(p, key.strip()) for p in problems]
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    lines = "\n".join(f"- {p}" for p in shown) + (f"\n- ... and {more} more" if more > 0 else "")
    noun = "problem" if len(problems) == 1 else "problems"
    raise KustomerInputError(f"Nothing was sent to Kustomer: the input has {len(problems)} {noun}:\n{lines}")


def auth_problems(auth: Any) -> list[str]:
    """What is wrong with the resource. No value taken from it is ever shown, except a baseUrl that is a
    plain URL: a key pasted into the wrong place must not end up in the result pane."""
    if not isinstance(auth, dict):
        return [
            f"auth: must be a kustomer resource (an object with apiKey), got {describe(auth, shown=False)} (not shown)"
        ]
    problems = []
    key = auth.get("apiKey")
    if "apiKey" not in auth and any(isinstance(k, str) and k.lower().replace("_", "") == "apikey" for k in auth):
        problems.append("auth.apiKey: missing; the resource has a similar key: did you mean apiKey?")
    elif not isinstance(key, str) or not key.strip():
        what = (
            "missing or empty" if key is None or isinstance(key, str) else f"{describe(key, shown=False)}, not a string"
        )
        problems.append(f"auth.apiKey: {what}: set it to a Kustomer API key")
    elif not re.fullmatch(r"[\x21-\x7e]+", key.strip()):
        problems.append("auth.apiKey: contains spaces or characters not allowed in an HTTP header (not shown)")
    base_url = auth.get("baseUrl")
    if base_url is not None and not (isinstance(base_url, str) and not base_url.strip()):  # empty: the US
        problem = base_url_problem(base_url, key if isinstance(key, str) else "")
        if problem:
            problems.append(f"auth.baseUrl: {problem}")
    return problems


# A host name without its scheme, such as api.kustomerapp.eu: labels of at most 63 characters, the last
# one letters only (a key's parts are longer, or hold digits), then perhaps a port and a slash. Only to
# explain a refusal: plain strings, compiled by re on first use.
_HOST_ALONE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?::\d{1,5})?/?"
_LOCAL_ALONE = r"(?:localhost|127(?:\.\d{1,3}){3})(?::\d{1,5})?/?"  # a local sandbox: plain http is allowed


def base_url_problem(base_url: Any, key: str) -> str | None:
    example = "such as https://api.prod2.kustomerapp.com"
    if not isinstance(base_url, str):
        return f"must be a URL string {example}, got {describe(base_url, shown=False)} (not shown)"
    key = key.strip()
    # A short key is found only as the whole field: "abc" is no key inside https://abc.api.kustomerapp.com
    if key and (key in base_url if len(key) >= 16 else base_url.strip() == key):
        return "holds the API key: put the key in apiKey and the region's host, or nothing, in baseUrl"
    try:
        url = httpx.URL(base_url.strip())
    except Exception:
        url = None
    if url is None or not url.scheme or not url.host:
        alone = base_url.strip()
        scheme = "http" if re.fullmatch(_LOCAL_ALONE, alone) else "https" if re.fullmatch(_HOST_ALONE, alone) else ""
        hint = f": add {scheme}:// in front of the host" if scheme else ""
        return f"is not a URL {example}{hint} (not shown, in case it is a key in the wrong field)"
    if url.userinfo:
        return "holds a user name or password before the host (not shown): Kustomer takes only the API key"
    shown = show(base_url.strip(), 120)
    if url.scheme not in ("http", "https"):
        return f"{shown} is not an https URL {example}"
    if not re.fullmatch(rb"[A-Za-z0-9.:-]+", url.raw_host) or not 0 < (url.port or 443) < 65536:
        return f"{shown} does not name a host (and port) that can be reached, {example}"
    if url.path.rstrip("/").lower() == "/v1" and not (url.query or url.fragment):
        return f"{shown} must be a host and nothing else: leave out /v1 (the scripts add it), {example}"
    if url.query or url.fragment or url.path.rstrip("/"):
        return f"{shown} must be a host and nothing else (no path, ?query or #fragment), {example}"
    if url.scheme == "http" and not _is_loopback(url.host):
        return f"{shown} uses plain http, which would send the API key unencrypted: use https://"
    return None


def _base_url(auth: kustomer) -> httpx.URL:
    url = httpx.URL((auth.get("baseUrl") or "").strip() or DEFAULT_BASE_URL)
    return httpx.URL(scheme=url.scheme, host=url.host, port=url.port)  # the host alone: auth_problems said so


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(value: Any, shown: bool = True) -> str:
    """A value the user gave, by its kind and (unless `shown` is False, for what may be a secret) as
    `show` renders it: "a string 'fax'", "nothing (null)"."""
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    kind = "nothing (null)" if value is None else names.get(type(value), f"a {type(value).__name__}")
    return f"{kind} {show(value)}" if shown and value is not None else kind


def show(value: Any, limit: int = 60) -> str:
    """A short, printable rendering of any value: never more than about `limit` characters, whatever
    the depth or size of the value."""
    shown = _render(value, limit + 1, top=True)
    shown = shown if len(shown) <= limit else shown[: limit - 3] + "..."
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")  # an unpaired surrogate, escaped


def _render(value: Any, room: int, top: bool = False) -> str:
    """`value` as text, stopping once past `room` characters: each level of nesting writes one at least
    and leaves the next less room, so the recursion is no deeper than `room`."""
    if isinstance(value, str):  # room may be below 0, past the budget: value[:-2] would copy nearly all of it
        return repr(value[: max(room, 0)]) if top else json.dumps(value[: max(room, 0)], ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() < 1000 else f"<a {int(value.bit_length() * 0.30103)}-digit number>"
    if isinstance(value, float):
        return repr(value)
    if not isinstance(value, dict | list):
        return f"<{type(value).__name__}>"
    text = "{" if isinstance(value, dict) else "["
    for i, entry in enumerate(value.items() if isinstance(value, dict) else value):
        if len(text) > room:
            return text
        text += ", " if i else ""
        if isinstance(value, dict):
            name, entry = entry
            text += (_render(name, room - len(text)) if isinstance(name, str) else describe(name, shown=False)) + ": "
        text += _render(entry, room - len(text))
    return text + ("}" if isinstance(value, dict) else "]")


class _Endpoint(NamedTuple):
    method: str
    path: str  # percent-encoded, with its query if any
    role: str  # the role a key needs here, named when Kustomer answers 401 or 403
    not_found: str  # what a 404 means here
    max_bytes: int = 0  # of a success answer, if less than the policy's


def _call_kustomer(
    auth: kustomer,
    endpoint: _Endpoint,
    body: Any = None,
    if_unknown: str = "",
    deadline: float = math.inf,
    waits_until: float = math.inf,
) -> Any:
    """Send one request to Kustomer and return its JSON answer, or raise a KustomerError.

    `if_unknown` says what to check when a write went out and its answer was lost. By `deadline` (the
    policy's clock) every attempt and wait ends; by `waits_until`, when earlier, every wait. The error
    raised carries no chained exception and no traceback from below this call: those would hold httpx's
    request, whose Authorization header is the key."""
    url = _base_url(auth).copy_with(raw_path=endpoint.path.encode("ascii"))  # the path arrives percent-encoded
    exchange = _Exchange(auth["apiKey"].strip(), url, endpoint, deadline, waits_until)
    if_unknown = _hide_secret(if_unknown, exchange.key)  # a key as externalId: on every path, the unexpected's too
    failure: KustomerError
    try:
        return exchange.send_handling_retries(body, if_unknown)
    except KustomerError as exc:
        failure = exc
    except Exception as exc:  # a bug or an httpx surprise: still never the key, nor its traceback
        failure = exchange.unexpected(exc, if_unknown)
    failure.__cause__ = failure.__context__ = None
    raise failure.with_traceback(None)  # raised outside the `except`, so no context is attached again


class _NoAnswer(Exception):  # noqa: N818  # an internal signal, never raised to the user
    """An attempt that ended without a usable answer; `sent` says whether any of the request went out."""

    def __init__(self, reason: str, sent: bool, status: int | None = None, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.sent, self.status, self.retry = reason, sent, status, retry


class _AttemptClock:
    """One attempt's deadline, `seconds` from its start: when it passes, the connection's socket is shut,
    which ends any read or write under way at once (a socket that connects later is shut as it does).
    Its timer thread acts only under the lock, and only until the attempt stops it."""

    def __init__(self, seconds: float, kept: _KeptSocket) -> None:
        self.seconds, self.kept = seconds, kept
        self.expired = False
        self._timer: threading.Timer | None = None
        self._started = self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Once per attempt, even if httpcore retries on a new connection."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def connected(self, fd: int) -> None:
        """A new connection's socket (-1 while one is being made: the old number means nothing now)."""
        with self._lock:
            self.kept.fd = fd
            if self.expired and not self._stopped and fd >= 0:
                _shut(fd)

    def stop(self) -> None:
        """Before the answer is closed: once the connection goes back to the pool, or its number to the
        system, this attempt's deadline has nothing to do with it."""
        with self._lock:
            self._stopped = True
            if self._timer:
                self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._stopped:  # the attempt ended as its deadline passed
                return
            self.expired = True
            if self.kept.fd >= 0:
                _shut(self.kept.fd)


def _shut(fd: int) -> None:
    """By the socket's number: a TLS handshake or exchange runs on an ssl socket that took it over (the
    socket object httpcore connected with is detached by then, and shutting it would do nothing)."""
    with contextlib.suppress(OSError):  # closed already
        held = socket.socket(fileno=fd)
        try:
            held.shutdown(socket.SHUT_RDWR)
        finally:
            held.detach()  # the connection's socket stays httpcore's to close


class _Attempt:
    """What one attempt learns from httpcore's trace hook: whether it traced at all, and whether any of
    the request went out. Its clock starts with the first event."""

    def __init__(self, clock: _AttemptClock) -> None:
        self.clock = clock
        self.traced = self.sent = False

    def trace(self, event: str, info: dict[str, Any]) -> None:
        self.traced = True
        self.clock.start()  # before the connection, so a proxy's CONNECT and the TLS handshake count
        if event.endswith(".connect_tcp.started"):  # directly or through a proxy
            self.clock.connected(-1)
        elif event.endswith(".connect_tcp.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            self.clock.connected(sock.fileno() if sock is not None else -1)
        elif event.endswith(".send_request_headers.started") and info["request"].method != b"CONNECT":
            self.sent = True


class _Exchange:
    """One call to Kustomer: the request, whether any of it went out, and how the server's text is shown."""

    def __init__(self, key: str, url: httpx.URL, endpoint: _Endpoint, deadline: float, waits_until: float) -> None:
        self.key, self.url, self.endpoint, self.policy = key, url, endpoint, POLICY
        self.deadline = min(deadline, self.policy.clock() + self.policy.max_job_seconds)
        self.where = _hide_secret(f"{endpoint.method} {url}", key)  # a lookup's path holds what the user gave
        self.answers = _Answers(key, self.where, endpoint)
        self.out_of_time = False  # a wait or an attempt was cut short by the job's time
        self.sent = False  # whether any of the last attempt's request went out
        self.waited = 0.0
        self.timeout = httpx.Timeout(self.policy.read_timeout, connect=self.policy.connect_timeout)
        self.waits_until = min(waits_until, self.deadline)

    # -- the layers, from the outside in --

    def send_handling_retries(self, body: Any, if_unknown: str) -> Any:
        content = None if body is None else self.encode(body)
        failures = rate_limited = 0
        announced: float | None = None  # the last believable reset Kustomer announced
        held, kept = self.client()
        with held as client:
            while True:
                try:
                    if self.deadline - self.policy.clock() < 1:
                        self.out_of_time = True
                        raise _NoAnswer("this job's time ran out before the attempt", False, retry=False)
                    response, raw = self.attempt(client, kept, content)
                    if response.status_code >= 500 and self.endpoint.method == "GET":  # reading again is safe
                        raise _NoAnswer(f"Kustomer answered {response.status_code}", True, response.status_code)
                except _NoAnswer as lost:
                    failures += 1
                    wait = _failed_attempt_wait(failures, self.waited, self.policy) if lost.retry else None
                    wait = self.in_time(wait)
                    if lost.sent and self.endpoint.method != "GET":
                        raise KustomerOutcomeUnknownError(
                            f"The request {self.where} was sent, and {lost.reason}. {if_unknown}", lost.status
                        ) from None
                    if wait is None:
                        raise self.no_answer_error(lost, failures) from None
                    self.pause(wait, f"{self.where}: {lost.reason}", failures + 1, self.policy.max_failed_attempts)
                    continue
                if response.status_code != 429:
                    return self.answers.result(response, raw, if_unknown)
                rate_limited += 1
                reset_at = reset_time(response.headers, self.policy.clock(), self.policy)
                announced = reset_at or announced
                wait = self.in_time(rate_limit_wait(reset_at, rate_limited, self.waited, self.policy))
                if wait is None:
                    raise self.rate_limit_error(raw, rate_limited, announced)
                why = f"Kustomer answered 429 Too Many Requests to {self.where} (the org's rate limit)"
                self.pause(wait, why, rate_limited + 1, self.policy.max_rate_limited)

    def in_time(self, wait: float | None) -> float | None:
        """`wait`, unless the job's time would be up before an attempt after it could end, or the wait
        would end after `waits_until`: None."""
        if wait is not None and self.policy.clock() + wait + 1 > min(self.deadline, self.waits_until):
            self.out_of_time = True
            return None
        return wait

    def client(self) -> tuple[contextlib.AbstractContextManager[httpx.Client], _KeptSocket]:
        """This call's client and its connection's socket: its own, or this thread's that
        `reused_connections()` keeps (left open)."""
        connect = max(1.0, min(self.policy.connect_timeout, self.deadline - self.policy.clock()))
        self.timeout = httpx.Timeout(self.policy.read_timeout, connect=connect)
        cafile, capath = os.environ.get("SSL_CERT_FILE") or "", os.environ.get("SSL_CERT_DIR") or ""
        loopback = _is_loopback(self.url.host)  # a local sandbox never goes through a proxy: the key would cross it
        if _REUSED is None:
            return self.new_client(loopback, cafile, capath), _KeptSocket()
        key = (loopback, cafile, capath, threading.get_ident())
        with _REUSED_LOCK:
            if key not in _REUSED:
                _REUSED[key] = (self.new_client(loopback, cafile, capath), _KeptSocket())
            client, kept = _REUSED[key]
            return contextlib.nullcontext(client), kept

    def new_client(self, loopback: bool, cafile: str, capath: str) -> httpx.Client:
        trust = trusted_context(cafile or None, capath or None)
        try:
            client = httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=not loopback, verify=trust)
            _freeze_once()  # httpx imports httpcore when it makes its first client
            return client
        except Exception as exc:  # a proxy setting that cannot be used: an unknown scheme, socks without socksio
            names = [
                n for n in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY") if os.environ.get(n) or os.environ.get(n.lower())
            ]
            raise KustomerConnectionError(
                f"Nothing was sent to Kustomer: this worker's proxy settings ({', '.join(names) or 'environment'}) "
                f"cannot be used ({type(exc).__name__}; the value is not shown, as it may hold a password). "
                "Fix or remove them, then run again."
            ) from None

    def attempt(self, client: httpx.Client, kept: _KeptSocket, content: bytes | None) -> tuple[httpx.Response, bytes]:
        """Send once and read the answer within the size and time bounds, or raise _NoAnswer."""
        seconds = max(0.0, min(self.policy.response_deadline, self.deadline - self.policy.clock()))
        attempt = _Attempt(_AttemptClock(seconds, kept))
        self.out_of_time = self.out_of_time or seconds < self.policy.response_deadline
        try:
            return self.send_once(client, content, attempt)
        finally:
            attempt.clock.stop()
            self.sent = attempt.sent

    def send_once(self, client: httpx.Client, content: bytes | None, attempt: _Attempt) -> tuple[httpx.Response, bytes]:
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json", "User-Agent": USER_AGENT}
        headers["Accept-Encoding"] = "gzip, deflate"  # what _BoundedDecoder reads, and nothing it cannot bound
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            request = client.build_request(
                self.endpoint.method,
                self.url,
                content=content,
                headers=headers,
                timeout=self.timeout,
                extensions={"trace": attempt.trace},
            )
            response = client.send(request, stream=True)
            try:
                return response, self.read_body(response, attempt)
            finally:
                attempt.clock.stop()  # before the connection goes back to the pool, or its number is freed
                response.close()
        except _NoAnswer:
            raise
        except Exception as exc:
            problem = _certificate_problem(exc, self.url.host)
            if problem:  # the same certificate would come back: trying again would only wait
                raise self.untrusted_error(problem) from None
            if not attempt.traced:  # a transport that does not trace (a test double): judge by what failed
                attempt.sent = isinstance(exc, _AFTER_SENDING)
            connect_failed = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError)
            retry = not attempt.sent and not attempt.clock.expired and connect_failed  # a dripping proxy drips again
            raise _NoAnswer(self.failure_reason(exc, attempt), attempt.sent, retry=retry or attempt.sent) from None

    def read_body(self, response: httpx.Response, attempt: _Attempt) -> bytes:
        success = response.is_success
        limit = (self.endpoint.max_bytes or self.policy.max_response_bytes) if success else _ERROR_BODY_BYTES
        chunks: list[bytes] = []
        try:
            decoder = _BoundedDecoder(response.headers.get_list("content-encoding", split_commas=True), limit)
            for piece in response.iter_raw():
                chunks.append(decoder.feed(piece))
                if decoder.full:
                    break
        except Exception as exc:
            if not success:
                return b"".join(chunks)  # an error status whose body broke off: the status explains it
            undecodable = isinstance(exc, ValueError | zlib.error) and not attempt.clock.expired
            reason = _clean(str(exc), self.key, 200) if undecodable else self.failure_reason(exc, attempt)
            status = response.status_code
            raise _NoAnswer(f"Kustomer answered {status}, but its answer broke off ({reason})", True, status) from None
        if decoder.full and success:
            raise _NoAnswer(
                f"Kustomer answered {response.status_code}, but its answer was over {limit:,} bytes, too large to read",
                True,
                response.status_code,
                retry=False,
            )
        return b"".join(chunks)

    def failure_reason(self, exc: Exception, attempt: _Attempt) -> str:
        clock = attempt.clock
        if clock.expired and clock.seconds < self.policy.response_deadline:
            return "this job's time ran out during the exchange, which was cut off"
        if clock.expired:
            return f"the exchange took longer than {clock.seconds:.0f} s and was cut off"
        known = [_TRANSPORT_REASONS[kind] for kind in type(exc).__mro__ if kind in _TRANSPORT_REASONS]
        reason = known[0] if known else f"the request failed ({type(exc).__name__})"  # the most specific
        detail = _clean(str(exc), self.key, 200)
        return f"{reason}: {detail}" if detail else reason

    # -- waits --

    def pause(self, wait: float, why: str, attempt: int, most: int) -> None:
        _wait_saying_why(self.policy, wait, why, f"attempt {attempt} of at most {most}")
        self.waited += wait

    def rate_limit_error(self, raw: bytes, count: int, reset_at: float | None) -> KustomerRateLimitError:
        when = "Kustomer did not say when its rate-limit window resets"
        if reset_at is not None:
            stamp, ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset_at)), reset_at - self.policy.clock()
            when = f"the window resets at {stamp} (in {ahead:.0f} s)"
            if ahead < 0:
                when = f"the window was announced to reset at {stamp}, {-ahead:.0f} s ago, and is still full"
        facts = (
            f"Rate limited by Kustomer: {count} answer(s) 429 Too Many Requests to {self.where} over "
            f"{self.waited:.0f} s of waiting ({self.wait_bound()}); {when}. {self.answers.error_details(raw)[0]}"
            f"{self.answers.nothing_done()}"
        )
        advice = (
            "Run again after the reset; in a flow, lower the for-loop's parallelism or spread the schedule: the "
            "limit is shared by every key and app of the org."
        )
        return KustomerRateLimitError(facts, advice, reset_at, count)

    def untrusted_error(self, problem: str) -> KustomerConnectionError:
        return KustomerConnectionError(
            f"Nothing was sent to Kustomer: the server at {self.url.scheme}://{self.url.netloc.decode()} showed a "
            f"TLS certificate this worker cannot trust: {problem}. It was not tried again (the certificate would be "
            f"the same), so {self.unchanged()} Check that auth.baseUrl is Kustomer's API host, such as "
            "https://api.kustomerapp.com. If this worker reaches the internet through a TLS-inspecting proxy, give "
            "the worker that proxy's CA: SSL_CERT_FILE (a PEM file) or SSL_CERT_DIR (a hashed directory) in its "
            "environment."
        )

    def wait_bound(self) -> str:
        if self.out_of_time and self.waits_until < self.deadline:  # only the waiter's main waits less than it may run
            return "the next wait would have ended past the time given to wait (max_wait_seconds)"
        if self.out_of_time:
            return f"the next wait would have gone past this job's time, {self.policy.max_job_seconds:.0f} s at most"
        return f"this script waits at most {self.policy.max_total_wait:.0f} s"

    def no_answer_error(self, lost: _NoAnswer, attempts: int) -> KustomerConnectionError:
        if lost.sent:  # a GET: reading again was safe, and did not help
            return KustomerConnectionError(
                f"Kustomer gave no usable answer to {self.where} ({lost.reason}), {_attempts(attempts)} over "
                f"{self.waited:.0f} s. A GET changes nothing in Kustomer: run again later."
            )
        host = self.url.host  # api.kustomerapp.eu is a guess at the EU's host, which is another name
        region = f" {_REGION_HINT}" if "kustomer" in host and not host.endswith(".kustomerapp.com") else ""
        return KustomerConnectionError(
            f"Could not connect to {self.url.scheme}://{self.url.netloc.decode()} ({lost.reason}), "
            f"{_attempts(attempts)} over {self.waited:.0f} s. Nothing was sent, so {self.unchanged()} "
            f"Check auth.baseUrl, the network and any proxy settings, then run again.{region}"
        )

    def unchanged(self) -> str:
        """What a request that never reached Kustomer left as it was. A read creates nothing, so after a GET
        "nothing was created" would read as if the messages an earlier step created were not there."""
        if self.endpoint.method == "GET":
            return "this read changed nothing in Kustomer (what earlier steps created is unaffected)."
        return "nothing was created."

    def unexpected(self, exc: Exception, if_unknown: str) -> KustomerError:
        text = _clean(f"{type(exc).__name__}: {exc}", self.key, 300)
        if self.sent and self.endpoint.method != "GET":
            return KustomerOutcomeUnknownError(f"Unexpected error while calling Kustomer ({text}). {if_unknown}")
        return KustomerConnectionError(f"Unexpected error before Kustomer answered ({text}), so {self.unchanged()}")

    def encode(self, body: Any) -> bytes:
        try:
            return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:  # validation should have caught it: say so anyway
            raise KustomerInputError(
                f"Nothing was sent to Kustomer: body is not JSON ({type(exc).__name__}); check its nested values."
            ) from None


class _Answers:
    """What an answer from Kustomer means: the result, or the error a user reads, in Kustomer's words
    (cleaned) with a hint. It knows the call (its key, where it went, its endpoint), not its attempts."""

    def __init__(self, key: str, where: str, endpoint: _Endpoint) -> None:
        self.key, self.where, self.endpoint = key, where, endpoint

    def result(self, response: httpx.Response, raw: bytes, if_unknown: str) -> Any:
        status = response.status_code
        reason = f"{status} {_clean(response.reason_phrase, self.key, 60)}".strip()
        if response.is_success:
            too_large: list[str] = []

            def finite(text: str) -> Any:  # 1e400 is no float: keep its text, so the result stays JSON
                value = float(text)
                if math.isfinite(value):
                    return value
                too_large.append(text)
                return text

            try:
                answer = _without_key(json.loads(raw, parse_constant=_refuse_constant, parse_float=finite), self.key)
            except (ValueError, RecursionError):
                shown = _clean(raw[:1000].decode("utf-8", "replace"), self.key, 200) or "an empty body"
                if self.endpoint.method == "GET":
                    raise KustomerAPIError(
                        f"Kustomer answered {reason} to {self.where}, but not with JSON ({shown}).", status
                    ) from None
                raise KustomerOutcomeUnknownError(
                    f"Kustomer answered {reason} to {self.where}, which means success, but its answer was not "
                    f"JSON ({shown}). The request most likely took effect. {if_unknown}",
                    status,
                ) from None
            if too_large:
                data = answer.get("data") if isinstance(answer, dict) else None
                which = f" (id {_clean(data.get('id'), self.key, 40)})" if isinstance(data, dict) else ""
                print(
                    f"Kustomer answered {reason} to {self.where}{which}, but its answer holds {len(too_large)} "
                    f"number(s) too large for JSON ({_clean(', '.join(too_large), self.key, 60)}): the result gives "
                    "each as its text, the rest as Kustomer sent it.",
                    flush=True,
                )
            return answer
        if response.is_redirect:
            target = _clean(response.headers.get("location", "?"), self.key, 120)
            said, fix = f"Kustomer answered {reason} to {self.where}, pointing to {target}.", _REDIRECT_FIX
            if self.endpoint.method != "GET":  # the request arrived: it may have taken effect before the redirect
                raise KustomerOutcomeUnknownError(
                    f"{said} The request arrived, so it may have taken effect; it was neither followed (the API key "
                    f"stays with the host you chose) nor repeated. {if_unknown} {fix}",
                    status,
                )
            raise KustomerAPIError(
                f"{said} Redirects are not followed, so the API key stays with the host you chose. "
                f"{self.nothing_done()}{fix}",
                status,
            )
        text, code, pointer = self.error_details(raw)
        if status >= 500:
            if self.endpoint.method == "GET":
                raise KustomerAPIError(f"Kustomer answered {reason} to {self.where}: {text}", status, code, pointer)
            raise KustomerOutcomeUnknownError(f"Kustomer answered {reason} to {self.where}: {text}{if_unknown}", status)
        raise KustomerAPIError(
            f"Kustomer rejected the request with {reason} on {self.where}: {text}{self.nothing_done()}"
            f"{self.hint(status, text)}".strip(),
            status,
            code,
            pointer,
        )

    def nothing_done(self) -> str:
        return "" if self.endpoint.method == "GET" else "Nothing was created. "

    def hint(self, status: int, text: str) -> str:
        role = self.endpoint.role
        if status in (401, 403) and "pod" in text:
            return "The key belongs to another region: " + _REGION_HINT
        hints = {
            400: "Fix the field named above and run again.",
            401: f"Check that auth.apiKey is a current Kustomer API key with the role {role}; a key's roles cannot "
            "be changed, so create a new key if needed. A key works only in its own region: " + _REGION_HINT,
            403: f"The key lacks a role this request needs: {role}.",
            404: self.endpoint.not_found,
            409: "Kustomer reported a conflict with the current state of the record; run again once it settles.",
            413: "The request is too large for Kustomer (about 100 KB): send fewer messages per request or shorter "
            "previews.",
        }
        return hints.get(status, "")

    def error_details(self, raw: bytes) -> tuple[str, str | None, str | None]:
        """Kustomer's own words from an error body, short and safe to show, whatever its shape; and the
        first error's code and pointer."""
        text = raw[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
        try:
            errors = json.loads(text).get("errors")
        except (ValueError, AttributeError, RecursionError):
            errors = None
        if isinstance(errors, list) and errors:
            parts, code, pointer = [], None, None
            for error in [e for e in errors[:5] if isinstance(e, dict)]:
                words = [_clean(error.get(k), self.key, 300) for k in ("code", "title", "message", "detail")]
                source = error["source"] if isinstance(error.get("source"), dict) else {}
                places = {k: _clean(source.get(k), self.key, 100) for k in ("pointer", "parameter", "parameters")}
                words += [f"at {k} {v}" for k, v in places.items() if v]
                code = code or _clean(error.get("code"), self.key, 100) or None
                pointer = pointer or places["pointer"] or places["parameter"] or None
                if any(words):
                    parts.append(": ".join(dict.fromkeys(w for w in words if w)))
            more = f" (and {len(errors) - 5} more errors)" if len(errors) > 5 else ""
            if parts:
                return _clean("; ".join(parts), self.key, 600) + more + ". ", code, pointer
        if not text.strip():
            return "(no error details in the answer). ", None, None
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        if title:
            text = title.group(1)
        elif text.lstrip().startswith("<"):
            text = re.sub(r"<[^>]*>", " ", text)
        return f"{_clean(text, self.key, 300)}. ", None, None


_TRANSPORT_REASONS: dict[type[Exception], str] = {
    httpx.ConnectTimeout: "the connection timed out",
    httpx.ProxyError: "the proxy refused the connection",
    httpx.ConnectError: "the connection failed",
    httpx.ReadTimeout: "no answer came within the read timeout",
    httpx.WriteTimeout: "sending timed out",
    httpx.PoolTimeout: "no connection was free in time",
    httpx.RemoteProtocolError: "the connection was closed or the answer was malformed",
    httpx.ReadError: "the connection broke",
    httpx.WriteError: "the connection broke while sending",
    httpx.UnsupportedProtocol: "the URL's protocol is not supported",
    httpx.LocalProtocolError: "the request could not be written",
    httpx.TimeoutException: "a timeout passed",
}
# Failures that can only happen once the request has started to go out.
_AFTER_SENDING = (httpx.ReadError, httpx.ReadTimeout, httpx.WriteError, httpx.WriteTimeout, httpx.RemoteProtocolError)
# Only text from the server on an error path is cleaned: compiled by re on first use, not at every import.
_ANSI_ESCAPE = r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)?"
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
_REDIRECT_FIX = "Set auth.baseUrl to the API host itself, e.g. https://api.kustomerapp.com."
_REGION_HINT = (
    "set auth.baseUrl to the key's region: EU https://api.prod2.kustomerapp.com, India "
    "https://api.prod4.kustomerapp.com, or https://<your-org>.api.kustomerapp.com, which routes to it."
)


_MAX_ENCODING_LAYERS = 2


class _BoundedDecoder:
    """Undoes Content-Encoding (gzip, deflate, layered as listed) while counting what comes out, so a
    small compressed answer cannot inflate past `limit` bytes in memory: a 2 KB bomb stops at the limit."""

    def __init__(self, encodings: list[str], limit: int) -> None:
        layers = [e.strip().lower() for e in encodings if e.strip().lower() not in ("", "identity")]
        unknown = [e for e in layers if e not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise ValueError(f"it is encoded as {', '.join(unknown)[:40]}, which this script does not read")
        if len(layers) > _MAX_ENCODING_LAYERS:  # each layer is a decoder; thousands would cost memory and time
            raise ValueError(f"it is encoded {len(layers)} times over; at most {_MAX_ENCODING_LAYERS} layers are read")
        self.layers = [zlib.decompressobj(zlib.MAX_WBITS | 32) for _ in reversed(layers)]  # gzip or zlib header
        self.limit, self.size, self.full = limit, 0, False

    def feed(self, data: bytes) -> bytes:
        for layer in self.layers:
            data = layer.decompress(data, self.limit - self.size + 1)  # never more than the limit at once
        data = data[: self.limit - self.size + 1]
        self.size += len(data)
        if self.size > self.limit:
            self.full = True
            return data[: len(data) - (self.size - self.limit)]
        return data


@functools.cache
def trusted_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """The CAs a server's certificate is checked against, decided once per job: the worker's
    SSL_CERT_FILE / SSL_CERT_DIR when set (a TLS-inspecting proxy's CA); else the system's hashed
    certificate directory, from which OpenSSL reads only the CA a handshake needs; else certifi's
    bundle (about 140 CAs parsed up front, as httpx does by default). Verification is never off."""
    if not (cafile or capath):
        capath = ssl.get_default_verify_paths().capath  # None when the directory does not exist
        with contextlib.suppress(OSError):
            hashed = capath and any(e.name[8:9] == "." and e.name[9:].isdigit() for e in os.scandir(capath))
            if hashed:
                return ssl.create_default_context(capath=capath)
        import certifi  # httpx's own dependency

        return ssl.create_default_context(cafile=certifi.where())
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        names = " and ".join(n for n, v in (("SSL_CERT_FILE", cafile), ("SSL_CERT_DIR", capath)) if v)
        raise KustomerConnectionError(
            f"Nothing was sent to Kustomer: this worker's {names} cannot be read as CA certificates "
            f"({type(exc).__name__}: {_clean(str(exc), '', 120)}). Point it to a PEM file (or a hashed directory) "
            "holding the CA to trust, or unset it to use the system's."
        ) from None


@functools.cache
def _freeze_once() -> None:
    """What httpcore's import made, out of later collections (as the collector part does for httpx's):
    once per process, as a dedicated worker runs many jobs in one."""
    gc.freeze()


def _certificate_problem(exc: BaseException, host: str) -> str:
    """What was wrong with the server's certificate, if that is why the connection failed; else empty."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx's error, from httpcore's, from ssl's
        if seen is not None and not isinstance(seen, ssl.SSLCertVerificationError):
            seen = seen.__cause__ or seen.__context__
    if not isinstance(seen, ssl.SSLCertVerificationError):
        return ""
    unknown_ca = "it was issued by a certificate authority this worker does not trust"
    problems = {
        9: "it is not valid yet (or this worker's clock is wrong)",
        10: "it has expired (or this worker's clock is wrong)",
        18: "it is self-signed",
        19: unknown_ca,  # a self-signed CA in the chain
        20: unknown_ca,  # the issuer is not among the trusted
        21: unknown_ca,  # the first certificate's issuer is not among the trusted
        62: f"it was issued for another host name, not {host}",
    }
    return problems.get(seen.verify_code, f"{_clean(str(seen.verify_message), '', 120)} (code {seen.verify_code})")


def _wait_saying_why(policy: RetryPolicy, wait: float, why: str, then: str) -> None:
    """Sleep `wait` seconds; from `log_waits_from` on, first say why in one line, which Windmill shows as
    the job's log while it runs (never the key, never the body)."""
    if wait >= policy.log_waits_from:
        until = time.strftime("%H:%M:%S", time.gmtime(policy.clock() + wait))
        print(f"{why}; waiting {wait:.0f} s, until {until} UTC, then {then}.", flush=True)
    if wait > 0:
        policy.sleep(wait)


def _failed_attempt_wait(attempts: int, waited: float, policy: RetryPolicy) -> float | None:
    """How long to wait before trying again after an attempt got no answer; None to give up."""
    wait = _backoff(attempts, policy)
    return None if attempts >= policy.max_failed_attempts or waited + wait > policy.max_total_wait else wait


def rate_limit_wait(reset_at: float | None, losses: int, waited: float, policy: RetryPolicy) -> float | None:
    """How long to wait after the `losses`-th 429 in a row; None to give up.

    Kustomer's announced reset is followed, plus under a second of jitter that shrinks with each
    loss: jobs of one parallel import share no state, so this is how the one that has waited longest
    gets the next window first. From the second 429 on, the wait is never less than an exponential
    backoff, so a server that keeps announcing a reset a second ahead gets a handful of requests."""
    if reset_at is None:
        wait = _backoff(losses, policy)
    else:
        floor = 0.0 if losses == 1 else min(policy.backoff_cap, policy.backoff_first * 2.0 ** (losses - 2))
        wait = max(reset_at - policy.clock(), floor) + random.uniform(0.1, 1.0) / losses
    too_long = wait > policy.max_single_wait or waited + wait > policy.max_total_wait
    return None if losses >= policy.max_rate_limited or too_long else wait


def _backoff(attempt: int, policy: RetryPolicy) -> float:
    """Exponential backoff with jitter, about 1, 2, 4, 8 s, so parallel jobs do not retry in step."""
    return min(policy.backoff_cap, policy.backoff_first * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def reset_time(headers: httpx.Headers, now: float, policy: RetryPolicy) -> float | None:
    """When Kustomer's rate-limit window resets (epoch seconds), from Retry-After (seconds or an HTTP
    date) and x-ratelimit-reset (epoch seconds or milliseconds, or seconds from now). A value that is
    not finite, lies in the past or more than `max_reset_ahead` away is not believed: None."""
    times = []
    retry_after = headers.get("retry-after", "").strip()
    if retry_after:
        seconds = _number(retry_after)
        if seconds is not None:
            times.append(now + seconds)
        else:
            import email.utils  # only for the HTTP-date form of Retry-After

            with contextlib.suppress(TypeError, ValueError, OverflowError, IndexError):
                date = email.utils.parsedate_to_datetime(retry_after)
                times.append((date if date.tzinfo else date.replace(tzinfo=UTC)).timestamp())
    value = _number(headers.get("x-ratelimit-reset", ""))
    if value is not None and value > 0:
        if value > 1e12:  # epoch milliseconds
            value /= 1000
        times.append(value if value > 1e9 else now + value)  # epoch seconds, else seconds from now
    believable = [t for t in times if math.isfinite(t) and now - 1 <= t <= now + policy.max_reset_ahead]
    return max(believable) if believable else None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # so a result always is: Windmill stores it as it is


def _clean(value: Any, key: str, limit: int) -> str:
    """A value that came from the server or the network, as it may be shown (a log line, an error, a
    report): a string, or a number as its text (anything else is nothing), with control and format
    characters removed, the key and any 16 characters of it hidden, whitespace folded, then shortened
    to `limit` characters. Never used on the script's own words."""
    finite_number = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e300
    text = value if isinstance(value, str) else str(value) if finite_number else ""
    text = text[: 16 * limit + 4096]  # 9 MB of status text costs no more than a page
    if not (text.isascii() and text.isprintable()):  # the usual case ("OK", "Created") compiles no pattern
        text = re.sub(_CONTROL, " ", re.sub(_ANSI_ESCAPE, "", text))
    if not text.isascii():
        import unicodedata  # only for text that needs it

        text = "".join(c for c in text if c.isascii() or unicodedata.category(c)[0] not in "CZ" or c == " ")
    text = " ".join(_hide_secret(text, key).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _without_key(value: Any, key: str) -> Any:
    """The answer with the key, and any 16 characters of it, hidden wherever a string holds them (a
    server may echo the request back, whole or cut off); everything else exactly as Kustomer sent it."""
    stack = [value]
    while stack:
        item = stack.pop()
        pairs = list(item.items()) if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else []
        for name, inner in pairs:
            if isinstance(inner, str):
                hidden = _hide_secret(inner, key)
                if hidden != inner:
                    item[name] = hidden
            elif isinstance(inner, dict | list):
                stack.append(inner)
            hidden_name = _hide_secret(name, key) if isinstance(name, str) else name
            if hidden_name != name:
                item[hidden_name] = item.pop(name)
    return value if not isinstance(value, str) else _hide_secret(value, key)


def _hide_secret(text: str, key: str) -> str:
    return _hide_key_fragments(_hide_key(text, key), key) if key else text


def _hide_key(text: str, key: str) -> str:
    """The key, and its URL-encoded forms, replaced by [redacted]. A key shorter than 16 characters is
    hidden only where it stands as a word, so the sandbox key "k" does not turn "look" into "loo[redacted]"."""
    from urllib.parse import quote, quote_plus  # loaded by httpx already

    for form in dict.fromkeys((key, quote(key, safe=""), quote_plus(key, safe=""))):
        if form not in text:
            continue
        if len(form) >= 16:
            text = text.replace(form, "[redacted]")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", "[redacted]", text)
    return text


def _hide_key_fragments(text: str, key: str, size: int = 16) -> str:
    """Any run of `size` or more characters of the key (a server may echo a cut-off key) replaced by
    [redacted]; one pass over the text with a set of the key's windows, so it stays linear."""
    if len(key) < size or len(text) < size:
        return text
    # Any `size` characters of the key hold one of its aligned blocks of size/2 whole: a quick test first
    half = size // 2
    if not any(key[i : i + half] in text for i in range(0, len(key) - half + 1, half)):
        return text
    windows = {key[i : i + size] for i in range(len(key) - size + 1)}
    parts: list[str] = []
    end = 0  # where the text not yet written starts
    for i in range(len(text) - size + 1):
        if text[i : i + size] in windows:
            if i > end or not parts:  # else this window overlaps or touches the last hidden run
                parts += [text[end:i], "[redacted]"]
            end = i + size
    return "".join(parts) + text[end:] if parts else text


# ---- end of shared part "transport" ----


# Below the shared part, which defines KustomerError.
class KustomerBulkPendingError(KustomerError):
    """The operation was still queued or running when the wait ran out; nothing is lost: look again later."""

    def __init__(self, message: str, bulk_id: str = "", status: str = "") -> None:
        super().__init__(message)  # the message alone, so that str() is it; the rest survives pickling as attributes
        self.bulk_id, self.status = bulk_id, status
