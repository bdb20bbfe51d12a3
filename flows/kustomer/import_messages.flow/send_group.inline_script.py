# skip_result_postprocessing
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx==0.28.1", "wmill==1.850.0"]  # pinned as in uv.lock
# ///
"""Step 2 of import_messages, once per group of batches (prepare's `group_size`): send each batch
with bulk_create_messages, confirm it with wait_for_bulk_results while later batches go out, and
resolve what an earlier run left unknown. One job, one pace, every request of the group.

Safe to run twice, whatever stopped the earlier run: each batch's state (`state-<n>.json`) is read
first and written before each step that changes Kustomer.

- new: the state becomes `sending`, then the bulk request goes out. Its answer makes it `accepted`
  (with the operation's id) or `done` (not sent, or refused whole: nothing of it was created).
- sending: an earlier run may have sent it and lost the answer. It is never sent again on a guess:
  each message with an `externalId` is looked up; found is created, and not found by a lookup made
  SETTLED seconds after the request is not created. A batch none of whose messages exists by then
  never reached Kustomer (or Kustomer dropped it): it is sent again, once. Messages without an
  `externalId` stay unknown, with what to check.
- accepted: the operation is read (one read, once it has had time to finish) and each message's
  outcome written: the state becomes `done`.
- done: nothing to do.

Every request, sends, reads and lookups alike, waits its turn at one pace, `max_requests_per_minute`
(the loop runs one job at a time, so the job's pace is the import's); at 0 they go as fast as
Kustomer answers, a 429 waited out. The job starts no send after SEND_UNTIL seconds and ends its
requests by END_BY, inside Cloud's 900 s per job: what it leaves, the next run does. Its log says
each batch's fate; its result is a few counts.
"""

import functools
import heapq
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from f.kustomer import bulk_create_messages as bulk
from f.kustomer import create_message as lookup
from f.kustomer import import_store as store
from f.kustomer import wait_for_bulk_results as waiter

SEND_UNTIL = 660.0  # seconds into the job: no send starts later
END_BY = 780.0  # seconds into the job: no request runs later (Cloud ends a job at 900 s)
WORKERS = 8  # requests in flight at once, paced
UNPACED_WORKERS = 4  # unpaced: fewer, so that a small budget's 429s do not starve anyone
SEND_AGAIN = 3  # times a batch nothing of which reached Kustomer (rate limited, no connection) is sent again
SEND_AGAIN_AFTER = 15.0  # seconds, times the number of tries so far
# Seconds after an operation is submitted before its first read: most are done by then, so one read
# confirms it. A worker may set it (WHITELIST_ENVS); the workbench's tests do, against a sandbox
# whose operations take a fraction of a second.
FIRST_LOOK_AFTER = float(os.environ.get("KUSTOMER_IMPORT_FIRST_LOOK_SECONDS") or waiter.FIRST_LOOK_AFTER)
LOOK_AGAIN_MAX = 30.0  # seconds between looks at an operation not done yet: 2, 4, 8 ... up to this
SAVE_LEAD = 0.05  # seconds before a turn its state is written: a storage write takes a few milliseconds
LEASE_CHECK_EVERY = 30.0  # seconds: how stale this job's knowledge of the import's lease may get
NOTHING_SENT = (bulk.KustomerInputError, bulk.KustomerConnectionError, bulk.KustomerRateLimitError)
RATE_LIMIT_ADVICE = (
    "Run the import again after the reset (it sends only what is left), and give max_requests_per_minute a "
    "share of the org's budget: the limit is shared by every key and app of the org."
)


def main(
    auth: dict,  # type: ignore[type-arg]  # the kustomer resource
    import_id: str,
    group: list[int],  # [first batch, end]
    number: int = 0,  # this group's index in the loop
    groups: int = 1,
    max_requests_per_minute: int = 0,
) -> dict[str, Any]:
    # The flow's `auth` input is the kustomer resource; each request of the scripts checks it first.
    job = GroupJob(cast(bulk.kustomer, auth), import_id, range(group[0], group[1]), max_requests_per_minute)
    number += 1
    rate = f"at most {max_requests_per_minute} request{'s' if max_requests_per_minute != 1 else ''} a minute"
    pace = rate if max_requests_per_minute else "unpaced"
    print(f"Group {number} of {groups}: batches {group[0] + 1} to {group[1]}, {pace}.")
    with bulk.reused_connections(), waiter.reused_connections(), lookup.reused_connections():
        counts = job.run()  # each script's calls over one client, its connections kept open
    said = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if n) or "nothing to do"
    print(f"Group {number} of {groups} ends after {time.monotonic() - job.started:.0f} s: {said}.")
    return {"group": group, **counts}


# The turns are this much further apart than 60 / max_requests_per_minute: a request reaches Kustomer
# a few milliseconds after its turn, more or less, and without the slack those differences put a
# request or two more than the budget's share into some 6 s windows (bench (e)).
PACE_SLACK = 1.04


class Pacer:
    """Turns for requests, at least PACE_SLACK x 60 / per_minute seconds apart, for every thread of the job."""

    def __init__(self, per_minute: int) -> None:
        self.interval = PACE_SLACK * 60.0 / per_minute if per_minute else 0.0
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait_turn(self, first: Callable[[], None] | None = None) -> None:
        """One thread at a time takes the next turn, `interval` after the last one was taken: a thread
        that wakes late (a busy worker) pushes the turns after it back, instead of going out together.
        `first` (the write of the batch's state) runs just before the turn, SAVE_LEAD ahead of it, so
        the request still goes out on time and a slow write only pushes the turns after it back."""
        if first and not self.interval:  # unpaced: there is no turn to keep, so no thread waits on this write
            first()
            return
        with self.lock:
            if first:
                time.sleep(max(0.0, self.next_at - SAVE_LEAD - time.monotonic()))
                first()
            time.sleep(max(0.0, self.next_at - time.monotonic()))
            self.next_at = time.monotonic() + self.interval

    def hold(self) -> None:
        """At the end of the job: the next job's first request comes no sooner than this one's next turn."""
        time.sleep(max(0.0, self.next_at - time.monotonic()))


class GroupJob:
    def __init__(self, auth: bulk.kustomer, import_id: str, batches: range, per_minute: int) -> None:
        self.auth, self.import_id, self.batches = auth, import_id, batches
        self.run_id = os.environ.get("WM_ROOT_FLOW_JOB_ID") or os.environ.get("WM_JOB_ID") or "local"
        self.pacer = Pacer(per_minute)
        self.started = time.monotonic()
        self.deadline = time.time() + END_BY  # the transport's clock (POLICY.clock)
        self.counts = dict.fromkeys(("created", "failed", "unknown", "not_sent"), 0)  # messages, once done
        self.left = 0  # batches left for the next run: not sent, or not confirmed, in time
        self.failure: BaseException | None = None
        self.lock = threading.Condition()
        self.due: list[tuple[float, int, str]] = []  # (when, batch, "confirm" or "resolve")
        self.in_flight = 0
        self.lease_checked = -LEASE_CHECK_EVERY
        self.lease_lost = False
        self.looks: dict[int, int] = {}
        self.states: dict[int, dict[str, Any]] = {}  # what this job last read or wrote of a batch it works on
        self.workers = WORKERS if per_minute else UNPACED_WORKERS
        self.tries: dict[int, int] = {}  # sends of a batch in this job

    # -- the job's loop: sends in order, confirmations and lookups as they fall due --

    def run(self) -> dict[str, int]:
        with ThreadPoolExecutor(4) as readers, ThreadPoolExecutor(WORKERS) as pool:
            states = readers.map(lambda n: (n, store.load_json(store.state_key(self.import_id, n))), self.batches)
            for batch, state in states:
                self.work_due(pool)
                kind = (state or {}).get("state")
                if self.failure:
                    break
                if kind == "new":
                    if self.elapsed() > SEND_UNTIL or not self.lease_is_ours():
                        self.left += 1
                        continue
                    self.start(pool, functools.partial(self.send, again=bool(state.get("sent_again"))), batch)
                elif kind == "accepted":
                    self.schedule(0.0, batch, "confirm", state)
                elif kind == "sending":
                    self.schedule(0.0, batch, "resolve", state)
                elif kind == "done":
                    self.tally(state)
                else:
                    raise AssertionError(f"batch {batch} has no state this step knows: {str(state)[:100]}")
            while True:
                with self.lock:
                    if not self.in_flight and (not self.due or self.failure or self.elapsed() > END_BY - 5):
                        self.left += len(self.due)  # what is still due waits for the next run, in its state
                        break
                if not self.failure:
                    self.work_due(pool, wait=True)
                else:
                    with self.lock:
                        self.lock.wait(1.0)
        if self.failure:
            raise self.failure
        self.pacer.hold()
        return {**self.counts, "batches_left": self.left}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def schedule(self, delay: float, batch: int, action: str, state: dict[str, Any]) -> None:
        with self.lock:
            self.states[batch] = state
            heapq.heappush(self.due, (time.monotonic() + delay, batch, action))
            self.lock.notify_all()

    def work_due(self, pool: ThreadPoolExecutor, wait: bool = False) -> None:
        """Start what is due now; with `wait`, first wait until something is due or a request ends."""
        with self.lock:
            if wait:
                timeout = max(0.0, self.due[0][0] - time.monotonic()) if self.due else 1.0
                self.lock.wait(min(timeout, 1.0))
            ready = []
            while self.due and self.due[0][0] <= time.monotonic():
                ready.append(heapq.heappop(self.due))
        for _, batch, action in ready:
            if action != "send":
                self.start(pool, self.confirm if action == "confirm" else self.resolve, batch)
            elif self.elapsed() < SEND_UNTIL and self.lease_is_ours():
                self.start(pool, functools.partial(self.send, again=bool(self.states[batch].get("sent_again"))), batch)
            else:
                with self.lock:
                    self.left += 1

    def start(self, pool: ThreadPoolExecutor, work: Callable[[int], None], batch: int) -> None:
        with self.lock:
            while self.in_flight >= self.workers:
                self.lock.wait()
            self.in_flight += 1

        def done(future: Any) -> None:
            with self.lock:
                self.in_flight -= 1
                self.failure = self.failure or future.exception()
                self.lock.notify_all()

        pool.submit(work, batch).add_done_callback(done)

    def lease_is_ours(self) -> bool:
        """Whether this run still holds the import: checked every LEASE_CHECK_EVERY seconds before a send."""
        if not self.lease_lost and self.elapsed() - self.lease_checked >= LEASE_CHECK_EVERY:
            lease = store.load_json(f"{store.import_folder(self.import_id)}/lease.json") or {}
            self.lease_checked = self.elapsed()
            if lease.get("run") != self.run_id:
                self.lease_lost = True
                print(f"Another flow run ({str(lease.get('run'))[:40]}) took this import: this job sends no more.")
        return not self.lease_lost

    def tally(self, state: dict[str, Any]) -> None:
        with self.lock:
            if "outcome" in state:
                self.counts[state["outcome"]] += len(state["messages"])
            for _, outcome, _ in state.get("outcomes", []):
                self.counts[outcome] += 1

    # -- the three things done to a batch --

    def send(self, batch: int, again: bool = False) -> None:
        content = json.loads(
            _must(store.load(store.batch_key(self.import_id, batch)), store.batch_key(self.import_id, batch))
        )
        positions, messages = content["positions"], store.tagged(content["positions"], content["messages"])
        refs = [_ref(p, m) for p, m in zip(positions, messages, strict=True)]
        count = f"{len(messages)} message{'' if len(messages) == 1 else 's'}"
        where = f"Batch {batch + 1} ({count} from messages[{positions[0]}])"
        key = store.state_key(self.import_id, batch)
        sending = {"state": "sending", "run": self.run_id, "messages": refs, **({"sent_again": True} if again else {})}
        # `sending` is written as the turn comes, not before the wait: a job stopped while it waits sent nothing
        self.pacer.wait_turn(lambda: store.save_json(key, {**sending, "at": time.time()}))
        try:
            answer = bulk.send_bulk(self.auth, messages, deadline=self.deadline)
        except NOTHING_SENT as error:
            tries = self.tries[batch] = self.tries.get(batch, 0) + 1
            transient = isinstance(error, (bulk.KustomerRateLimitError, bulk.KustomerConnectionError))
            if transient and tries <= SEND_AGAIN:  # nothing reached Kustomer: safe to send later
                new = {"state": "new", **({"sent_again": True} if again else {})}
                store.save_json(key, new)
                print(f"{where}: not sent ({_first(str(error))}); sent again in {SEND_AGAIN_AFTER * tries:.0f} s.")
                self.schedule(SEND_AGAIN_AFTER * tries, batch, "send", new)
                return
            why = str(error)
            if isinstance(error, bulk.KustomerRateLimitError):  # inside this flow, the lever is its input
                why = error.facts + RATE_LIMIT_ADVICE
            self.finish(key, batch, {"outcome": "not_sent", "why": why, "messages": refs}, f"{where}: not sent")
            return
        except bulk.KustomerAPIError as error:
            why = f"Kustomer refused the batch: {error}"
            self.finish(key, batch, {"outcome": "failed", "why": why, "messages": refs}, f"{where}: refused")
            return
        except Exception as error:  # sent, or maybe sent: never "not sent"
            status = getattr(error, "status", None)
            why = f"the bulk request got {status}" if status else _first(str(error))
            lost = {**sending, "why": why}
            store.save_json(key, lost)
            print(f"{where}: outcome unknown ({why}); its messages will be looked up, never sent again on a guess.")
            self.schedule(FIRST_LOOK_AFTER, batch, "resolve", lost)
            return
        data = answer.get("data") if isinstance(answer, dict) else None
        bulk_id = data.get("id") if isinstance(data, dict) else None
        if not (isinstance(bulk_id, str) and re.fullmatch(r"[0-9a-fA-F]{24}", bulk_id)):  # else it is not Kustomer's
            lost = {**sending, "why": "Kustomer accepted the request but gave no usable operation id"}
            store.save_json(key, lost)
            print(f"{where}: outcome unknown ({lost['why']}); its messages will be looked up, never sent on a guess.")
            self.schedule(FIRST_LOOK_AFTER, batch, "resolve", lost)
            return
        accepted = {**sending, "state": "accepted", "bulk_id": bulk_id}
        store.save_json(key, accepted)
        print(f"{where}: accepted as bulk operation {bulk_id}.")
        self.schedule(FIRST_LOOK_AFTER, batch, "confirm", accepted)

    def confirm(self, batch: int) -> None:
        key = store.state_key(self.import_id, batch)
        state = self.states[batch]
        refs, bulk_id = state["messages"], state["bulk_id"]
        self.pacer.wait_turn()
        try:
            report = waiter.read_outcomes(self.auth, bulk_id, len(refs), deadline=self.deadline)
        except Exception as error:
            looks = self.looks[batch] = self.looks.get(batch, 0) + 1
            if isinstance(error, waiter.KustomerAPIError) and error.status == 404:  # Kustomer forgot it
                forgotten = {**state, "state": "sending", "why": f"bulk operation {bulk_id} cannot be read (404)"}
                store.save_json(key, forgotten)
                self.schedule(0.0, batch, "resolve", forgotten)
            elif looks >= 5:
                print(
                    f"Batch {batch + 1}: bulk operation {bulk_id} cannot be read ({_first(str(error))}); "
                    "the next run reads it again."
                )
                with self.lock:
                    self.left += 1
            else:
                self.schedule(min(LOOK_AGAIN_MAX, 2.0**looks), batch, "confirm", state)
            return
        if report is None:
            looks = self.looks[batch] = self.looks.get(batch, 0) + 1
            self.schedule(min(LOOK_AGAIN_MAX, 2.0**looks), batch, "confirm", state)
            return
        listed = report.get("items") if isinstance(report, dict) else None
        items = {  # only text refs can be ours: anything else in Kustomer's answer is no match
            i["_clientRef"]: i for i in listed or [] if isinstance(i, dict) and isinstance(i.get("_clientRef"), str)
        }
        outcomes = []
        for position, ref, external, _ in refs:
            item = items.get(ref or f"position-{position}")
            rest = _named(ref, external)
            if item is None:
                rest.update(why=f"not in Kustomer's results for bulk operation {bulk_id}", check=_check(external))
                outcomes.append([position, "unknown", rest])
            elif item.get("status") == "created":
                outcomes.append([position, "created", {**rest, "id": item.get("id")}])
            else:
                why = str(item.get("error") or "Kustomer reported an error")
                outcomes.append([position, "failed", {**rest, "why": why}])
        self.finish(key, batch, {"bulk_id": bulk_id, "outcomes": outcomes}, f"Batch {batch + 1}: confirmed")

    def resolve(self, batch: int) -> None:
        """A batch that may have gone out: each message with an externalId is looked up. Found means
        created; not found by a lookup made SETTLED seconds after the request may have gone out means
        not created. When none of the batch exists by then (and every message could be looked up), it
        never reached Kustomer, or Kustomer dropped it: it is sent again, once."""
        key = store.state_key(self.import_id, batch)
        state = self.states[batch]
        refs = state["messages"]
        found: dict[str, str] = state.get("found", {})
        settled = time.time() - state.get("at", 0) >= store.SETTLED
        absent: set[int] = set()
        for position, _, external, conversation in refs:
            if external and str(position) not in found and time.time() < self.deadline - 5:
                self.pacer.wait_turn()
                try:
                    message_id = lookup.message_id_by_external_id(self.auth, external, conversation, self.deadline)
                except Exception as error:
                    print(f"Batch {batch + 1}: looking up messages[{position}] failed ({_first(str(error))}).")
                    break
                if message_id:
                    found[str(position)] = message_id
                elif settled:
                    absent.add(position)
        looked = {p for p, _, external, _ in refs if external}
        if looked != set(map(int, found)) | absent:  # some not looked up, or too early to tell: next time
            store.save_json(key, {**state, "found": found})
            print(
                f"Batch {batch + 1}: {len(found)} of its messages found by externalId, {len(looked) - len(found)} "
                "not (yet): they stay unknown, never sent again on a guess; the next run looks them up again."
            )
            return
        if absent == looked == {p for p, *_ in refs} and not state.get("sent_again"):
            store.save_json(key, {"state": "new", "sent_again": True})
            print(
                f"Batch {batch + 1}: none of its messages exists {store.SETTLED:.0f} s after its request: sent again."
            )
            if self.elapsed() < SEND_UNTIL and self.lease_is_ours():
                self.send(batch, again=True)
            return
        why = state.get("why") or "the run that sent it stopped before its answer was noted"
        outcomes = []
        for position, ref, external, _ in refs:
            rest = _named(ref, external)
            if str(position) in found:
                outcomes.append([position, "created", {**rest, "id": found[str(position)]}])
            elif position in absent:
                rest["why"] = (
                    f"not created: not found by its externalId {store.SETTLED / 60:.0f} minutes after its request"
                )
                outcomes.append([position, "failed", rest])
            else:
                rest.update(why=f"outcome unknown: {why}", check=_check(None, batch))
                outcomes.append([position, "unknown", rest])
        self.finish(key, batch, {"outcomes": outcomes}, f"Batch {batch + 1}: resolved by lookups")

    def finish(self, key: str, batch: int, done: dict[str, Any], said: str) -> None:
        state = {"state": "done", **done}
        store.save_json(key, state)
        self.tally(state)
        counts: dict[str, int] = {}
        if "outcome" in done:
            counts[done["outcome"]] = len(done["messages"])
        for _, outcome, _ in done.get("outcomes", []):
            counts[outcome] = counts.get(outcome, 0) + 1
        print(f"{said}: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items()) + ".")


def _ref(position: int, message: dict[str, Any]) -> list[Any]:
    """What a state keeps of a message: [position, _clientRef (null: the default), externalId, conversation]."""
    ref = message["_clientRef"]
    external, conversation = message.get("externalId"), message.get("conversation")
    return [
        position,
        None if ref == f"position-{position}" else ref,
        external if isinstance(external, str) and external else None,
        conversation if isinstance(conversation, str) else None,
    ]


def _named(ref: str | None, external: str | None) -> dict[str, Any]:
    named: dict[str, Any] = {}
    if ref is not None:
        named["_clientRef"] = ref
    if external:
        named["externalId"] = external
    return named


def _check(external: str | None, batch: int | None = None) -> str:
    """What to do about a message whose outcome is unknown."""
    if external:
        return "run the import again: it looks the message up by its externalId and never sends it twice"
    where = f" (batch {batch + 1} of the import)" if batch is not None else ""
    return f"check its conversation's timeline{where} before sending it again: it has no externalId to look up"


def _first(text: str) -> str:
    return text.split(". ", 1)[0][:300]


def _must(data: bytes | None, key: str) -> bytes:
    if data is None:
        raise store.ImportStorageError(f"The workspace storage has lost {key}; the import cannot send that batch.")
    return data
