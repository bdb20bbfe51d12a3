# skip_result_postprocessing
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx==0.28.1", "wmill==1.850.0"]  # pinned as in uv.lock
# ///
"""Step 2 of import_messages, once per batch: send it with bulk_create_messages, and note what happened.

The batch is read from the workspace storage (prepare wrote it), sent by the deployed script's own
`main` (imported, so retries, bounds and key hiding are exactly the script's), and what became of the
request is written beside it (`sent-<n>.json`, with each message's position, `_clientRef` and
`externalId`), for the confirmation. The result is a few numbers, whatever the batch holds: Windmill
stores it for every iteration. A failed request never fails the step; it is an outcome:

- not_sent: nothing reached Kustomer (bad input, no connection, rate limited past the wait);
- failed: Kustomer refused the whole batch (a 4xx): nothing of it was created;
- unknown: the request went out and its answer was lost: the messages may or may not exist;
- accepted: Kustomer queued it as a bulk operation, to be confirmed.

The first `parallelism` batches are staggered one interval apart here; after each batch the loop's
`sleep` (this step's `hold`: one round of `parallelism` intervals, less the time this job took) keeps
the slot, so the sends stay under `max_requests_per_minute`.
"""

import json
import re
import time
from typing import Any

import wmill
from f.kustomer import bulk_create_messages as kustomer

NOTHING_SENT = (kustomer.KustomerInputError, kustomer.KustomerConnectionError, kustomer.KustomerRateLimitError)


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
    content = json.loads(wmill.load_s3_file({"s3": f"{run}/batch-{batch}.json"}))
    positions, messages = content["positions"], tagged(content)
    sent: dict[str, Any] = {"batch": batch}
    try:
        answer = kustomer.main(auth, messages)
    except NOTHING_SENT as error:
        why = str(error)
        if isinstance(error, kustomer.KustomerRateLimitError):  # inside this flow, the lever is its input
            lever = "in this import, give max_requests_per_minute a share of the org's budget"
            why = why.replace("in a flow, lower the for-loop's parallelism or spread the schedule", lever)
        sent.update(outcome="not_sent", why=why, error=type(error).__name__)
    except kustomer.KustomerAPIError as error:
        sent.update(outcome="failed", why=f"Kustomer refused the batch: {error}", status=error.status)
    except Exception as error:  # sent, or maybe sent: never "not sent"
        status = getattr(error, "status", None)
        why = f"outcome unknown: the bulk request got {status}" if status else f"outcome unknown: {_first(str(error))}"
        sent.update(outcome="unknown", why=why, error=type(error).__name__)
    else:
        data = answer.get("data") if isinstance(answer, dict) else None
        bulk_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(bulk_id, str) and re.fullmatch(r"[0-9a-fA-F]{24}", bulk_id):  # else it is not Kustomer's
            attributes = data.get("attributes") if isinstance(data, dict) else None
            created_at = attributes.get("createdAt") if isinstance(attributes, dict) else None
            usable = isinstance(created_at, str) and kustomer._date_time_problem(created_at) is None
            sent.update(outcome="accepted", bulk_id=bulk_id, submitted_at=created_at if usable else "")
        else:
            sent.update(
                outcome="unknown", why="outcome unknown: Kustomer accepted the request but gave no usable operation id"
            )
    sent["messages"] = [  # [position, _clientRef (null: the default), externalId]
        [
            position,
            None if message["_clientRef"] == f"position-{position}" else message["_clientRef"],
            message.get("externalId") if isinstance(message.get("externalId"), str) else None,
        ]
        for position, message in zip(positions, messages, strict=True)
    ]
    wmill.write_s3_file({"s3": f"{run}/sent-{batch}.json"}, json.dumps(sent, separators=(",", ":")).encode())
    what = f"accepted as bulk operation {sent['bulk_id']}" if sent["outcome"] == "accepted" else sent["outcome"]
    print(f"Batch {batch + 1} of {total} ({len(messages)} messages from messages[{positions[0]}]): {what}.")
    # The slot's next batch goes out one round (parallelism x interval) after this one: less what this job took.
    hold = max(0.0, round(interval * parallelism - (time.monotonic() - started), 3))
    return {"batch": batch, "outcome": sent["outcome"], "count": len(messages), "hold": hold}


def _first(text: str) -> str:
    return text.split(". ", 1)[0][:300]


def tagged(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch's messages as sent: each with its `_clientRef`, `position-<i>` when it was given none."""
    return [
        m if "_clientRef" in m else {**m, "_clientRef": f"position-{p}"}
        for p, m in zip(batch["positions"], batch["messages"], strict=True)
    ]
