"""Step 1 of import_messages: split the messages into batches for bulk_create_messages.

Each message gets a `_clientRef` from its position in the input (`position-<i>`) when it has none,
so Kustomer's per-item results can be matched back to the input, and every batch satisfies
Kustomer's rule of a `_clientRef` on all items. Refs must be unique across the whole import:
a repeated one fails this step, before anything is sent.

With `max_requests_per_minute`, each batch also gets the pauses that keep the loop under that rate
under Windmill's rule that a step's `sleep` runs *after* the step: `delay` (on the identity step
before the bulk request) staggers the first `parallelism` batches one interval apart, and `hold`
(after the bulk request) keeps the iteration's slot for `parallelism` intervals, so the batch that
takes the slot next goes out one interval after the one before. The import then never takes more of
the org's rate limit than it was given; the rest stays for agents and other apps.
"""

from typing import Any


def main(
    messages: list[dict],  # type: ignore[type-arg]  # Windmill reads a bare `dict` as an object
    batch_size: int = 100,
    max_requests_per_minute: int = 0,
    parallelism: int = 4,
) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise ValueError(f"messages must be a list of message objects, got {type(messages).__name__}")
    if not 1 <= batch_size <= 100:
        raise ValueError(f"batch_size must be 1 to 100 (Kustomer's bulk limit), got {batch_size}")
    if max_requests_per_minute < 0 or parallelism < 1:
        raise ValueError("max_requests_per_minute must be 0 (no pacing) or more, and parallelism 1 or more")
    tagged = []
    first_seen: dict[str, int] = {}
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{position}] must be a message object, got {type(message).__name__}")
        ref = message.get("_clientRef", f"position-{position}")
        if isinstance(ref, str) and ref in first_seen:
            raise ValueError(
                f"messages[{position}]._clientRef {ref!r} repeats messages[{first_seen[ref]}]; "
                "each must be unique across the import. Nothing was sent."
            )
        if isinstance(ref, str):
            first_seen[ref] = position
        tagged.append({**message, "_clientRef": ref})
    interval = 60 / max_requests_per_minute if max_requests_per_minute else 0.0
    return [
        {
            "batch": number,
            "first": start,
            "last": start + len(chunk) - 1,
            "delay": round(interval * number, 3) if number < parallelism else 0.0,
            "hold": round(interval * parallelism, 3),
            "messages": chunk,
        }
        for number, start in enumerate(range(0, len(tagged), batch_size))
        for chunk in [tagged[start : start + batch_size]]
    ]
