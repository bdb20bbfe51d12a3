# skip_result_postprocessing
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx==0.28.1", "wmill==1.850.0"]  # pinned as in uv.lock
# ///
"""Step 3 of import_messages: what became of every message of the input, by its position, from what
the workspace storage holds: every run's work, whichever run did it. It sends nothing to Kustomer,
so when it fails (the storage kept failing) running the import again rebuilds the same report.

It writes three files to the import's folder of the workspace storage, streamed, so the report fits
Windmill's result limit at any size:

- `report_file`: JSON Lines, one line per input position (its `_clientRef`, `externalId` when given,
  `outcome`, Kustomer's message id when created, why and what to do otherwise);
- `retry_file`: JSON Lines of every message known not to exist (`failed`, `not_sent`), each with its
  `_clientRef`: fix what the reasons say, then give it as `messages_file` to a new run (an import of
  its own); never a message that may exist;
- `unknown_file`, when any: the messages that may or may not exist, with what to check.

Messages never attempted (`pending`: the run stopped, or a job's time ran out) and operations not
read yet are sent or read by the next run of the same import. Once every batch's outcome is known the
import is finished: its report is kept in the manifest, and its copies of the input and the states are
deleted; running it again sends nothing and answers the same report. When anything was not created
the step fails (the flow shows red) and the report travels in the error's `extra`.
"""

import heapq
import json
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wmill
from f.kustomer import import_store as store

OUTCOMES = ("created", "failed", "unknown", "not_sent", "pending")
FIRST = 100  # positions not created, in the result; report_file has them all
SHOWN = 20  # runs of positions in the error's message
MAX_INLINE_RETRY = 500_000  # bytes of `retry` kept in the result of an inline import
READERS = 8  # states read at once
PENDING = "not sent yet: the run stopped before it"
PENDING_CHECK = "run the import again: it sends what was never sent"
SHOWN_PROBLEMS = 3  # problems of an invalid message in its entry; invalid_file has them all
MAX_PROBLEM = 300  # characters of one problem in an entry
FIX_AND_RETRY = "fix what `why` says, then send it again: it is in retry_file (none of retry_file was created)"
FIX_THE_LINE = "fix this line of the input (it is no message): it is not in retry_file"
RETRY = "send it again with retry_file once what `why` says is fixed: it was not created"


class ImportIncompleteError(Exception):
    """Some messages were not created; the attributes hold the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.__dict__.update(report)


def main(prepared: dict) -> dict[str, Any]:  # type: ignore[type-arg]  # the result of prepare
    if prepared.get("dry_run"):
        dry = {"summary": prepared.get("summary"), "dry_run": prepared["dry_run"], "counts": prepared["counts"]}
        return {**dry, "problems": prepared.get("problems", []), "invalid_file": prepared["invalid_file"]}
    started = time.monotonic()
    import_id = prepared["import_id"]
    folder = store.import_folder(import_id)
    manifest = store.load_json(f"{folder}/manifest.json")
    if manifest is None:
        raise store.ImportStorageError(f"The import's manifest ({folder}/manifest.json) is gone; run the import again.")
    report: dict[str, Any]
    if manifest.get("finished"):
        report = manifest["finished"]
        print(f"Import {import_id} is finished: this is its report, as it ended.")
    else:
        report = _report(import_id, manifest)
        positions = _plural(report["counts"]["messages"], "position", "positions")
        print(f"Wrote the report of {positions} in {time.monotonic() - started:.1f} s.")
    if report["counts"]["created"] < report["counts"]["messages"]:
        raise ImportIncompleteError(report["summary"], report)
    return report


def _report(import_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    folder = store.import_folder(import_id)
    counts = dict.fromkeys(OUTCOMES, 0)
    not_created: list[dict[str, Any]] = []
    runs = Runs()
    retry_inline: list[Any] | None = [] if manifest.get("inline") else None
    retry_bytes = 0
    done: list[tuple[int, bool]] = []  # each batch whose outcome is known, and whether retry_file holds some of it
    unreadable = 0  # invalid positions that are no message at all: never in retry_file
    with (
        tempfile.NamedTemporaryFile() as report_file,
        tempfile.NamedTemporaryFile() as retry_file,
        tempfile.NamedTemporaryFile() as unknown_file,
    ):

        def flat(stream: Iterator[Batch]) -> Iterator[tuple[dict[str, Any], Any]]:
            for batch, state, entries, messages in stream:
                if state == "done":
                    done.append((batch, bool(messages)))
                for entry in entries:
                    yield entry, messages.get(entry["position"])

        # the batches' entries and the invalid messages', by position: as the input had them
        merged = heapq.merge(flat(_outcomes(import_id, manifest)), flat(_invalid(manifest)), key=_position)
        for entry, message in merged:
            counts[entry["outcome"]] += 1
            line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
            report_file.write(line)
            if entry["outcome"] == "created":
                continue
            if len(not_created) < FIRST:
                not_created.append(entry)
            runs.add(entry)
            if entry["outcome"] == "unknown":
                unknown_file.write(line)
            elif entry["outcome"] in ("failed", "not_sent"):
                if not isinstance(message, dict):  # a line that is no message: fixed in the input, not resent
                    unreadable += 1
                    continue
                retry_file.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
                if retry_inline is not None and retry_bytes <= MAX_INLINE_RETRY:
                    retry_bytes += len(json.dumps(message))
                    retry_inline.append(message)
        total = sum(counts.values())
        report: dict[str, Any] = {"counts": {"messages": total, **counts}, "not_created": not_created}
        report["report_file"] = _upload(f"{folder}/report.jsonl", report_file)
        if counts["failed"] + counts["not_sent"] > unreadable:
            report["retry_file"] = _upload(f"{folder}/retry.jsonl", retry_file)
            if retry_inline is not None and retry_bytes <= MAX_INLINE_RETRY:
                report["retry"] = retry_inline
        if counts["unknown"]:
            report["unknown_file"] = _upload(f"{folder}/unknown.jsonl", unknown_file)
    report["import_id"] = import_id
    if manifest.get("invalid_file"):  # every problem of every invalid message
        report["invalid_file"] = manifest["invalid_file"]
    if unreadable:
        report["unreadable"] = unreadable
    report["summary"] = _explain(report, runs)
    finished = len(done) == manifest["batches"]  # no later run can learn more
    if finished:
        store.save_json(f"{folder}/manifest.json", {**manifest, "finished": report})
        print(f"Import {import_id} is finished: its copies of the input and its states are deleted.")
    _tidy(import_id, [b for b, kept in done if finished or not kept], finished)
    return report


def _tidy(import_id: str, batches: list[int], finished: bool) -> None:
    """Delete the copies of batches whose outcome is known (and, once finished, the states)."""
    keys = [store.batch_key(import_id, b) for b in batches]
    if finished:
        keys += [store.state_key(import_id, b) for b in batches]
    with ThreadPoolExecutor(READERS) as pool:
        for failed in pool.map(_deleted, keys):
            if failed:
                print(f"Could not delete {failed} (it stays; nothing depends on it).")


def _deleted(key: str) -> str:
    try:
        store.delete(key)
    except store.ImportStorageError:
        return key
    return ""


Batch = tuple[int, str | None, list[dict[str, Any]], dict[int, Any]]  # number, state, entries, messages by position


def _outcomes(import_id: str, manifest: dict[str, Any]) -> Iterator[Batch]:
    """Each batch in order: its state, its entries, and the messages that retry_file needs (read from
    the batch's copy only when it has any); then the invalid messages prepare left out, as not sent."""

    def read(batch: int) -> tuple[int, str | None, list[dict[str, Any]], dict[int, Any]]:
        state = store.load_json(store.state_key(import_id, batch))
        if state is None:
            raise store.ImportStorageError(f"The state of batch {batch + 1} is gone from the workspace storage.")
        entries = _entries(batch, state)
        messages: dict[int, Any] = {}
        if state["state"] == "new" or any(e["outcome"] in ("failed", "not_sent") for e in entries):
            data = store.load(store.batch_key(import_id, batch))
            if data is None:
                raise store.ImportStorageError(f"The copy of batch {batch + 1} is gone from the workspace storage.")
            content = json.loads(data)
            messages = dict(
                zip(content["positions"], store.tagged(content["positions"], content["messages"]), strict=True)
            )
            if state["state"] == "new":
                entries = [
                    {
                        **_head(p, m.get("_clientRef"), m.get("externalId")),
                        "outcome": "pending",
                        "why": PENDING,
                        "check": PENDING_CHECK,
                    }
                    for p, m in messages.items()
                ]
                messages = {}
        return batch, state["state"], entries, messages

    with ThreadPoolExecutor(READERS) as pool:  # in order, a few ahead: bounded memory
        batches = range(manifest["batches"])
        ahead = [pool.submit(read, b) for b in batches[:READERS]]
        for i in range(len(batches)):
            if i + READERS < len(batches):
                ahead.append(pool.submit(read, batches[i + READERS]))
            yield ahead.pop(0).result()


def _invalid(manifest: dict[str, Any]) -> Iterator[Batch]:
    """The invalid messages prepare left out (skip_invalid), in order, as not sent: each with at most
    SHOWN_PROBLEMS of its problems (invalid_file has them all), and what to do."""
    invalid_file = manifest.get("invalid_file")
    data = (store.load(invalid_file["s3"]) or b"") if invalid_file else b""
    for line in data.splitlines():
        if not line.strip():
            continue
        invalid = json.loads(line)
        message = invalid["message"]
        ref = message.get("_clientRef") if isinstance(message, dict) else None
        external = message.get("externalId") if isinstance(message, dict) else None
        entry = {**_head(invalid["position"], ref, external), "outcome": "not_sent"}
        problems = [p[:MAX_PROBLEM] for p in invalid["problems"]]
        more = len(problems) - SHOWN_PROBLEMS
        entry["why"] = "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more (invalid_file)" if more > 0 else "")
        entry["check"] = FIX_AND_RETRY if isinstance(message, dict) else FIX_THE_LINE
        yield -1, None, [entry], {invalid["position"]: message}


def _position(pair: tuple[dict[str, Any], Any]) -> int:
    position: int = pair[0]["position"]
    return position


def _head(position: int, ref: Any, external: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"position": position, "_clientRef": ref}
    if isinstance(external, str) and external:
        entry["externalId"] = external
    return entry


def _entries(batch: int, state: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch's report lines from its state."""
    kind = state["state"]
    refs = state.get("messages", [])
    if kind == "new":
        return []  # the batch's copy names them
    if kind == "done" and "outcome" in state:  # refused whole, or not sent: nothing of it was created
        return [
            {**_head(p, ref or f"position-{p}", ext), "outcome": state["outcome"], "why": state["why"], "check": RETRY}
            for p, ref, ext, _ in refs
        ]
    if kind == "done":
        return [
            {
                **_head(p, rest.pop("_clientRef", None) or f"position-{p}", rest.pop("externalId", None)),
                "outcome": outcome,
                **rest,
                **({"check": RETRY} if outcome == "failed" else {}),
            }
            for p, outcome, rest in state["outcomes"]
        ]
    if kind == "accepted":
        bulk_id = state["bulk_id"]
        why = f"sent as bulk operation {bulk_id}, whose outcome is not read yet"
        check = "run the import again: it reads the operation's outcome and sends nothing again"
        return [
            {
                **_head(p, ref or f"position-{p}", ext),
                "outcome": "unknown",
                "why": why,
                "check": check,
                "bulk_id": bulk_id,
            }
            for p, ref, ext, _ in refs
        ]
    found = state.get("found", {})  # sending: the request may have gone out
    why = f"outcome unknown: {state.get('why') or 'the run that sent it stopped before its answer was noted'}"
    settled = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(state.get("at", 0) + store.SETTLED + 60))
    entries = []
    for p, ref, ext, _ in refs:
        entry = _head(p, ref or f"position-{p}", ext)
        if str(p) in found:
            entry.update(outcome="created", id=found[str(p)])
        elif ext:
            check = (
                f"run the import again (after {settled} it can tell): it looks the message up by its externalId "
                "and never sends it on a guess"
            )
            entry.update(outcome="unknown", why=why, check=check, batch=batch + 1)
        else:
            check = f"check its conversation's timeline (batch {batch + 1} of the import): it has no externalId"
            entry.update(outcome="unknown", why=why, check=check, batch=batch + 1)
        entries.append(entry)
    return entries


class Runs:
    """Consecutive positions with the same outcome and reason, the first SHOWN runs: a batch's 100 are
    one line. Each run keeps its first entry, its last position and its size: memory stays flat."""

    def __init__(self) -> None:
        self.runs: list[list[Any]] = []  # [first entry, last position, count]
        self.more = False

    def add(self, entry: dict[str, Any]) -> None:
        last = self.runs[-1] if self.runs else None
        if (
            last
            and last[1] + 1 == entry["position"]
            and (last[0]["outcome"], last[0].get("why")) == (entry["outcome"], entry.get("why"))
        ):
            last[1], last[2] = entry["position"], last[2] + 1
        elif len(self.runs) < SHOWN:
            self.runs.append([entry, entry["position"], 1])
        else:
            self.more = True


def _explain(report: dict[str, Any], runs: Runs) -> str:
    counts = report["counts"]
    lines = [
        f"{_plural(counts['messages'], 'message', 'messages')}: {counts['created']} created, {counts['failed']} "
        f"failed, {counts['unknown']} outcome unknown, {counts['not_sent']} not sent, {counts['pending']} not sent yet."
    ]
    for first, last, count in runs.runs:
        where = f"messages[{first['position']}]"  # with its _clientRef; a line that is no message has none
        if first["_clientRef"] is not None:
            where += f" ({first['_clientRef']})"
        if count > 1:
            where = f"messages[{first['position']}] to [{last}] ({count} messages)"
        lines.append(f"- {where}: {first['outcome']}: {first.get('why', '')}")
    if runs.more:
        lines.append("- ... and more: report_file in this error's extra lists every position")
    if counts["pending"] or any(
        e.get("bulk_id") or e.get("check", "").startswith("run the import again") for e in report["not_created"]
    ):
        lines.append(
            "Run the import again (the same input, the same org): it sends what was never sent, reads what was "
            "not confirmed and looks up what may exist, and never sends a message twice."
        )
    if report.get("unreadable"):
        lines.append(
            f"{_plural(report['unreadable'], 'line of the input is', 'lines of the input are')} no message at all "
            + (
                "(report_file gives its line number): fix it in the input; it is not in retry_file."
                if report["unreadable"] == 1
                else "(report_file gives each one's line number): fix them in the input; they are not in retry_file."
            )
        )
    if "retry_file" in report:
        safe = counts["failed"] + counts["not_sent"] - report.get("unreadable", 0)
        none = "it was not created" if safe == 1 else "none of them was created"
        lines.append(
            f"Safe to send again: the {_plural(safe, 'message', 'messages')} in retry_file (failed or not sent: "
            f"{none}); fix what the reasons say, then run this flow with it as messages_file."
        )
    if counts["unknown"]:
        lines.append(
            f"Check before sending again: the {_plural(counts['unknown'], 'message', 'messages')} whose outcome is "
            "unknown, in unknown_file (each says what to do); they are not in retry_file, to avoid duplicates."
        )
    return "\n".join(lines)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _upload(key: str, file: Any) -> dict[str, str]:
    """Upload a temporary file whole (read again at each try: a try is safe to repeat)."""
    file.flush()

    def once() -> None:
        with open(file.name, "rb") as reader:
            wmill.write_s3_file({"s3": key}, reader)

    store.tried(once, f"write {key}")
    return {"s3": key}
