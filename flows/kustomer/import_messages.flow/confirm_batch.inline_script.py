# skip_result_postprocessing
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx==0.28.1", "wmill==1.850.0"]  # pinned as in uv.lock
# ///
"""Step 3 of import_messages, once per batch, after every batch was sent: what became of each message.

It reads what the send noted (`sent-<n>.json`), waits for an accepted bulk operation with
wait_for_bulk_results' own `main` (imported from the deployed script: one read of a finished
operation confirms it), and writes one line per message to `outcome-<n>.jsonl`: its position,
`_clientRef`, `externalId` when given, and `created` (with Kustomer's id), `failed`, `not_sent` or
`unknown`, with why and what to check. The result is the batch's counts, small whatever its size.
The loop's `sleep` after it (`hold`) keeps the reads within `max_requests_per_minute`, as the sends.
"""

import json
import time
from typing import Any

import wmill
from f.kustomer import wait_for_bulk_results as kustomer

OUTCOMES = ("created", "failed", "unknown", "not_sent")


def main(
    auth: dict,  # type: ignore[type-arg]  # the kustomer resource
    run: str,
    batch: int,
    total: int = 0,
    max_requests_per_minute: int = 0,
    parallelism: int = 4,
) -> dict[str, Any]:
    interval = 60 / max_requests_per_minute if max_requests_per_minute else 0.0
    if interval and batch < parallelism:
        time.sleep(interval * batch)
    started = time.monotonic()
    sent = _sent(run, batch)
    entries = [_entry(position, ref or f"position-{position}", ext) for position, ref, ext in sent["messages"]]
    outcome = sent["outcome"]
    if outcome == "accepted":
        bulk_id = sent["bulk_id"]
        try:
            confirmed = kustomer.main(
                auth,
                bulk_id,
                expected_items=len(entries),
                submitted_at=_usable_time(sent.get("submitted_at")),
                min_interval_seconds=interval,
            )
        except Exception as error:  # the operation exists; only its outcome is not known
            why = f"sent as bulk operation {bulk_id}, but its outcome could not be read: {_first(str(error))}"
            for entry in entries:
                entry.update(outcome="unknown", why=why, check=f"run wait_for_bulk_results with bulk_id {bulk_id}")
        else:
            listed = confirmed.get("items") if isinstance(confirmed, dict) else None
            items = {  # only text refs can be ours: anything else in Kustomer's answer is no match
                i["_clientRef"]: i for i in listed or [] if isinstance(i, dict) and isinstance(i.get("_clientRef"), str)
            }
            for entry in entries:
                item = items.get(entry["_clientRef"]) if isinstance(entry["_clientRef"], str) else None
                if item is None:
                    why = f"not in Kustomer's results for bulk operation {bulk_id}"
                    entry.update(outcome="unknown", why=why, check=_check(entry, bulk_id))
                elif item.get("status") == "created":
                    entry.update(outcome="created", id=item.get("id"))
                else:
                    entry.update(outcome="failed", why=str(item.get("error") or "Kustomer reported an error"))
    else:
        for entry in entries:
            entry.update(outcome=outcome, why=sent.get("why", ""))
            if outcome == "unknown":
                entry["check"] = _check(entry, None)
    # One compact line per message (the report writes it out with names): [position, outcome, the rest]
    lines = b"".join(_line(e) for e in entries)
    wmill.write_s3_file({"s3": f"{run}/outcome-{batch}.jsonl"}, lines)
    counts = {kind: sum(e["outcome"] == kind for e in entries) for kind in OUTCOMES}
    print(f"Batch {batch + 1} of {total}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) + ".")
    hold = round(interval * parallelism - (time.monotonic() - started), 3) if outcome == "accepted" else 0.0
    return {"batch": batch, **counts, "hold": max(0.0, hold)}


def _usable_time(created_at: Any) -> str:
    """Kustomer's createdAt when the waiter can read it; else "" (the waiter then waits its usual 5 s)."""
    return created_at if isinstance(created_at, str) and kustomer._timestamp(created_at) is not None else ""


def _line(entry: dict[str, Any]) -> bytes:
    rest = {k: v for k, v in entry.items() if k not in ("position", "outcome")}
    return json.dumps([entry["position"], entry["outcome"], rest], separators=(",", ":")).encode() + b"\n"


def _sent(run: str, batch: int) -> dict[str, Any]:
    """What the send noted; if it noted nothing (its job was lost), every message of the batch is unknown."""
    try:
        sent: dict[str, Any] = json.loads(wmill.load_s3_file({"s3": f"{run}/sent-{batch}.json"}))
        return sent
    except Exception:
        content = json.loads(wmill.load_s3_file({"s3": f"{run}/batch-{batch}.json"}))
        messages = [
            [p, m.get("_clientRef"), m.get("externalId")]
            for p, m in zip(content["positions"], tagged(content), strict=True)
        ]
        why = "outcome unknown: the send step of this batch did not finish, so it may or may not have gone out"
        return {"outcome": "unknown", "why": why, "messages": messages}


def _entry(position: int, ref: Any, external: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"position": position, "_clientRef": ref}
    if isinstance(external, str) and external:
        entry["externalId"] = external
    return entry


def _check(entry: dict[str, Any], bulk_id: str | None) -> str:
    """What to look up before sending this message again: its own externalId when it has one."""
    if "externalId" in entry:
        return "look it up by its externalId (GET /v1/messages/externalid=<externalId>) before sending it again"
    where = f" (bulk operation {bulk_id})" if bulk_id else ""
    return f"check its conversation's timeline{where} before sending it again: it has no externalId to look up"


def _first(text: str) -> str:
    return text.split(". ", 1)[0][:300]


def tagged(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch's messages as sent: each with its `_clientRef`, `position-<i>` when it was given none."""
    return [
        m if "_clientRef" in m else {**m, "_clientRef": f"position-{p}"}
        for p, m in zip(batch["positions"], batch["messages"], strict=True)
    ]
