# skip_result_postprocessing
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx==0.28.1", "wmill==1.850.0"]  # pinned as in uv.lock
# ///
"""Step 1 of import_messages: find the import this input belongs to, check every message once, and
cut them into batches in the workspace storage, before anything is sent.

An import is named by its input and its org, not by the flow run: the same messages (the same file
content, or the same inline messages) sent to the same Kustomer org (and the same `import_label`)
are one import, kept in `kustomer_import/<id>/` of the workspace storage. Running the flow again
continues it: the batches are cut once (the manifest, written last, says they are all there), and
the loop's jobs send only the batches never attempted. A new `import_label` starts a new import.

One flow run works on an import at a time: the run takes the import's lease, and a second run refuses
while the lease's run is still running in Windmill (a finished or cancelled run leaves it free). The
storage has no atomic claim, so the run writes the lease, waits CLAIM_SETTLE seconds and reads it back:
two runs racing both see the later one's name and only that one goes on, unless one run's write
lands more than CLAIM_SETTLE seconds after its own read.

Messages come as JSON text (`messages`, inline; the flow passes `JSON.stringify(flow_input.messages)`
so the worker never rewrites a `$var:` or `$WM_TOKEN` inside them) or as a file of the workspace
storage (`messages_file`: JSON Lines, or one JSON array), copied once to a local file while its digest
is taken. Every message is checked with bulk_create_messages' own rules (imported from the deployed
script, so the check and the send cannot drift) and gets a `_clientRef` from its position when it has
none. An invalid message stops the import before anything is written, with every invalid position in
`invalid_file`; with `skip_invalid` the valid ones go on. `dry_run` checks and plans, sends nothing and
writes nothing but `invalid_file` (the same a run would write), whose first problems its result lists.

The result stays small whatever the import's size: the import's id, the groups of batches the loop
iterates over (each a job: see `group_size`), and counts.
"""

import base64
import codecs
import contextlib
import itertools
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from hashlib import blake2b, sha256
from typing import Any

import httpx
import wmill
from f.kustomer import bulk_create_messages as kustomer
from f.kustomer import import_store as store

MAX_INLINE_BYTES = 2_000_000  # Windmill copies the flow input into every loop iteration; Cloud's result limit
MAX_BATCH_ITEMS = kustomer.MAX_BULK_ITEMS  # Kustomer's bulk limit, as the script has it
MAX_BATCH_BYTES = 900_000  # under the scripts' 1 MB body limit, whatever the texts
MAX_MESSAGE_BYTES = kustomer.MAX_BODY_BYTES  # a message that alone is over the script's body limit
MAX_LABEL = 200
SHOWN = 20  # invalid positions in the error's message; invalid_file has them all
UPLOADS = 4  # objects written at once
# Seconds between writing the lease and reading it back. A worker may set it (WHITELIST_ENVS): the
# workbench's tests do, to run many imports quickly on loopback, where a write takes milliseconds.
CLAIM_SETTLE = float(os.environ.get("KUSTOMER_IMPORT_CLAIM_SETTLE_SECONDS") or 2.0)

# How many batches one job of the loop takes: its planned requests (a send and a confirmation read a
# batch) fit in JOB_PLAN_SECONDS at the asked pace, so a job stays well inside Cloud's 900 s; the job
# itself starts no send after SEND_UNTIL and ends its requests by END_BY (send_group.inline_script.py).
JOB_PLAN_SECONDS = 600
REQUESTS_PER_BATCH = 2
MAX_GROUP = 500  # batches: 50,000 messages a job at most
UNPACED_PLAN = 300  # requests a minute an unpaced import is planned at: Kustomer's smallest plan


class ImportInputError(Exception):
    """The import was refused before anything was sent; the attributes say where to look."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.__dict__.update(details)


class ImportBusyError(Exception):
    """Another flow run works on this import now; nothing was sent by this one."""


def main(
    auth: dict,  # type: ignore[type-arg]  # the kustomer resource: its org is part of the import's name
    messages: str = "[]",
    messages_file: dict | None = None,  # type: ignore[type-arg]  # an S3 object: {"s3": key, "storage"?: name}
    import_label: str = "",
    skip_invalid: bool = False,
    dry_run: bool = False,
    max_requests_per_minute: int = 0,
) -> dict[str, Any]:
    _check_inputs(auth, import_label, max_requests_per_minute, skip_invalid, dry_run, messages_file)
    with tempfile.TemporaryDirectory(prefix="kustomer-import-") as folder:
        source, digest = _spooled(messages, messages_file, folder)
        import_id = blake2b(
            b"\0".join([b"kustomer-import/1", _org(auth), import_label.encode(), digest]), digest_size=16
        ).hexdigest()
        run = os.environ.get("WM_ROOT_FLOW_JOB_ID") or os.environ.get("WM_JOB_ID") or "local"
        if dry_run:
            return _dry_run(source, folder, max_requests_per_minute, import_id)
        _claim(import_id, run)
        manifest = store.load_json(f"{store.import_folder(import_id)}/manifest.json")
        if manifest is None:
            started = time.monotonic()  # the checking's time: not the copy, nor the lease's settle wait
            manifest = _cut(
                source, folder, import_id, skip_invalid, inline=messages_file is None or not messages_file.get("s3")
            )
            checked = _plural(manifest["counts"]["messages"], "message", "messages")
            print(
                f"Checked {checked} in {time.monotonic() - started:.1f} s: "
                f"{manifest['counts']['valid']} valid, in {_plural(manifest['batches'], 'batch', 'batches')}, "
                f"{manifest['counts']['invalid']} invalid{' (skipped)' if manifest['counts']['invalid'] else ''}."
            )
        elif manifest.get("finished"):
            print(f"Import {import_id} is finished: nothing to send; the report is the one it ended with.")
        else:
            print(f"Import {import_id} was started before: going on with its {manifest['batches']} batches.")
    batches = 0 if manifest.get("finished") else manifest["batches"]
    size = group_size(max_requests_per_minute)
    groups = [[first, min(first + size, batches)] for first in range(0, batches, size)]
    return {
        "import_id": import_id,
        "groups": groups,
        "batches": manifest["batches"],
        "counts": manifest["counts"],
        "invalid_file": manifest.get("invalid_file"),
        "inline": manifest["inline"],
        "dry_run": None,
        "plan": _plan(manifest["batches"], max_requests_per_minute, len(groups)),
    }


def group_size(per_minute: int) -> int:
    """Batches a job takes: as many as its planned requests fit in JOB_PLAN_SECONDS at the pace asked
    (an unpaced import is planned at Kustomer's smallest plan), between 1 and MAX_GROUP. At 1 request a
    minute that is 5 batches: 10 requests, 10 minutes."""
    rate = per_minute or UNPACED_PLAN
    return max(1, min(MAX_GROUP, int(JOB_PLAN_SECONDS * rate / 60 / REQUESTS_PER_BATCH)))


def _plan(batches: int, per_minute: int, groups: int) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "batches": batches,
        "requests": REQUESTS_PER_BATCH * batches,
        "max_requests_per_minute": per_minute,
        "jobs": groups,
    }
    if per_minute:
        plan["minutes"] = round(REQUESTS_PER_BATCH * batches / per_minute, 1)
    return plan


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _invalid(counts: dict[str, int]) -> str:
    """How many messages are invalid, of how many, as a sentence's subject and verb."""
    invalid, total = counts["invalid"], counts["messages"]
    if invalid == total:
        return "The only message is invalid" if total == 1 else f"All {total} messages are invalid"
    return f"{invalid} of {total} messages {'is' if invalid == 1 else 'are'} invalid"


def _valid(counts: dict[str, int]) -> str:
    return "the valid one" if counts["valid"] == 1 else f"the {counts['valid']} valid ones"


def _others(counts: dict[str, int]) -> str:
    return "the invalid one" if counts["invalid"] == 1 else "the others"


def _check_inputs(auth: Any, label: Any, per_minute: Any, skip_invalid: Any, dry_run: Any, file: Any) -> None:
    """The flow's inputs of the wrong type, each named, before anything is read or sent."""
    problems = []
    if not isinstance(auth, dict) or not isinstance(auth.get("apiKey"), str) or not auth["apiKey"].strip():
        problems.append("auth: must be a kustomer resource with its apiKey (not shown)")
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        problems.append(f"import_label: must be text of at most {MAX_LABEL} characters, got {label!r:.40}")
    if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 0:
        problems.append(f"max_requests_per_minute: must be a whole number, 0 or more, got {per_minute!r:.40}")
    for name, value in (("skip_invalid", skip_invalid), ("dry_run", dry_run)):
        if not isinstance(value, bool):
            problems.append(f"{name}: must be true or false, got {value!r:.40}")
    if file is not None and not (isinstance(file, dict) and isinstance(file.get("s3", ""), str)):
        problems.append('messages_file: must be a file of the workspace storage ({"s3": "path/to/file.jsonl"})')
    if problems:
        raise ImportInputError(
            "Nothing was sent: the flow's input has problems:\n" + "\n".join(f"- {p}" for p in problems)
        )


def _org(auth: dict[str, Any]) -> bytes:
    """What names the org in the import's id: the `org` claim of the key when it is a JWT (Kustomer's
    keys are), else a digest of the key and the host. Neither shows in the id, a digest of them all."""
    key = auth["apiKey"].strip()
    with contextlib.suppress(Exception):
        payload = key.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        org = claims.get("org") or claims.get("orgId")
        if isinstance(org, str) and org:
            return b"org:" + org.encode()
    host = (auth.get("baseUrl") or "").strip().rstrip("/").lower()
    return b"key:" + blake2b(key.encode() + b"\0" + host.encode(), digest_size=16).digest()


def _spooled(text: str, file: dict[str, Any] | None, folder: str) -> tuple[Callable[[], Iterator[Any]], bytes]:
    """Where the messages come from (exactly one of the two inputs), as a source to read them from more
    than once, and the digest of their bytes. A file is copied to `folder` once, as it is read."""
    has_file = isinstance(file, dict) and bool(file.get("s3"))
    has_inline = isinstance(text, str) and text.strip() not in ("", "[]", "null")
    if has_file and has_inline:
        raise ImportInputError("Give the messages inline (messages) or as a file (messages_file), not both.")
    if has_inline:
        data = text.encode()
        if len(data) > MAX_INLINE_BYTES:
            raise ImportInputError(
                f"The inline messages are {len(data) / 1e6:.1f} MB of JSON, over the 2 MB that an inline import "
                "takes (Windmill copies the flow's input into every loop iteration): upload them as a JSON Lines "
                "file and give it as messages_file. Nothing was sent."
            )
        return (lambda: _array_items(iter([data]), "messages")), b"inline:" + sha256(data).digest()
    if not has_file:
        raise ImportInputError("No messages: messages (inline) and messages_file are both empty. Nothing was sent.")
    assert isinstance(file, dict)
    path = os.path.join(folder, "input")

    def copy() -> bytes | int:
        """The digest of the file, copied as it is read; or the status with which the storage said it has none."""
        digest = sha256()
        try:
            with wmill.load_s3_file_reader(file) as reader, open(path, "wb") as out:
                while chunk := reader.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
        except httpx.HTTPStatusError as error:
            if error.response.status_code in (400, 404):
                return error.response.status_code
            raise
        return digest.digest()

    digest = store.tried(copy, f"read messages_file {str(file.get('s3'))[:200]!r}")
    if isinstance(digest, int):
        raise ImportInputError(
            f"messages_file: the workspace storage has no file {str(file.get('s3'))[:200]!r} (it answered {digest}). "
            "Nothing was sent."
        )

    def from_file() -> Iterator[Any]:
        with open(path, "rb") as reader:
            chunks = _chunks(reader)
            first = next(chunks, b"").removeprefix(codecs.BOM_UTF8)  # Excel and PowerShell write one
            # Windows' "Unicode" and PowerShell 5's `>` write UTF-16: a byte order mark, or a NUL beside each
            # ASCII character (JSON text has no NUL byte of its own)
            if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in first[:2]:
                raise ImportInputError(
                    "messages_file is UTF-16 text, not UTF-8: save it as UTF-8 and upload it again. Nothing was sent."
                )
            rest = itertools.chain([first], chunks)
            yield from _array_items(rest, "messages_file") if first.lstrip()[:1] == b"[" else _lines(rest)

    return from_file, b"file:" + digest


def _claim(import_id: str, run: str) -> None:
    """Take the import's lease for this flow run, or refuse while another run still holds it."""
    key = f"{store.import_folder(import_id)}/lease.json"
    lease = store.load_json(key)
    if lease and lease.get("run") != run and _still_running(str(lease.get("run"))):
        raise _busy(import_id, lease)
    store.save_json(key, {"run": run, "at": time.time()})
    time.sleep(CLAIM_SETTLE)
    lease = store.load_json(key)
    if not lease or lease.get("run") != run:
        raise _busy(import_id, lease or {})


def _busy(import_id: str, lease: dict[str, Any]) -> ImportBusyError:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease.get("at") or 0))
    return ImportBusyError(
        f"This import ({import_id}) is being run by the flow run {str(lease.get('run'))[:40]}, which took it at "
        f"{since} and is still running in Windmill. Nothing was sent by this run: wait for that run to end (or "
        "cancel it), then run again, and this run's work is not lost: it goes on where the other stopped."
    )


def _still_running(job: str) -> bool:
    """Whether the flow run `job` is queued or running in this workspace; a job Windmill no longer
    knows (404) is not. Read with the wmill client's own job route (client.py, get_job)."""
    client = store.windmill()

    def once() -> bool:
        answer = client.get(f"/w/{client.workspace}/jobs_u/get/{job}", raise_for_status=False)
        if answer.status_code == 404:
            return False
        answer.raise_for_status()
        found = answer.json()
        return str(found.get("type", "")).lower() != "completedjob"

    return bool(store.tried(once, f"tell whether the flow run {job[:40]} still runs"))


def _saved_invalid(counts: dict[str, int], folder: str, import_id: str) -> dict[str, str] | None:
    """The invalid messages, one a line, saved to the import's `invalid.jsonl`; None when there are none."""
    if not counts["invalid"]:
        return None
    key = f"{store.import_folder(import_id)}/invalid.jsonl"
    store.tried(lambda: _upload(key, os.path.join(folder, "invalid")), f"write {key}")
    return {"s3": key}


def _dry_run(source: Callable[[], Iterator[Any]], folder: str, per_minute: int, import_id: str) -> dict[str, Any]:
    """Check and plan, as a run would, and send nothing. The invalid messages are listed as a run lists
    them: the first SHOWN problems in the result, every one in `invalid_file` (the key a run writes,
    with the same lines: nothing else of the import is written, so the import is still never run)."""
    counts, batches, shown = _checked_batches(source, folder)
    invalid_file = _saved_invalid(counts, folder, import_id)
    plan = _plan(batches, per_minute, -(-batches // group_size(per_minute)))
    if counts["invalid"]:
        listed = "it" if counts["invalid"] == 1 else "every one"
        summary = (
            f"{_invalid(counts)}: a run would send nothing ("
            + (
                "with skip_invalid neither: no message is valid"
                if not counts["valid"]
                else f"with skip_invalid, it sends {_valid(counts)} and reports {_others(counts)} as not sent"
            )
            + f"); invalid_file lists {listed} with its problems. Nothing was sent."
        )
    else:
        summary = (
            f"All {_plural(counts['messages'], 'message is', 'messages are')} valid: a run sends "
            f"{_plural(batches, 'batch', 'batches')} in {_plural(plan['jobs'], 'job', 'jobs')}. Nothing was sent."
        )
    print(f"Dry run: {summary}")
    return {
        "import_id": None,
        "groups": [],
        "batches": 0,
        "counts": counts,
        "invalid_file": invalid_file,
        "problems": shown,
        "summary": summary,
        "inline": True,
        "dry_run": plan,
        "plan": plan,
    }


def _checked_batches(source: Callable[[], Iterator[Any]], folder: str) -> tuple[dict[str, int], int, list[str]]:
    """Check every message and cut the valid ones into batches, written to local files: `batches`
    (one batch a line), `invalid` (one invalid position a line). Returns counts, batches and the
    first problems."""
    counts = {"messages": 0, "valid": 0, "invalid": 0}
    unreadable = 0  # positions that are no JSON at all
    undecodable = 0  # of those, lines that are not even UTF-8 text
    shown: list[str] = []
    seen: dict[int, int] = {}  # 8-byte digest of each _clientRef -> its position: about 70 bytes a message
    number = 0
    with open(os.path.join(folder, "batches"), "wb") as out, open(os.path.join(folder, "invalid"), "wb") as invalid:
        batch: dict[str, list[Any]] = {"positions": [], "messages": []}
        size = 0
        for position, message, problems in _checked(source(), seen):
            counts["messages"] += 1
            if problems:
                counts["invalid"] += 1
                unreadable += message is None or isinstance(message, LineText)
                undecodable += isinstance(message, LineText) and any(_NOT_UTF8 in p for p in problems)
                line = {"position": position, "problems": problems, "message": message}
                if isinstance(message, LineText):  # no message: the line's text, to find and fix it
                    line.update(message=None, text=str(message))
                invalid.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                shown.extend(problems[: max(0, SHOWN - len(shown))])
                continue
            counts["valid"] += 1
            encoded = len(json.dumps(message, separators=(",", ":")).encode()) + 1
            if batch["messages"] and (len(batch["messages"]) == MAX_BATCH_ITEMS or size + encoded > MAX_BATCH_BYTES):
                out.write(json.dumps(batch, separators=(",", ":")).encode() + b"\n")
                number += 1
                batch, size = {"positions": [], "messages": []}, 0
            if message.get("_clientRef") == f"position-{position}":  # the default: the readers put it back
                message = {k: v for k, v in message.items() if k != "_clientRef"}
            batch["positions"].append(position)
            batch["messages"].append(message)
            size += encoded
        if batch["messages"]:
            out.write(json.dumps(batch, separators=(",", ":")).encode() + b"\n")
            number += 1
    if not counts["messages"]:
        raise ImportInputError("No messages: the input holds none. Nothing was sent.")
    if undecodable and undecodable == counts["messages"]:
        lines = "its only line does not read" if undecodable == 1 else f"none of its {undecodable} lines reads"
        raise ImportInputError(
            f"messages_file is not UTF-8 text: {lines} as UTF-8 (the file was saved in another encoding, "
            "such as Windows-1252 or Latin-1, as some exports are). Save it as UTF-8 and upload it again. Nothing "
            "was sent."
        )
    if unreadable == counts["messages"] and unreadable > 1:
        raise ImportInputError(
            f"None of the {unreadable} lines of the input is a JSON message, so it is neither JSON Lines (one message "
            "object a line) nor one JSON array; a CSV or spreadsheet export must be converted first, into one JSON "
            'object a line such as {"channel": "email", "app": "...", "preview": "..."}. Nothing was sent.'
        )
    return counts, number, shown


def _cut(
    source: Callable[[], Iterator[Any]], folder: str, import_id: str, skip_invalid: bool, inline: bool
) -> dict[str, Any]:
    """Check the input and write its batches, each with its state `new`, then the manifest, last: a
    run killed before it wrote the manifest left no batch that was ever sent, so it is cut again."""
    counts, batches, shown = _checked_batches(source, folder)
    invalid_file = _saved_invalid(counts, folder, import_id)
    if counts["invalid"] and not skip_invalid:
        more = (
            f"\n- ... invalid_file in this error's extra lists all {counts['invalid']}" if len(shown) == SHOWN else ""
        )
        fix = "Fix it" if counts["invalid"] == 1 else "Fix them"
        advice = (
            f"{fix} and run again (no message is valid: skip_invalid would send nothing)"
            if not counts["valid"]
            else f"{fix}, or run with skip_invalid to send {_valid(counts)} and report {_others(counts)} as not sent"
        )
        raise ImportInputError(
            f"{_invalid(counts)}; nothing was sent. {advice}:\n" + "\n".join(f"- {p}" for p in shown) + more,
            counts=counts,
            invalid_file=invalid_file,
        )
    with open(os.path.join(folder, "batches"), "rb") as lines, ThreadPoolExecutor(UPLOADS) as uploads:
        pending: list[Any] = []
        for number, line in enumerate(lines):
            pending.append(uploads.submit(store.save, store.batch_key(import_id, number), line.rstrip(b"\n")))
            pending.append(uploads.submit(store.save_json, store.state_key(import_id, number), {"state": "new"}))
            while len(pending) > 4 * UPLOADS:  # bounded memory: a few batches in flight
                pending.pop(0).result()
        for upload in pending:
            upload.result()
    manifest = {"batches": batches, "counts": counts, "invalid_file": invalid_file, "inline": inline}
    store.save_json(f"{store.import_folder(import_id)}/manifest.json", manifest)
    return manifest


def _upload(key: str, path: str) -> None:
    """Upload a local file as a stream (wmill takes an open file, read in 50 KB pieces)."""
    with open(path, "rb") as reader:
        wmill.write_s3_file({"s3": key}, reader)


def _checked(items: Iterator[tuple[int, Any, str]], seen: dict[int, int]) -> Iterator[tuple[int, Any, list[str]]]:
    """Each message with its problems, by the bulk script's rules; a `_clientRef` from its position."""
    for position, message, problem in items:
        where = f"messages[{position}]"
        if problem:
            yield position, message, [f"{where}: {problem}"]
            continue
        if isinstance(message, dict) and "_clientRef" not in message:
            message = {**message, "_clientRef": f"position-{position}"}
        problems = kustomer.message_problems(message, where)
        ref = message.get("_clientRef") if isinstance(message, dict) else None
        if not problems and isinstance(ref, str):
            digest = int.from_bytes(blake2b(ref.encode("utf-8", "replace"), digest_size=8).digest(), "big")
            if digest in seen:
                problems = [f"{where}._clientRef: repeats messages[{seen[digest]}]._clientRef; each must be unique"]
            else:
                seen[digest] = position
        if problems and isinstance(ref, str) and ref.startswith("position-") and ref != f"position-{position}":
            # a message of a retry_file: say where it was in the original export too
            problems = [f"{p} (its _clientRef {ref[:60]!r} names the original export's position)" for p in problems]
        yield position, message, problems


def _chunks(reader: Any) -> Iterator[bytes]:
    while chunk := reader.read(1 << 16):
        yield chunk


class LineText(str):
    """The text of a line of the input that is no message (its first MAX_LINE_TEXT characters)."""


MAX_LINE_TEXT = 1000
_NOT_UTF8 = "not UTF-8 text"
_AT = re.compile(r" \(line \d+, column (\d+)\)")  # where the JSON parser stopped, in the line's own text
_TEXT_ADVICE = "; give the message object, or its JSON text"  # the script's advice, for an argument


def _lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, Any, str]]:
    """JSON Lines: one message a line, blank lines skipped; a line that is not JSON is that position's
    problem (with its line number in the file, and its text), and the next line is read as usual. A
    line over the size a message may have is one position, reported once, and memory holds at most
    that much of it."""
    position, line, carry, skipping = 0, 0, b"", False
    for chunk in _then_newline(chunks):
        data, start = carry + chunk, 0
        while (end := data.find(b"\n", start)) >= 0:
            line += 1
            if skipping:  # the end of a line already reported
                skipping = False
            elif data[start:end].strip():
                value, problem = _parsed(data[start:end])
                if problem:
                    yield position, _line_text(data[start:end]), _at_line(problem, line)
                else:
                    yield position, value, ""
                position += 1
            start = end + 1
        carry = b"" if skipping else data[start:]
        if len(carry) > MAX_MESSAGE_BYTES:  # report it now, and skip the rest of that line
            yield position, _line_text(carry), _at_line(_parsed(carry)[1], line + 1)
            position, carry, skipping = position + 1, b"", True


def _at_line(problem: str, line: int) -> str:
    """A line's problem, its place said once: the line of the file (the parser counts from the line's
    own start, always line 1), with the column where the parser stopped, when it did."""
    if _AT.search(problem):
        where = _AT.sub(lambda found: f" (line {line}, column {found[1]})", problem, count=1)
        return where.replace(_TEXT_ADVICE, "; each line of the file must be one message object in JSON")
    return f"{problem} (line {line})"


def _line_text(raw: bytes) -> LineText:
    return LineText(raw[: 4 * MAX_LINE_TEXT].decode("utf-8", "replace")[:MAX_LINE_TEXT])


def _then_newline(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield from chunks
    yield b"\n"


def _parsed(raw: bytes) -> tuple[Any, str]:
    """A line's message, or why it has none."""
    if len(raw) > MAX_MESSAGE_BYTES:
        # not read, so not known to be JSON
        return None, f"a line of over {MAX_MESSAGE_BYTES // 1000:,} KB; one message must fit in a bulk request"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, (
            f"{_NOT_UTF8} (byte {exc.start} of the line): the line was saved in another encoding, such as "
            "Windows-1252 or Latin-1; save the file as UTF-8"
        )
    try:
        value, problems = kustomer.parse_json_text(text)
    except RecursionError:
        return None, "nested too deep to read (over about 1,000 levels)"
    return value, problems[0].removeprefix("body: ") if problems else ""


def _array_items(chunks: Iterator[bytes], name: str) -> Iterator[tuple[int, Any, str]]:
    """The items of one JSON array, read piece by piece: memory holds about one message at a time.
    A flaw in the array leaves the rest unreadable, so it refuses the whole file."""
    decode = codecs.getincrementaldecoder("utf-8")().decode
    decoder = kustomer.strict_json_decoder()
    buffer, at, eof, position = "", 0, False, 0

    read = 0  # bytes decoded so far

    def fill() -> None:
        nonlocal buffer, at, eof, read
        chunk = next(chunks, None)
        eof = chunk is None
        try:
            text = decode(chunk or b"", final=eof)
        except UnicodeDecodeError as exc:
            raise refuse(f"it is not UTF-8 text (byte {read + exc.start} of the file)") from None
        read += len(chunk or b"")
        buffer, at = buffer[at:] + text, 0

    def next_char() -> str:
        nonlocal at
        while True:
            while at < len(buffer) and buffer[at] in " \t\r\n":
                at += 1
            if at < len(buffer) or eof:
                return buffer[at : at + 1]
            fill()

    def refuse(why: str) -> ImportInputError:
        return ImportInputError(f"{name}: {why}, so it cannot be read on. Nothing was sent.")

    def nothing_after() -> None:
        """Two exports back to back, or anything after the array: refused, never silently dropped."""
        nonlocal at
        at += 1
        rest = next_char()
        if rest:
            shown = json.dumps(buffer[at : at + 40], ensure_ascii=True)
            raise refuse(
                f"something follows the array's closing ] ({shown}...): give one JSON array (two exports back to "
                "back are two files) or JSON Lines"
            )

    if next_char() != "[":
        raise refuse("it is neither JSON Lines (one message a line) nor one JSON array of messages")
    at += 1
    if next_char() == "]":
        nothing_after()
        return
    while True:
        next_char()
        try:
            value, end = decoder.raw_decode(buffer, at)
            if end == len(buffer) and not eof:
                raise ValueError("a number may go on in the next piece")
        except RecursionError:
            raise refuse(f"messages[{position}] is nested too deep to read (over about 1,000 levels)") from None
        except ValueError as exc:
            if not eof and len(buffer) - at <= 2 * MAX_MESSAGE_BYTES:
                fill()
                continue
            if len(buffer) - at > 2 * MAX_MESSAGE_BYTES:
                raise refuse(
                    f"messages[{position}] is over {2 * MAX_MESSAGE_BYTES // 1_000_000} MB of JSON; one message must "
                    "fit in a bulk request"
                ) from None
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise refuse(f"the JSON array is not strict JSON at messages[{position}] ({why})") from None
        yield position, value, ""
        position += 1
        at = end
        separator = next_char()
        if separator == "]":
            nothing_after()
            return
        at += 1
        if separator != ",":
            raise refuse(f"the JSON array has no ',' or ']' after messages[{position - 1}]")
