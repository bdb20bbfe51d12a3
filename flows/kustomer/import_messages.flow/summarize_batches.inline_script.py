"""Step 3 of import_messages: one entry per batch, with its bulk operation or its error.

The loop runs with skip_failures, so one failed batch does not hide the others: this step lists
them all and then fails the flow if any batch failed, naming the positions to send again.
"""

from typing import Any


def main(batches: list[dict], bulk_operations: list[dict]) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    summary = []
    failed = []
    for number, (batch, outcome) in enumerate(zip(batches, bulk_operations, strict=True)):
        entry: dict[str, Any] = {
            "batch": number,
            "first": batch["first"],
            "last": batch["last"],
            "count": len(batch["messages"]),
        }
        data = outcome.get("data") if isinstance(outcome, dict) else None
        if isinstance(data, dict) and data.get("type") == "bulk":
            entry["bulk_id"] = data.get("id")
            entry["status"] = (data.get("attributes") or {}).get("status")
        else:
            error = outcome.get("error", outcome) if isinstance(outcome, dict) else outcome
            entry["error"] = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            failed.append(entry)
        summary.append(entry)
    if failed:
        sent = [f"{e['first']}-{e['last']}: bulk {e['bulk_id']}" for e in summary if "bulk_id" in e]
        lines = [f"- positions {e['first']}-{e['last']}: {e['error']}" for e in failed]
        raise RuntimeError(
            f"{len(failed)} of {len(summary)} batches failed:\n"
            + "\n".join(lines)
            + "\nThe other batches were sent ("
            + (", ".join(sent) or "none")
            + "). "
            "Send again only the failed positions, after checking the errors above."
        )
    return summary
