"""Step 1 of import_messages: split the messages into batches for bulk_create_messages.

Each message gets a `_clientRef` from its position in the input (`position-<i>`) when it has none,
so Kustomer's per-item results can be matched back to the input, and every batch satisfies
Kustomer's rule of a `_clientRef` on all items. Refs must be unique across the whole import:
a repeated one fails this step, before anything is sent.
"""

from typing import Any


def main(messages: list, batch_size: int = 100) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    if not isinstance(messages, list):
        raise ValueError(f"messages must be a list of message objects, got {type(messages).__name__}")
    if not 1 <= batch_size <= 100:
        raise ValueError(f"batch_size must be 1 to 100 (Kustomer's bulk limit), got {batch_size}")
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
    return [
        {"first": start, "last": start + len(chunk) - 1, "messages": chunk}
        for start in range(0, len(tagged), batch_size)
        for chunk in [tagged[start : start + batch_size]]
    ]
