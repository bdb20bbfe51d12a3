"""Run a flow of this repository step by step, each step a worker-style job (workbench/worker.py).

Enough of Windmill's flow engine for this project's flows, with the rules its worker applies
(windmill-worker's worker_flow.rs; see shared/reference/windmill-flow-semantics.md), each stated in
tests/test_local_flow.py:

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

Expressions are plain paths only (flow_input.x, results.<step>.y, flow_input.iter.value.z); Windmill
evaluates them as JavaScript, which the local runner does not.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from workbench.worker import SCRIPTS, JobResult, run_job

_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


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


def run_flow_job(flow: Path, args: dict[str, Any]) -> JobResult:
    """A flow run as one job: its result, or the failed step's error, as Windmill shows them."""
    try:
        result = run_flow(flow, args)
    except FlowStepError as failure:
        error = failure.error if isinstance(failure.error, dict) else {"message": str(failure.error)}
        error = {**error, "step_id": error.get("step_id", failure.step)}
        return JobResult(1, error, json.dumps(error, separators=(",", ":"), default=str), "")
    return JobResult(0, result, json.dumps(result, separators=(",", ":"), default=str), "")


def run_flow(flow_dir: Path, inputs: dict[str, Any]) -> Any:
    """Run the flow in `flow_dir` (holding flow.yaml) with `inputs`, and return its result."""
    flow = yaml.safe_load((flow_dir / "flow.yaml").read_text())
    where = _Flow(flow_dir, f"f/kustomer/{flow_dir.name.removesuffix('.flow')}")
    return _run_modules(where, flow["value"]["modules"], dict(inputs), {})


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
    if value["type"] == "rawscript":
        if value.get("language") != "python3":
            raise FlowStepError(step, f"the local runner runs Python steps only, not {value.get('language')}")
        script = flow.folder / value["content"].removeprefix("!inline ")
        job = run_job(script, args, workspace_path=f"{flow.path}/{step}", step_id=step)
    elif value["type"] == "script":
        name = value["path"].rsplit("/", 1)[-1]
        job = run_job(SCRIPTS / f"{name}.py", args, workspace_path=value["path"], step_id=step)
    else:
        raise FlowStepError(step, f"the local runner does not run {value['type']} steps")
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

    def iteration(index: int) -> Any:
        nonlocal failed
        scope = {**flow_input, "iter": {"index": index, "value": items[index]}}
        try:
            return _run_modules(flow, value["modules"], scope, dict(results))
        except FlowStepError as failure:
            failed = True
            return {"error": failure.error if isinstance(failure.error, dict) else {"message": str(failure.error)}}

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
    root, *parts = expr.split(".")
    if not _PATH.fullmatch(expr) or root not in scope:
        known = ", ".join(scope)
        raise FlowStepError(step, f"the local runner evaluates plain paths from {known} only, not {expr!r}")
    value: Any = scope[root]
    for part in parts:
        value = value.get(part) if isinstance(value, dict) else None
    return value
