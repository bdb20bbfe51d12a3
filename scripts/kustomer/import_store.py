"""Import store: what every step of the flow f/kustomer/import_messages reads and writes in the
workspace storage, tried again when the storage fails now and then.

A workspace script without `main`, which Windmill deploys as a module (its parser calls it a `lib`):
the flow's steps import it as `from f.kustomer import import_store`, the way they import the scripts,
so the import's layout in the storage has one home. It is never run on its own.

An import is a folder of the workspace storage, named after its input and its org (prepare):
  manifest.json       what prepare made of the input; once every outcome is known, the final report
  lease.json          the flow run that works on the import now
  batch-<n>.json      the messages of batch n (a copy of the input, deleted once its outcome is known)
  state-<n>.json      what was done with batch n, written *before* each step that changes Kustomer:
                      new, sending (the request may have gone out), accepted (a bulk operation id),
                      done (every message's outcome); kept until the import is finished
  report.jsonl, retry.jsonl, unknown.jsonl, invalid.jsonl   the report files
"""

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import wmill

__all__ = [
    "SETTLED", "STORE_TRIES", "ImportStorageError", "batch_key", "delete", "import_folder", "load", "load_json",
    "save", "save_json", "state_key", "tagged", "tried", "windmill",
]  # fmt: skip

# Seconds after a request that may have gone out before "not found by its externalId" counts as "not
# created": Kustomer's guide has a bulk operation done in seconds, and one still queued this long after
# its request could be created twice. A worker may set it (WHITELIST_ENVS); the workbench's tests do.
SETTLED = float(os.environ.get("KUSTOMER_IMPORT_SETTLED_SECONDS") or 900.0)
STORE_TRIES = 5  # tries of one storage read or write, 0.5 s then doubling between them: 7.5 s in all


class ImportStorageError(Exception):
    """The workspace storage kept failing; the import can be run again once it answers."""


def import_folder(import_id: str) -> str:
    return f"kustomer_import/{import_id}"


def batch_key(import_id: str, batch: int) -> str:
    return f"{import_folder(import_id)}/batch-{batch}.json"


def state_key(import_id: str, batch: int) -> str:
    return f"{import_folder(import_id)}/state-{batch}.json"


def load(key: str) -> bytes | None:
    """An object of the workspace storage, or None when there is none (the storage answers 404). Any
    other failure is tried again: a read changes nothing."""

    def once() -> bytes | None:
        try:
            with wmill.load_s3_file_reader({"s3": key}) as reader:
                data: bytes = reader.read()
                return data
        except httpx.HTTPStatusError as error:
            if error.response.status_code == 404:
                return None
            raise

    found: bytes | None = tried(once, f"read {key}")
    return found


def load_json(key: str) -> Any:
    data = load(key)
    return None if data is None else json.loads(data)


def save(key: str, data: bytes) -> None:
    """Write an object whole; tried again on failure, which is safe: the same bytes under the same key.
    It is `wmill.write_s3_file`'s request (its route, query and body), sent over the wmill client's own
    kept-open connection: `write_s3_file` makes a new httpx client, with a new TLS context, each time."""

    def once() -> None:
        store = windmill()
        answer = store.post(
            f"/w/{store.workspace}/job_helpers/upload_s3_file",
            params={"file_key": key},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if answer.json().get("file_key") != key:
            raise ImportStorageError(f"the storage did not confirm {key}")

    tried(once, f"write {key}")


_WINDMILL: list[Any] = []  # one wmill client for the job, from any thread
_WINDMILL_LOCK = threading.Lock()


def windmill() -> Any:
    """The job's wmill client (what wmill's own functions use), made once whatever the threads."""
    with _WINDMILL_LOCK:
        if not _WINDMILL:
            _WINDMILL.append(wmill.Windmill())  # type: ignore[no-untyped-call]
        return _WINDMILL[0]


def save_json(key: str, value: Any) -> None:
    save(key, json.dumps(value, separators=(",", ":")).encode())


def delete(key: str) -> None:
    tried(lambda: wmill.delete_s3_object({"s3": key}), f"delete {key}")


def tried(call: Callable[[], Any], what: str) -> Any:
    """`call()`, tried again after a failure, up to STORE_TRIES times; then ImportStorageError."""
    for attempt in range(STORE_TRIES):
        try:
            return call()
        except Exception as error:
            if attempt == STORE_TRIES - 1:
                raise ImportStorageError(
                    f"The workspace storage failed {STORE_TRIES} times to {what} ({type(error).__name__}). What was "
                    "done so far is kept: run the import again once the storage answers, and it goes on from there."
                ) from None
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def tagged(positions: list[int], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch's messages as sent: each with its `_clientRef`, `position-<i>` when it was given none."""
    return [
        m if "_clientRef" in m else {**m, "_clientRef": f"position-{p}"}
        for p, m in zip(positions, messages, strict=True)
    ]
