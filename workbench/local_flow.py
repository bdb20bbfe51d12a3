"""Run a flow of this repository step by step, each step a worker-style job (see local_run).

Enough of Windmill's flow engine for this project's flows: `rawscript` (Python, `!inline` files),
`script` steps by workspace path (f/<folder>/<name> runs scripts/kustomer/<name>.py), and
`forloopflow` (parallel with bounded parallelism, skip_failures), and a step's `sleep` before it
starts. Step inputs are `static` values or `javascript` expressions that are plain paths:
flow_input.x, results.<step>.y, flow_input.iter.value.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from workbench.worker import SCRIPTS, JobResult, run_job

_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class FlowStepError(Exception):
    """A step failed and the flow stops, as Windmill's does."""

    def __init__(self, step: str, error: Any) -> None:
        message = error.get("message", error) if isinstance(error, dict) else error
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.error = error


def run_flow_job(flow: Path, args: dict[str, Any]) -> JobResult:
    """A flow run as one job: its result, or the failed step's error, as Windmill shows them."""
    try:
        result = run_flow(flow, args)
    except FlowStepError as failure:
        error = failure.error if isinstance(failure.error, dict) else {"message": str(failure.error)}
        error = {**error, "step_id": failure.step}
        return JobResult(1, error, json.dumps(error, separators=(",", ":"), default=str), "")
    return JobResult(0, result, json.dumps(result, separators=(",", ":"), default=str), "")


def run_flow(flow_dir: Path, inputs: dict[str, Any]) -> Any:
    """Run the flow in `flow_dir` (holding flow.yaml) with `inputs`, and return its result."""
    flow = yaml.safe_load((flow_dir / "flow.yaml").read_text())
    return _run_modules(flow_dir, flow["value"]["modules"], dict(inputs), {})


def _run_modules(
    flow_dir: Path, modules: list[dict[str, Any]], flow_input: dict[str, Any], results: dict[str, Any]
) -> Any:
    result: Any = None
    for module in modules:
        result = _run_module(flow_dir, module, flow_input, results)
        results[module["id"]] = result
    return result


def _run_module(flow_dir: Path, module: dict[str, Any], flow_input: dict[str, Any], results: dict[str, Any]) -> Any:
    step, value = module["id"], module["value"]
    if "sleep" in module:  # Windmill waits this long before the step starts
        time.sleep(float(_evaluate(module["sleep"], flow_input, results) or 0))
    if value["type"] == "forloopflow":
        items = _evaluate(value["iterator"], flow_input, results)
        if not isinstance(items, list):
            raise FlowStepError(step, f"the iterator gave {type(items).__name__}, not a list")

        def iteration(index: int) -> Any:
            scope = {**flow_input, "iter": {"index": index, "value": items[index]}}
            try:
                return _run_modules(flow_dir, value["modules"], scope, dict(results))
            except FlowStepError as failure:
                if value.get("skip_failures"):
                    return {"error": failure.error}
                raise

        workers = (value.get("parallelism") or len(items) or 1) if value.get("parallel") else 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(iteration, range(len(items))))
    args = {name: _evaluate(t, flow_input, results) for name, t in value.get("input_transforms", {}).items()}
    if value["type"] == "rawscript":
        if value.get("language") != "python3":
            raise FlowStepError(step, f"the local runner runs Python steps only, not {value.get('language')}")
        script = flow_dir / value["content"].removeprefix("!inline ")
        job = run_job(script, args, workspace_path=f"f/flow/{step}", step_id=step)
    elif value["type"] == "script":
        name = value["path"].rsplit("/", 1)[-1]
        job = run_job(SCRIPTS / f"{name}.py", args, workspace_path=value["path"], step_id=step)
    else:
        raise FlowStepError(step, f"the local runner does not run {value['type']} steps")
    if job.exit_code != 0:
        raise FlowStepError(step, job.result)
    return job.result


def _evaluate(transform: dict[str, Any], flow_input: dict[str, Any], results: dict[str, Any]) -> Any:
    if transform["type"] == "static":
        return transform.get("value")
    expr = transform["expr"].strip()
    if not _PATH.fullmatch(expr):
        raise ValueError(f"the local runner evaluates plain paths only, not {expr!r}")
    root, *parts = expr.split(".")
    value: Any = {"flow_input": flow_input, "results": results}[root]
    for part in parts:
        value = value.get(part) if isinstance(value, dict) else None
    return value
