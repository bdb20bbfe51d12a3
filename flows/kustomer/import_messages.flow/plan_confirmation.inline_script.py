"""Step 3 of import_messages: which bulk operations to confirm, once every batch has been sent.

Confirming after the sends, rather than right after each, lets most operations finish first: one
read of each one's batches then confirms it. Each entry tells wait_for_bulk_results how many
messages to expect (so no status poll is needed), when the operation was submitted (so its first
read waits until it has likely finished), and the pacing: `interval` between its reads and `hold`
after its last one, so that the confirmations also stay within `max_requests_per_minute`.
"""

from typing import Any


def main(
    batches: list[dict],  # type: ignore[type-arg]
    sent: list[dict],  # type: ignore[type-arg]
    max_requests_per_minute: int = 0,
) -> list[dict[str, Any]]:
    interval = round(60 / max_requests_per_minute, 3) if max_requests_per_minute else 0.0
    plan = []
    for batch, outcome in zip(batches, sent, strict=True):
        data = outcome.get("data") if isinstance(outcome, dict) else None
        if not (isinstance(data, dict) and data.get("type") == "bulk" and isinstance(data.get("id"), str)):
            continue  # this batch was not accepted: the report says why
        attributes = data.get("attributes")
        created_at = attributes.get("createdAt") if isinstance(attributes, dict) else None
        plan.append(
            {
                "batch": batch["batch"],
                "bulk_id": data["id"],
                "expected_items": len(batch["messages"]),
                "submitted_at": created_at if isinstance(created_at, str) else "",
                "interval": interval,
                "hold": interval,
            }
        )
    return plan
