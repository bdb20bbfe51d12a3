"""What the import flow's tests share: inputs, runs in a local workspace, and what the sandbox holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from workbench.chaos import Chaos, FlowCancelled
from workbench.local_flow import local_workspace, run_flow_job
from workbench.paths import FLOWS, SCRIPTS
from workbench.sandbox import Sandbox
from workbench.windmill_storage import WindmillStorage
from workbench.worker import JobResult
from workbench.workspace import Workspace

FLOW = FLOWS / "import_messages.flow"
TEMPTING = ["$WM_TOKEN", "$var:u/admin/kustomer_key", "$res:u/admin/kustomer", "NaN", "To Infinity and beyond"]
SECRET = "the-secret-value-of-the-variable"
# The steps' waits, shortened through the worker's WHITELIST_ENVS as a Windmill admin would: the
# sandbox's operations finish in 0.2 s, and a storage write on loopback takes milliseconds.
QUICK_STEPS = {
    "KUSTOMER_IMPORT_FIRST_LOOK_SECONDS": "0.4",
    "KUSTOMER_IMPORT_CLAIM_SETTLE_SECONDS": "0.2",
    "KUSTOMER_IMPORT_SETTLED_SECONDS": "0.5",
}


def messages(count: int, external: bool = False, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "channel": "chat",
            "app": "import",
            "preview": f"message {i}",
            **({"externalId": f"x-{i}"} if external else {}),
            **extra,
        }
        for i in range(count)
    ]


def auth(box: Sandbox) -> dict[str, str]:
    return {"apiKey": "sandbox-key-0123456789", "baseUrl": box.url}


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def read_jsonl(storage: WindmillStorage, file: dict[str, str]) -> list[Any]:
    return [json.loads(line) for line in storage.get(file["s3"]).splitlines() if line.strip()]


def quick_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHITELIST_ENVS", ",".join(QUICK_STEPS))
    for name, value in QUICK_STEPS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Workspace, WindmillStorage]]:
    quick_steps(monkeypatch)
    with local_workspace(cloud=True, variables={"u/admin/kustomer_key": SECRET}) as pair:
        yield pair


def run(ws: Workspace, **inputs: Any) -> JobResult:
    return run_flow_job(FLOW, inputs, ws)


def run_with(ws: Workspace, box: Sandbox, chaos: Chaos | None, **inputs: Any) -> JobResult | None:
    """One run with `chaos` played; None when it cancelled the run."""
    ws.chaos = chaos
    box.on_applied = chaos.on_kustomer if chaos else None
    try:
        return run(ws, **inputs)
    except FlowCancelled:
        return None
    finally:
        ws.chaos, box.on_applied = None, None


def bulk_bodies(box: Sandbox) -> list[list[dict[str, Any]]]:
    return [r["body"] for r in box.requests if r["path"] == "/v1/messages/bulk" and r["method"] == "POST"]


def report_of(job: JobResult) -> dict[str, Any]:
    """The report, from a result or from the error's extra."""
    assert isinstance(job.result, dict), job.result
    return job.result["extra"] if job.exit_code else job.result


def ids_by_external_id(box: Sandbox) -> dict[str, list[str]]:
    """Every message the sandbox holds, by externalId: more than one id is a duplicate."""
    found: dict[str, list[str]] = {}
    for message in box.messages:
        found.setdefault(message["attributes"].get("externalId"), []).append(message["id"])
    return found


class _StoredReader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self) -> _StoredReader:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, size: int = -1) -> bytes:
        taken, self.data = (self.data, b"") if size < 0 else (self.data[:size], self.data[size:])
        return taken


def load_step(monkeypatch: pytest.MonkeyPatch, name: str, stored: dict[str, bytes]) -> Any:
    """A flow step run in process: the deployed scripts stood in for by the real scripts, the workspace
    storage by `stored` (a missing key answers 404, as the stand-in does), the flow run by `run`."""
    import importlib.util
    import sys
    import types

    import bulk_create_messages
    import create_message
    import httpx
    import wait_for_bulk_results
    import wmill

    package = types.ModuleType("f.kustomer")
    package.bulk_create_messages = bulk_create_messages  # type: ignore[attr-defined]
    package.wait_for_bulk_results = wait_for_bulk_results  # type: ignore[attr-defined]
    package.create_message = create_message  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "f", types.ModuleType("f"))
    monkeypatch.setitem(sys.modules, "f.kustomer", package)
    monkeypatch.setenv("WM_ROOT_FLOW_JOB_ID", "run")

    def reader(obj: dict[str, str], *_: Any) -> _StoredReader:
        if obj["s3"] not in stored:
            request = httpx.Request("GET", "http://storage")
            raise httpx.HTTPStatusError("404", request=request, response=httpx.Response(404, request=request))
        return _StoredReader(stored[obj["s3"]])

    monkeypatch.setattr(wmill, "load_s3_file_reader", reader)

    def write(obj: dict[str, str], data: Any, *_: Any) -> None:  # bytes, or an open file as the report gives
        stored[obj["s3"]] = data if isinstance(data, bytes) else data.read()

    monkeypatch.setattr(wmill, "write_s3_file", write)

    class Windmill:  # the client's upload route, as the steps' `save` calls it
        workspace = "local"

        def post(self, endpoint: str, params: dict[str, str], content: bytes, **_: Any) -> httpx.Response:
            assert endpoint == "/w/local/job_helpers/upload_s3_file"
            stored[params["file_key"]] = content
            return httpx.Response(200, json={"file_key": params["file_key"]})

    monkeypatch.setattr(wmill, "Windmill", Windmill)
    monkeypatch.setattr(wmill, "delete_s3_object", lambda obj, *a: stored.pop(obj["s3"], None))
    store_spec = importlib.util.spec_from_file_location("import_store", SCRIPTS / "import_store.py")
    assert store_spec is not None
    assert store_spec.loader is not None
    package.import_store = importlib.util.module_from_spec(store_spec)  # type: ignore[attr-defined]
    store_spec.loader.exec_module(package.import_store)
    spec = importlib.util.spec_from_file_location(name, FLOW / f"{name}.inline_script.py")
    assert spec is not None
    assert spec.loader is not None
    step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step)
    return step


def stored_batch(messages: list[dict[str, Any]], state: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The storage of an import `imp` of one batch, with its lease held by the flow run `run`."""
    batch = {"positions": list(range(len(messages))), "messages": messages}
    return {
        "kustomer_import/imp/batch-0.json": json.dumps(batch).encode(),
        "kustomer_import/imp/state-0.json": json.dumps(state or {"state": "new"}).encode(),
        "kustomer_import/imp/lease.json": json.dumps({"run": "run", "at": 0}).encode(),
    }
