# skip_result_postprocessing
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx==0.28.1", "wmill==1.850.0"]  # pinned as in uv.lock
# ///
"""Step 4 of import_messages: what became of every message of the input, by its position.

It reads each batch's outcome lines and writes three files to the workspace storage, streamed, so the
report fits Windmill's result limit at any size:

- `report_file`: JSON Lines, one line per input position (its `_clientRef`, `externalId` when given,
  `outcome`, Kustomer's message id when created, why and what to check otherwise);
- `retry_file`: JSON Lines of every message safe to send again (`failed`, `not_sent`: none of them was
  created), each with its `_clientRef`: give it back as `messages_file` to resume;
- `unknown_file`, when any: the messages that may or may not exist, never in `retry_file`.

The result holds `counts`, the first 100 positions not created, and those files; an inline import also
gets `retry` inline when it is small. When anything was not created the step fails (the flow shows
red) and the report travels in the error's `extra`.
"""

import json
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wmill

OUTCOMES = ("created", "failed", "unknown", "not_sent")
FIRST = 100  # positions not created, in the result; report_file has them all
SHOWN = 20  # runs of positions in the error's message
MAX_INLINE_RETRY = 500_000  # bytes of `retry` kept in the result of an inline import
READERS = 8  # outcome files read at once


class ImportIncompleteError(Exception):
    """Some messages were not created; the attributes hold the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.__dict__.update(report)


def main(prepared: dict) -> dict[str, Any]:  # type: ignore[type-arg]  # the result of prepare
    if prepared.get("dry_run"):
        return {"dry_run": prepared["dry_run"], "counts": prepared["counts"], "invalid_file": prepared["invalid_file"]}
    started = time.monotonic()
    run, batches = prepared["run"], prepared["batches"]
    counts = dict.fromkeys(OUTCOMES, 0)
    not_created: list[dict[str, Any]] = []
    runs: list[list[dict[str, Any]]] = []
    retry_inline: list[Any] | None = [] if prepared.get("inline") else None
    retry_bytes = 0
    with (
        tempfile.NamedTemporaryFile() as report_file,
        tempfile.NamedTemporaryFile() as retry_file,
        tempfile.NamedTemporaryFile() as unknown_file,
    ):
        for entries, messages in _outcomes(run, batches, prepared.get("invalid_file")):
            for entry in entries:
                counts[entry["outcome"]] += 1
                line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
                report_file.write(line)
                if entry["outcome"] == "created":
                    continue
                if len(not_created) < FIRST:
                    not_created.append(entry)
                _add_to_runs(runs, entry)
                if entry["outcome"] == "unknown":
                    unknown_file.write(line)
                else:
                    message = messages[entry["position"]]
                    retry_file.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
                    if retry_inline is not None and retry_bytes <= MAX_INLINE_RETRY:
                        retry_bytes += len(json.dumps(message))
                        retry_inline.append(message)
        total = sum(counts.values())
        report: dict[str, Any] = {"counts": {"messages": total, **counts}, "not_created": not_created}
        report["report_file"] = _write(f"{run}/report.jsonl", report_file)
        if counts["failed"] or counts["not_sent"]:
            report["retry_file"] = _write(f"{run}/retry.jsonl", retry_file)
            if retry_inline is not None and retry_bytes <= MAX_INLINE_RETRY:
                report["retry"] = retry_inline
        if counts["unknown"]:
            report["unknown_file"] = _write(f"{run}/unknown.jsonl", unknown_file)
    print(f"Wrote the report of {total} positions in {time.monotonic() - started:.1f} s.")
    if counts["created"] < total:
        raise ImportIncompleteError(_explain(report, runs), report)
    return report


def _outcomes(run: str, batches: list[int], invalid_file: Any) -> Iterator[tuple[list[dict[str, Any]], dict[int, Any]]]:
    """Each batch's outcome lines in order, with the messages of those not created (read from the batch
    only when it has any); then the invalid messages prepare left out, as not sent."""

    def read(batch: int) -> tuple[list[dict[str, Any]], dict[int, Any]]:
        try:
            text = wmill.load_s3_file({"s3": f"{run}/outcome-{batch}.jsonl"}).decode()
            entries = [_entry(*json.loads(line)) for line in text.splitlines() if line]
        except Exception:  # its confirmation did not finish: say so for each message
            content = json.loads(wmill.load_s3_file({"s3": f"{run}/batch-{batch}.json"}))
            why = "outcome unknown: the confirmation of this batch did not finish"
            check = "run the import's confirmation again, or check the conversation timelines"
            return [
                {"position": p, "_clientRef": m.get("_clientRef"), "outcome": "unknown", "why": why, "check": check}
                for p, m in zip(content["positions"], tagged(content), strict=True)
            ], {}
        messages: dict[int, Any] = {}
        if any(e["outcome"] in ("failed", "not_sent") for e in entries):
            content = json.loads(wmill.load_s3_file({"s3": f"{run}/batch-{batch}.json"}))
            messages = dict(zip(content["positions"], tagged(content), strict=True))
        return entries, messages

    with ThreadPoolExecutor(READERS) as pool:  # in order, a few ahead: bounded memory
        ahead = deque(pool.submit(read, b) for b in batches[:READERS])
        for i in range(len(batches)):
            if i + READERS < len(batches):
                ahead.append(pool.submit(read, batches[i + READERS]))
            yield ahead.popleft().result()
    if invalid_file:
        with wmill.load_s3_file_reader(invalid_file) as reader:
            for line in _lines(reader):
                invalid = json.loads(line)
                entry = {"position": invalid["position"], "outcome": "not_sent", "why": "; ".join(invalid["problems"])}
                ref = invalid["message"].get("_clientRef") if isinstance(invalid["message"], dict) else None
                entry["_clientRef"] = ref
                yield [entry], {invalid["position"]: invalid["message"]}


def _entry(position: int, outcome: str, rest: dict[str, Any]) -> dict[str, Any]:
    """A confirmation's compact line, with names: position, _clientRef, externalId?, outcome, the rest."""
    entry: dict[str, Any] = {"position": position, "_clientRef": rest.pop("_clientRef", None)}
    if "externalId" in rest:
        entry["externalId"] = rest.pop("externalId")
    return {**entry, "outcome": outcome, **rest}


def _lines(reader: Any) -> Iterator[bytes]:
    carry = b""
    while chunk := reader.read(1 << 16):
        *lines, carry = (carry + chunk).split(b"\n")
        yield from (line for line in lines if line.strip())
    if carry.strip():
        yield carry


def _add_to_runs(runs: list[list[dict[str, Any]]], entry: dict[str, Any]) -> None:
    """Consecutive positions with the same outcome and reason go together: a batch's 100 are one line."""
    last = runs[-1][-1] if runs else None
    if (
        last
        and last["position"] + 1 == entry["position"]
        and (last["outcome"], last.get("why")) == (entry["outcome"], entry.get("why"))
    ):
        runs[-1].append(entry)
    elif len(runs) <= SHOWN:
        runs.append([entry])


def _explain(report: dict[str, Any], runs: list[list[dict[str, Any]]]) -> str:
    counts = report["counts"]
    lines = [
        f"{counts['messages']} messages: {counts['created']} created, {counts['failed']} failed, "
        f"{counts['unknown']} outcome unknown, {counts['not_sent']} not sent."
    ]
    for run in runs[:SHOWN]:
        first, last = run[0], run[-1]
        where = f"messages[{first['position']}] ({first['_clientRef']})"
        if len(run) > 1:
            where = f"messages[{first['position']}] to [{last['position']}] ({len(run)} messages)"
        lines.append(f"- {where}: {first['outcome']}: {first.get('why', '')}")
    if len(runs) > SHOWN:
        lines.append("- ... and more: report_file in this error's extra lists every position")
    if "retry_file" in report:
        safe = counts["failed"] + counts["not_sent"]
        lines.append(
            f"Safe to send again: the {safe} messages in retry_file (failed or not sent: none of them was created); "
            "run this flow with it as messages_file once the reasons are fixed."
        )
    if counts["unknown"]:
        lines.append(
            f"Check before sending again: the {counts['unknown']} messages whose outcome is unknown, in unknown_file "
            "(each says what to look up); they are not in retry_file, to avoid duplicates."
        )
    return "\n".join(lines)


def _write(key: str, file: Any) -> dict[str, str]:
    """Upload a temporary file as a stream (wmill takes an open file, read in 50 KB pieces)."""
    file.flush()
    with open(file.name, "rb") as reader:
        written: dict[str, str] = dict(wmill.write_s3_file({"s3": key}, reader))
    return {k: v for k, v in written.items() if v is not None}


def tagged(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch's messages as sent: each with its `_clientRef`, `position-<i>` when it was given none."""
    return [
        m if "_clientRef" in m else {**m, "_clientRef": f"position-{p}"}
        for p, m in zip(batch["positions"], batch["messages"], strict=True)
    ]
