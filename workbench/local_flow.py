"""Run a flow of this repository step by step, each step a worker-style job (workbench/worker.py).

Enough of Windmill's flow engine for this project's flows, with the rules its worker applies
(windmill-labs/windmill: backend/windmill-worker/src/worker_flow.rs, js_eval.rs and
windmill-common's flows.rs), each stated in
tests/test_windmill_fidelity.py:

- `sleep` runs *after* its step, before the next step of the same list; after the last step of a
  list Windmill adds a virtual identity step, so a loop iteration (or the flow) completes only once
  it has slept. Nothing ever delays the first step. A step that fails stops its list: no sleep.
- a sleep expression sees `flow_input` (with `iter` inside a loop), `result` and `previous_result`
  (both the step just run), not `results`; its value is whole seconds (an int), or seconds as a
  float; a negative float is no delay; a negative int, a string, null or an object fails the list.
- step types: `rawscript` (Python, `!inline` files, run at `<flow path>/<step id>`), `script` by
  workspace path (f/<folder>/<name> runs scripts/kustomer/<name>.py), `identity` (passes the previous
  result on), and `forloopflow` (in order or parallel with bounded `parallelism`, an int or a static
  or javascript input transform; `skip_failures` keeps a failed iteration's `{"error": ...}` in the
  results; without it the loop runs every iteration, then fails with the list of all their results).
- inside a loop, `flow_input` is the flow's input plus `iter: {index, value}`.

- expressions: `flow_input.NAME` and `results.ID` (with `[i]` and `.a.b` after it) are read directly;
  any other expression runs in QuickJS (js_eval.rs), with the whole flow input loaded into it when it
  names `flow_input`, under Windmill's 32 MB heap and 20 s limits: an expression Windmill could not
  evaluate fails here too.
- what a workspace stores and refuses (workbench/workspace.py): every job's arguments and result are
  counted, a loop iteration's arguments being the whole flow input plus `iter`; under Cloud's rules
  an iteration or flow whose result is 3 MiB or more fails.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import quickjs
import yaml

from workbench.paths import SCRIPTS, workspace_scripts
from workbench.windmill_storage import WindmillStorage
from workbench.worker import JobResult, run_job
from workbench.workspace import CLOUD_JOB_RESULT_BYTES, Workspace

# js_eval.rs reads these without QuickJS: `flow_input.NAME` (try_exact_property_access), and
# `results.ID`, `results.ID[i]` and `results.ID.a.b` (RE_FULL: the API returns only that part of the result).
_FLOW_INPUT_KEY = re.compile(r"flow_input\.([A-Za-z_]\w*)")
_RESULTS_PATH = re.compile(r"results\??\.([A-Za-z_0-9]+)(?:\[(\d+)\])?((?:\.[A-Za-z_0-9]+)+)?")
QUICKJS_MEMORY = 32 * 1024 * 1024  # QUICKJS_MEMORY_LIMIT
QUICKJS_SECONDS = 20  # EVAL_TIMEOUT_MS


class FlowStepError(Exception):
    """A step failed and its list stops, as Windmill's does."""

    def __init__(self, step: str, error: Any) -> None:
        message = error.get("message", error) if isinstance(error, dict) else error
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.error = error


class _Flow(NamedTuple):
    folder: Path  # the .flow folder, where `!inline` files live
    path: str  # its workspace path, e.g. f/kustomer/import_messages
    workspace: Workspace
    job: str  # the flow job's id: WM_ROOT_FLOW_JOB_ID of every job in it
    log: Callable[[str], None] | None  # each step's log lines as they come, and the loops' progress


@contextlib.contextmanager
def local_workspace(
    cloud: bool = True, storage_folder: Path | None = None, **store: Any
) -> Iterator[tuple[Workspace, WindmillStorage]]:
    """A workspace with its object storage and script loader served on loopback; the storage's objects
    in `storage_folder`, kept after it, or else in a temporary folder."""
    workspace = Workspace(cloud=cloud, **store)
    scripts = {f"f/kustomer/{name}": SCRIPTS / f"{name}.py" for name in workspace_scripts()}
    with WindmillStorage(workspace, scripts, storage_folder) as storage:
        yield workspace, storage


def run_flow_job(
    flow: Path, args: dict[str, Any], workspace: Workspace | None = None, log: Callable[[str], None] | None = None
) -> JobResult:
    """A flow run as one job: its result, or the failed step's error, as Windmill shows them."""
    try:
        result = run_flow(flow, args, workspace, log)
    except FlowStepError as failure:
        error = failure.error if isinstance(failure.error, dict) else {"message": str(failure.error)}
        error = {**error, "step_id": error.get("step_id", failure.step)}
        return JobResult(1, error, json.dumps(error, separators=(",", ":"), default=str), "")
    return JobResult(0, result, json.dumps(result, separators=(",", ":"), default=str), "")


def run_flow(
    flow_dir: Path,
    inputs: dict[str, Any],
    workspace: Workspace | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Run the flow in `flow_dir` (holding flow.yaml) with `inputs`, and return its result; without a
    workspace, in a fresh one under Cloud's rules, with its storage. `log` gets every step's log lines
    as they are written, prefixed with the step (and iteration), and a progress line per iteration."""
    if workspace is None:
        with local_workspace() as (fresh, _):
            return run_flow(flow_dir, inputs, fresh, log)
    flow = yaml.safe_load((flow_dir / "flow.yaml").read_text())
    path = f"f/kustomer/{flow_dir.name.removesuffix('.flow')}"
    where = _Flow(flow_dir, path, workspace, str(uuid.uuid4()), log)
    workspace.flow_runs[where.job] = True  # running: what the jobs API answers about it
    try:
        result = _run_modules(where, flow["value"]["modules"], dict(inputs), {})
        _stored(where, step="flow", args=inputs, result=result)
    finally:
        workspace.flow_runs[where.job] = False  # completed, cancelled too
    return result


def _stored(flow: _Flow, step: str, args: Any, result: Any) -> None:
    """A flow or loop iteration job completes: the workspace stores its arguments and result, and on
    Cloud refuses a result of 3 MiB or more (windmill-queue jobs.rs, check_result_size)."""
    size = len(json.dumps(result, separators=(",", ":"), default=str).encode())
    flow.workspace.record(args, size)
    if flow.workspace.cloud and size >= CLOUD_JOB_RESULT_BYTES:
        message = f"Result of job is too large: {size // (1024 * 1024)} MB, the limit is 3 MB on the cloud"
        raise FlowStepError(step, {"message": message, "name": "ResultTooLarge"})


def _run_modules(
    flow: _Flow, modules: list[dict[str, Any]], flow_input: dict[str, Any], results: dict[str, Any]
) -> Any:
    result: Any = flow_input  # what an identity step at the top passes on, as Windmill's previous_result
    for module in modules:
        result = _run_module(flow, module, flow_input, results, result)
        results[module["id"]] = result
        if "sleep" in module:  # after the step: before the next one, or before the list completes
            time.sleep(_sleep_seconds(module, {"flow_input": flow_input, "result": result, "previous_result": result}))
    return result


def _run_module(
    flow: _Flow, module: dict[str, Any], flow_input: dict[str, Any], results: dict[str, Any], previous: Any
) -> Any:
    step, value = module["id"], module["value"]
    scope = {"flow_input": flow_input, "results": results}
    if value["type"] == "identity":
        return previous
    if value["type"] == "forloopflow":
        return _run_loop(flow, step, value, flow_input, results)
    args = {name: _evaluate(step, t, scope) for name, t in value.get("input_transforms", {}).items()}
    iteration = flow_input.get("iter", {}).get("index") if isinstance(flow_input.get("iter"), dict) else None
    label = f"{step} #{iteration}" if iteration is not None else step
    log = flow.log

    def on_log(line: str) -> None:
        if log:
            log(f"[{label}] {line}")

    if value["type"] == "rawscript":
        if value.get("language") != "python3":
            raise FlowStepError(step, f"the local runner runs Python steps only, not {value.get('language')}")
        script, path = flow.folder / value["content"].removeprefix("!inline "), f"{flow.path}/{step}"
    elif value["type"] == "script":
        script, path = SCRIPTS / f"{value['path'].rsplit('/', 1)[-1]}.py", value["path"]
    else:
        raise FlowStepError(step, f"the local runner does not run {value['type']} steps")
    job = run_job(script, args, path, step_id=step, workspace=flow.workspace, root_job=flow.job, on_log=on_log)
    if job.exit_code != 0:
        raise FlowStepError(step, job.result)
    return job.result


def _run_loop(
    flow: _Flow, step: str, value: dict[str, Any], flow_input: dict[str, Any], results: dict[str, Any]
) -> Any:
    items = _evaluate(step, value["iterator"], {"flow_input": flow_input, "results": results})
    if not isinstance(items, list):
        raise FlowStepError(step, f"the iterator gave {type(items).__name__}, not a list")
    failed = False
    progress = _Progress(flow, step, len(items))

    def iteration(index: int) -> Any:
        nonlocal failed
        scope = {**flow_input, "iter": {"index": index, "value": items[index]}}  # the iteration job's args
        try:
            outcome = _run_modules(flow, value["modules"], scope, dict(results))
            _stored(flow, step, scope, outcome)
        except FlowStepError as failure:
            failed = True
            outcome = {"error": failure.error if isinstance(failure.error, dict) else {"message": str(failure.error)}}
        progress.done(outcome)
        return outcome

    if value.get("parallel"):
        with ThreadPoolExecutor(max_workers=_parallelism(step, value, flow_input, results, len(items))) as pool:
            outcomes = list(pool.map(iteration, range(len(items))))
    else:
        outcomes = []
        for index in range(len(items)):
            outcomes.append(iteration(index))
            if failed and not value.get("skip_failures"):
                break  # a loop in order stops at the failing iteration
    if failed and not value.get("skip_failures"):
        raise FlowStepError(step, outcomes)  # Windmill's loop error: the results of its iterations
    return outcomes


class _Progress:
    """One line per finished iteration: n of m, what was created so far, the pace, the time left."""

    def __init__(self, flow: _Flow, step: str, total: int) -> None:
        self.flow, self.step, self.total = flow, step, total
        self.count, self.created, self.started = 0, 0, time.monotonic()
        self.lock = threading.Lock()

    def done(self, outcome: Any) -> None:
        if not self.flow.log:
            return
        with self.lock:
            self.count += 1
            created = outcome.get("created") if isinstance(outcome, dict) else None
            self.created += created if isinstance(created, int) else 0
            elapsed = time.monotonic() - self.started
            left = elapsed / self.count * (self.total - self.count)
            line = f"[{self.step}] {self.count} of {self.total} done in {elapsed:.0f} s, about {left:.0f} s left"
            if self.created:
                created = f"{self.created} message{'' if self.created == 1 else 's'}"
                line += f"; {created} created so far ({self.created / max(elapsed, 1e-3) * 60:.0f}/min)"
            self.flow.log(line)


def _parallelism(
    step: str, value: dict[str, Any], flow_input: dict[str, Any], results: dict[str, Any], count: int
) -> int:
    given = value.get("parallelism")
    if isinstance(given, dict):  # an input transform, static or javascript
        given = _evaluate(step, given, {"flow_input": flow_input, "results": results})
    return max(1, int(given)) if isinstance(given, int) and given > 0 else max(1, count)


def _sleep_seconds(module: dict[str, Any], scope: dict[str, Any]) -> float:
    """Windmill's reading of a sleep value: an int is seconds, a float seconds as milliseconds (a
    negative float is no delay); anything else, or a negative int, fails the list."""
    value = _evaluate(module["id"], module["sleep"], scope)
    if isinstance(value, float):
        return max(0.0, round(value * 1000) / 1000)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise FlowStepError(
        module["id"], {"message": f"Expected an integer, found: {json.dumps(value)}", "name": "SleepError"}
    )


def _evaluate(step: str, transform: dict[str, Any], scope: dict[str, Any]) -> Any:
    if transform["type"] == "static":
        return transform.get("value")
    expr = transform["expr"].strip()
    if expr in ("result", "previous_result") and expr in scope:  # the transform context, as given
        return scope[expr]
    key = _FLOW_INPUT_KEY.fullmatch(expr)
    if key and isinstance(scope.get("flow_input"), dict) and key[1] in scope["flow_input"]:
        return scope["flow_input"][key[1]]
    path = _RESULTS_PATH.fullmatch(expr)
    if path and "results" in scope:
        value: Any = scope["results"].get(path[1])  # a step not run is null, not an error
        parts: list[str | int] = [int(path[2])] if path[2] else []
        parts += path[3].strip(".").split(".") if path[3] else []
        for part in parts:
            if isinstance(part, int):
                value = value[part] if isinstance(value, list) and part < len(value) else None
            else:
                value = value.get(part) if isinstance(value, dict) else None
        return value
    return _quickjs(step, expr, scope)


def _quickjs(step: str, expr: str, scope: dict[str, Any]) -> Any:
    """Any other expression, as Windmill evaluates it: in QuickJS, with what it names loaded into it."""
    context = quickjs.Context()
    context.set_memory_limit(QUICKJS_MEMORY)
    context.set_time_limit(QUICKJS_SECONDS)
    names = []
    for name, value in scope.items():
        if not re.search(rf"\b{name}\b", expr):
            continue
        if name == "results":  # fetched one by one, only those the expression names
            value = {k: v for k, v in value.items() if re.search(rf"\bresults\.{re.escape(k)}\b", expr)}
        context.set(f"__{name}", json.dumps(value, default=str))
        names.append(f"const {name} = JSON.parse(__{name});")
    try:
        text = context.eval("(() => {" + " ".join(names) + f" return JSON.stringify(({expr}) ?? null); }})()")
    except quickjs.JSException as exc:
        message = f"Error during isolated evaluation of `{expr}`: {exc or 'out of memory (32 MB)'}"
        raise FlowStepError(step, {"message": message, "name": "InternalErr"}) from None
    return json.loads(text)
