# skip_result_postprocessing
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx==0.28.1", "wmill==1.850.0"]  # pinned as in uv.lock
# ///
"""Step 1 of import_messages: read every message once, check each, and cut them into batches in the
workspace storage, before anything is sent.

The messages come as JSON text (`messages`, inline; the flow passes `JSON.stringify(flow_input.messages)`
so Windmill's worker never rewrites a `$var:` or `$WM_TOKEN` inside them) or as a file of the
workspace storage (`messages_file`: JSON Lines, or one JSON array), read as a stream. Every message is
checked with bulk_create_messages' own rules (imported from the deployed script, so the check and the
send cannot drift), gets a `_clientRef` from its position when it has none, and goes into a batch of at
most 100 messages and 900 KB, written to `kustomer_import/<run>/batch-<n>.json` (a default
`_clientRef` is not stored: each reader of a batch puts it back, `tagged`). The result is small
whatever the import's size: the batch numbers the loops iterate over, and counts.

An invalid message stops the import here, nothing sent, with every invalid position in
`invalid_file` (the first ones in the error); with `skip_invalid` the valid ones go on and the others
are reported as not sent. With `dry_run` nothing is sent and the result says what the import would take.
"""

import codecs
import itertools
import json
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from hashlib import blake2b
from typing import Any

import wmill
from f.kustomer import bulk_create_messages as kustomer

MAX_INLINE_BYTES = 2_000_000  # Windmill copies the flow input into every loop iteration; Cloud's result limit
MAX_BATCH_ITEMS = kustomer.MAX_BULK_ITEMS  # Kustomer's bulk limit, as the script has it
MAX_BATCH_BYTES = 900_000  # under the scripts' 1 MB body limit, whatever the texts
MAX_MESSAGE_BYTES = kustomer.MAX_BODY_BYTES  # a message that alone is over the script's body limit
SHOWN = 20  # invalid positions in the error's message; invalid_file has them all
UPLOADS = 4  # batch objects written at once


class ImportInputError(Exception):
    """The import was refused before anything was sent; the attributes say where to look."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.__dict__.update(details)


def main(
    messages: str = "[]",
    messages_file: dict | None = None,  # type: ignore[type-arg]  # an S3 object: {"s3": key, "storage"?: name}
    skip_invalid: bool = False,
    dry_run: bool = False,
    max_requests_per_minute: int = 0,
    parallelism: int = 4,
) -> dict[str, Any]:
    started = time.monotonic()
    _check_inputs(max_requests_per_minute, skip_invalid, dry_run, messages_file)
    source = _source(messages, messages_file)
    run = os.environ.get("WM_ROOT_FLOW_JOB_ID") or os.environ.get("WM_JOB_ID") or "local"
    prefix = f"kustomer_import/{run}"
    counts = {"messages": 0, "valid": 0, "invalid": 0}
    shown: list[str] = []
    batches: list[int] = []
    seen: dict[int, int] = {}  # 8-byte digest of each _clientRef -> its position: about 70 bytes a message
    with tempfile.NamedTemporaryFile() as invalid, ThreadPoolExecutor(UPLOADS) as uploads:
        pending: list[Any] = []
        batch: dict[str, list[Any]] = {"positions": [], "messages": []}
        size = 0

        def flush() -> None:
            nonlocal batch, size
            number = len(batches)
            batches.append(number)
            if not dry_run:
                data = json.dumps(batch, separators=(",", ":")).encode()
                pending.append(uploads.submit(wmill.write_s3_file, {"s3": f"{prefix}/batch-{number}.json"}, data))
                while len(pending) > 2 * UPLOADS:  # bounded memory: a few batches in flight
                    pending.pop(0).result()
            batch, size = {"positions": [], "messages": []}, 0

        for position, message, problems in _checked(source(), seen):
            counts["messages"] += 1
            if problems:
                counts["invalid"] += 1
                line = {"position": position, "problems": problems, "message": message}
                invalid.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                shown.extend(problems[: max(0, SHOWN - len(shown))])
                continue
            counts["valid"] += 1
            encoded = len(json.dumps(message, separators=(",", ":")).encode()) + 1
            if batch["messages"] and (len(batch["messages"]) == MAX_BATCH_ITEMS or size + encoded > MAX_BATCH_BYTES):
                flush()
            if message.get("_clientRef") == f"position-{position}":  # the default: the readers put it back
                message = {k: v for k, v in message.items() if k != "_clientRef"}
            batch["positions"].append(position)
            batch["messages"].append(message)
            size += encoded
        if batch["messages"]:
            flush()
        for upload in pending:
            upload.result()
        invalid_file = None
        if counts["invalid"]:
            invalid_file = _write(f"{prefix}/invalid.jsonl", invalid)
    if not counts["messages"]:
        raise ImportInputError("No messages: messages (inline) and messages_file are both empty. Nothing was sent.")
    if counts["invalid"] and not skip_invalid:
        more = (
            f"\n- ... invalid_file in this error's extra lists all {counts['invalid']}" if len(shown) == SHOWN else ""
        )
        raise ImportInputError(
            f"{counts['invalid']} of {counts['messages']} messages are invalid; nothing was sent. Fix them, or run "
            "with skip_invalid to send the valid ones and report the others as not sent:\n"
            + "\n".join(f"- {p}" for p in shown)
            + more,
            counts=counts,
            invalid_file=invalid_file,
        )
    requests = 2 * len(batches)  # one send and one confirmation read per batch
    minutes = requests / max_requests_per_minute if max_requests_per_minute else None
    print(
        f"Checked {counts['messages']} messages in {time.monotonic() - started:.1f} s: {counts['valid']} valid in "
        f"{len(batches)} batches, {counts['invalid']} invalid{' (skipped)' if counts['invalid'] else ''}."
    )
    plan: dict[str, Any] = {
        "batches": len(batches),
        "requests": requests,
        "max_requests_per_minute": max_requests_per_minute,
    }
    if minutes is not None:
        plan["minutes"] = round(minutes, 1)
    return {
        "run": prefix,
        "batches": [] if dry_run else batches,
        "counts": counts,
        "invalid_file": invalid_file,
        "inline": messages_file is None or not messages_file.get("s3"),
        "dry_run": plan if dry_run else None,
        "plan": plan,
    }


def _check_inputs(per_minute: Any, skip_invalid: Any, dry_run: Any, file: Any) -> None:
    """The flow's inputs of the wrong type, each named, before anything is read or sent."""
    problems = []
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


def _source(text: str, file: dict[str, Any] | None) -> Any:
    """Where the messages come from: exactly one of the two inputs."""
    has_file = isinstance(file, dict) and bool(file.get("s3"))
    has_inline = isinstance(text, str) and text.strip() not in ("", "[]", "null")
    if has_file and has_inline:
        raise ImportInputError("Give the messages inline (messages) or as a file (messages_file), not both.")
    if has_inline:
        size = len(text.encode())
        if size > MAX_INLINE_BYTES:
            raise ImportInputError(
                f"The inline messages are {size / 1e6:.1f} MB of JSON, over the 2 MB that an inline import takes "
                "(Windmill copies the flow's input into every loop iteration): upload them as a JSON Lines file and "
                "give it as messages_file. Nothing was sent."
            )
        return lambda: _array_items(iter([text.encode()]), "messages")
    if not has_file:
        return lambda: iter(())
    assert isinstance(file, dict)

    def from_storage() -> Iterator[tuple[int, Any, str]]:
        with wmill.load_s3_file_reader(file) as reader:
            chunks = _chunks(reader)
            first = next(chunks, b"")
            rest = itertools.chain([first], chunks)
            yield from _array_items(rest, "messages_file") if first.lstrip()[:1] == b"[" else _lines(rest)

    return from_storage


def _checked(items: Iterator[tuple[int, Any, str]], seen: dict[int, int]) -> Iterator[tuple[int, Any, list[str]]]:
    """Each message with its problems, by the bulk script's rules; a `_clientRef` from its position."""
    for position, message, problem in items:
        where = f"messages[{position}]"
        if problem:
            yield position, message, [f"{where}: {problem}"]
            continue
        if isinstance(message, dict) and "_clientRef" not in message:
            message = {**message, "_clientRef": f"position-{position}"}
        problems = kustomer._message_problems(message, where, kustomer.BULK_REQUIRED, kustomer.CLIENT_REF)
        problems = problems or kustomer._token_problems(message, where)
        ref = message.get("_clientRef") if isinstance(message, dict) else None
        if not problems and isinstance(ref, str):
            digest = int.from_bytes(blake2b(ref.encode("utf-8", "replace"), digest_size=8).digest(), "big")
            if digest in seen:
                problems = [f"{where}._clientRef: repeats messages[{seen[digest]}]._clientRef; each must be unique"]
            else:
                seen[digest] = position
        yield position, message, problems


def _chunks(reader: Any) -> Iterator[bytes]:
    while chunk := reader.read(1 << 16):
        yield chunk


def _lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, Any, str]]:
    """JSON Lines: one message a line, blank lines skipped; a line that is not JSON is that position's
    problem, and the next line is read as usual."""
    position, carry, too_long = 0, b"", False
    for chunk in _then_newline(chunks):
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for raw in lines:
            if too_long:  # the end of a line already reported
                too_long = False
                continue
            if raw.strip():
                yield (position, *_parsed(raw))
                position += 1
        if len(carry) > MAX_MESSAGE_BYTES:  # report it now, skip the rest of that line
            yield position, None, _parsed(carry)[1]
            position, carry, too_long = position + 1, b"", True


def _then_newline(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield from chunks
    yield b"\n"


def _parsed(raw: bytes) -> tuple[Any, str]:
    if len(raw) > MAX_MESSAGE_BYTES:
        return None, f"over {MAX_MESSAGE_BYTES // 1000:,} KB of JSON; one message must fit in a bulk request"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start} of the line)"
    value, problems = kustomer._given_body(text)
    return value, problems[0].removeprefix("body: ") if problems else ""


def _array_items(chunks: Iterator[bytes], name: str) -> Iterator[tuple[int, Any, str]]:
    """The items of one JSON array, read piece by piece: memory holds about one message at a time.
    A flaw in the array leaves the rest unreadable, so it refuses the whole file."""
    decode = codecs.getincrementaldecoder("utf-8")().decode
    decoder = json.JSONDecoder(parse_constant=kustomer._not_json_constant, object_pairs_hook=kustomer._once_each)
    buffer, at, eof, position = "", 0, False, 0

    def fill() -> None:
        nonlocal buffer, at, eof
        chunk = next(chunks, None)
        eof = chunk is None
        buffer, at = buffer[at:] + decode(chunk or b"", final=eof), 0

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

    if next_char() != "[":
        raise refuse("it is neither JSON Lines (one message a line) nor one JSON array of messages")
    at += 1
    if next_char() == "]":
        return
    while True:
        next_char()
        try:
            value, end = decoder.raw_decode(buffer, at)
            if end == len(buffer) and not eof:
                raise ValueError("a number may go on in the next piece")
        except ValueError as exc:
            if not eof and len(buffer) - at <= 2 * MAX_MESSAGE_BYTES:
                fill()
                continue
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise refuse(f"the JSON array is not strict JSON at messages[{position}] ({why})") from None
        yield position, value, ""
        position += 1
        at = end
        separator = next_char()
        at += 1
        if separator == "]":
            return
        if separator != ",":
            raise refuse(f"the JSON array has no ',' or ']' after messages[{position - 1}]")


def _write(key: str, file: Any) -> dict[str, str]:
    """Upload a temporary file as a stream (wmill takes an open file, read in 50 KB pieces)."""
    file.flush()
    with open(file.name, "rb") as reader:
        written: dict[str, str] = dict(wmill.write_s3_file({"s3": key}, reader))
    return {k: v for k, v in written.items() if v is not None}
