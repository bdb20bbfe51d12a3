"""Step 5 of import_messages: what became of every message of the input, by its position.

Each position ends in one of four outcomes:
- created: Kustomer created the message;
- failed: Kustomer refused it (its per-item error), or refused its whole batch (a 4xx): nothing of it
  was created, so it is safe to send again once the reason is dealt with;
- not sent: its batch was never sent (bad input, no connection, rate limited past the wait): safe to
  send again;
- unknown: its batch went out and the answer was lost, or the operation could not be read back: it
  may or may not exist, so it is listed apart with what to check, never in `retry`.

The result is the report. When anything was not created, the step fails (so the flow shows red) and
the report travels in the error's attributes, which Windmill shows as the error's `extra`.
"""

import re
from typing import Any

NOTHING_SENT = {"KustomerInputError", "KustomerConnectionError", "KustomerRateLimitError"}
REFUSED = {"KustomerAPIError"}
SHOWN = 20  # positions listed in the error message; the report in `extra` has them all


class ImportIncompleteError(Exception):
    """Some messages were not created; the attributes hold the whole report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.counts = report["counts"]
        self.not_created = report["not_created"]
        self.retry = report["retry"]
        self.unknown = report["unknown"]
        self.batches = report["batches"]


def main(
    batches: list[dict],  # type: ignore[type-arg]
    sent: list[dict],  # type: ignore[type-arg]
    plan: list[dict],  # type: ignore[type-arg]
    confirmed: list[dict],  # type: ignore[type-arg]
) -> dict[str, Any]:
    confirmations = {entry["batch"]: outcome for entry, outcome in zip(plan, confirmed, strict=True)}
    outcomes: list[dict[str, Any]] = []
    summary = []
    for batch, answer in zip(batches, sent, strict=True):
        batch_outcomes = _batch_outcomes(batch, answer, confirmations.get(batch["batch"]))
        outcomes += batch_outcomes
        entry = {"batch": batch["batch"], "first": batch["first"], "last": batch["last"]}
        data = answer.get("data") if isinstance(answer, dict) else None
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            entry["bulk_id"] = data["id"]
        for kind in ("created", "failed", "unknown", "not sent"):
            entry[kind.replace(" ", "_")] = sum(o["outcome"] == kind for o in batch_outcomes)
        summary.append(entry)
    report = _report(batches, outcomes, summary)
    if report["counts"]["created"] < report["counts"]["messages"]:
        raise ImportIncompleteError(_explain(report), report)
    return report


def _batch_outcomes(batch: dict[str, Any], answer: Any, confirmation: Any) -> list[dict[str, Any]]:
    messages, first = batch["messages"], batch["first"]

    def each(outcome: str, why: str, check: str = "") -> list[dict[str, Any]]:
        return [_outcome(first + i, m, outcome, why, check) for i, m in enumerate(messages)]

    error = _error_of(answer)
    if error is not None:  # the bulk request failed
        why = _in_input_positions(str(error.get("message", error)), first)
        name = error.get("name")
        if name in NOTHING_SENT:
            return each("not sent", why)
        if name in REFUSED:
            return each("failed", f"Kustomer refused the batch: {why}")
        extra = error.get("extra")
        status = extra.get("status") if isinstance(extra, dict) else None
        why = (
            f"outcome unknown: the bulk request got {status}" if status else f"outcome unknown: {_first_sentence(why)}"
        )
        return each("unknown", why, _check(messages))
    bulk_id = answer["data"]["id"]
    problem = _error_of(confirmation) if confirmation is not None else {"message": "it was not confirmed"}
    if problem is not None or not isinstance(confirmation, dict):
        said = (problem or {}).get("message", problem)
        why = f"sent as bulk operation {bulk_id}, but its outcome could not be read: {said}"
        return each("unknown", why, f"run wait_for_bulk_results with bulk_id {bulk_id} later")
    items = {i.get("_clientRef"): i for i in confirmation.get("items") or [] if isinstance(i, dict)}
    outcomes = []
    for i, message in enumerate(messages):
        item = items.get(message.get("_clientRef"))
        if item is None:
            why = f"not in Kustomer's results for bulk operation {bulk_id}"
            outcomes.append(_outcome(first + i, message, "unknown", why, f"check the timeline; bulk_id {bulk_id}"))
        elif item.get("status") == "created":
            outcomes.append(_outcome(first + i, message, "created", "", "", item.get("id")))
        else:
            outcomes.append(
                _outcome(first + i, message, "failed", str(item.get("error") or "Kustomer reported an error"))
            )
    return outcomes


def _outcome(
    position: int, message: dict[str, Any], outcome: str, why: str, check: str = "", message_id: Any = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"position": position, "_clientRef": message.get("_clientRef"), "outcome": outcome}
    if message_id:
        entry["id"] = message_id
    if why:
        entry["why"] = why
    if check:
        entry["check"] = check
    entry["message"] = message
    return entry


def _report(
    batches: list[dict[str, Any]], outcomes: list[dict[str, Any]], summary: list[dict[str, Any]]
) -> dict[str, Any]:
    def public(o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if k != "message"}

    counts = {"messages": len(outcomes)}
    for kind in ("created", "failed", "unknown", "not sent"):
        counts[kind.replace(" ", "_")] = sum(o["outcome"] == kind for o in outcomes)
    return {
        "counts": counts,
        "not_created": [public(o) for o in outcomes if o["outcome"] != "created"],
        "retry": [o["message"] for o in outcomes if o["outcome"] in ("failed", "not sent")],
        "unknown": [public(o) for o in outcomes if o["outcome"] == "unknown"],
        "batches": summary,
    }


def _explain(report: dict[str, Any]) -> str:
    counts = report["counts"]
    lines = [
        f"{counts['messages']} messages: {counts['created']} created, {counts['failed']} failed, "
        f"{counts['unknown']} outcome unknown, {counts['not_sent']} not sent."
    ]
    runs = _runs(report["not_created"])
    for run in runs[:SHOWN]:
        first, last = run[0], run[-1]
        where = f"messages[{first['position']}] ({first['_clientRef']})"
        if len(run) > 1:
            where = f"messages[{first['position']}] to [{last['position']}] ({len(run)} messages)"
        lines.append(f"- {where}: {first['outcome']}: {first['why']}")
    if len(runs) > SHOWN:
        lines.append(f"- ... and {len(runs) - SHOWN} more: see not_created in this error's extra")
    if report["retry"]:
        lines.append(
            f"Safe to send again: the {len(report['retry'])} messages in this error's extra.retry (failed or not "
            "sent: none of them was created); run this flow with them as its messages once the reasons are fixed."
        )
    if report["unknown"]:
        lines.append(
            f"Check before sending again: the {len(report['unknown'])} messages whose outcome is unknown "
            "(extra.unknown says what to look up for each); they are not in retry, to avoid duplicates."
        )
    return "\n".join(lines)


def _runs(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive positions with the same outcome and reason, together: a batch's 100 are one line."""
    runs: list[list[dict[str, Any]]] = []
    for entry in entries:
        last = runs[-1][-1] if runs else None
        same = (
            last
            and last["position"] + 1 == entry["position"]
            and (last["outcome"], last["why"])
            == (
                entry["outcome"],
                entry["why"],
            )
        )
        if same:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _error_of(outcome: Any) -> dict[str, Any] | None:
    if isinstance(outcome, dict) and isinstance(outcome.get("error"), dict):
        error: dict[str, Any] = outcome["error"]
        return error
    if isinstance(outcome, dict):
        return None
    return {"message": f"no result ({type(outcome).__name__})"}


def _in_input_positions(text: str, first: int) -> str:
    """The bulk script names places in its batch (body[3].channel); say them in the flow's input."""
    return re.sub(r"\bbody\[(\d+)\]", lambda m: f"messages[{first + int(m.group(1))}]", text)


def _first_sentence(text: str) -> str:
    return text.split(". ", 1)[0][:300]


def _check(messages: list[dict[str, Any]]) -> str:
    external = [m["externalId"] for m in messages if isinstance(m.get("externalId"), str)]
    if external:
        return "look each up by externalId (GET /v1/messages/externalid=<externalId>) before sending it again"
    return "check the conversation timelines for these messages before sending them again"
