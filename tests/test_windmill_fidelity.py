"""The local flow runner applies Windmill's flow rules, each stated here as its own test (the worker's
worker_flow.rs, js_eval.rs, windmill-queue's jobs.rs and windmill-common's flows.rs, in
windmill-labs/windmill)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from workbench.local_flow import FlowStepError, local_workspace, run_flow

PROBE = """
import time


def main(label: str, fail: bool = False, wait: float = 0):
    if fail:
        raise RuntimeError(f"{label} failed")
    return {"label": label, "at": time.time(), "wait": wait}
"""


NO_SLEEP = object()


def step(label: str, sleep: Any = NO_SLEEP, **args: Any) -> dict[str, Any]:
    module: dict[str, Any] = {
        "id": label,
        "value": {
            "type": "rawscript",
            "language": "python3",
            "content": "!inline probe.py",
            "input_transforms": {"label": {"type": "static", "value": label}}
            | {k: {"type": "static", "value": v} for k, v in args.items()},
        },
    }
    if sleep is not NO_SLEEP:
        is_transform = isinstance(sleep, dict) and "type" in sleep
        module["sleep"] = sleep if is_transform else {"type": "static", "value": sleep}
    return module


def flow(tmp_path: Path, *modules: dict[str, Any]) -> Path:
    folder = tmp_path / "probe.flow"
    folder.mkdir(exist_ok=True)
    (folder / "probe.py").write_text(PROBE)
    (folder / "flow.yaml").write_text(yaml.safe_dump({"summary": "probe", "value": {"modules": list(modules)}}))
    return folder


def loop(*body: dict[str, Any], items: int = 2, parallel: bool = True, skip_failures: bool = True, **extra: Any) -> Any:
    value = {
        "type": "forloopflow",
        "iterator": {"type": "static", "value": list(range(items))},
        "parallel": parallel,
        "skip_failures": skip_failures,
        "modules": list(body),
        **extra,
    }
    return {"id": "loop", "value": value}


def test_a_sleep_runs_after_its_step_before_the_next_one(tmp_path: Path) -> None:
    second = step("b")
    second["value"]["input_transforms"]["label"] = {"type": "javascript", "expr": "results.a.at"}
    result = run_flow(flow(tmp_path, step("a", sleep=1), second), {})
    assert result["at"] - result["label"] >= 1  # b started at least 1 s after a ran


def test_the_first_step_starts_at_once_even_with_a_sleep_on_it(tmp_path: Path) -> None:
    started = time.time()
    result = run_flow(flow(tmp_path, step("a", sleep=2)), {})
    assert result["at"] - started < 1.5  # the sleep came after the step ...
    assert time.time() - started >= 2  # ... and the flow completed only once it had slept


def test_a_sleep_on_the_last_step_of_a_loop_body_holds_the_iterations_slot(tmp_path: Path) -> None:
    results = run_flow(flow(tmp_path, loop(step("a", sleep=1), parallelism=1)), {})
    assert results[1]["at"] - results[0]["at"] >= 1


def test_a_failed_step_stops_its_list_without_its_sleep(tmp_path: Path) -> None:
    started = time.time()
    with pytest.raises(FlowStepError) as failure:
        run_flow(flow(tmp_path, step("a", sleep=5, fail=True), step("b")), {})
    assert time.time() - started < 3
    assert failure.value.step == "a"
    assert failure.value.error["step_id"] == "a"  # the worker's wrapper adds it from WM_FLOW_STEP_ID


def test_a_sleep_expression_sees_result_and_previous_result_not_results(tmp_path: Path) -> None:
    started = time.time()
    after = run_flow(flow(tmp_path, step("a", {"type": "javascript", "expr": "result.wait"}, wait=1), step("b")), {})
    assert after["at"] - started >= 1
    with pytest.raises(FlowStepError, match="'results' is not defined"):
        run_flow(flow(tmp_path, step("a", {"type": "javascript", "expr": "results.a.wait"}, wait=1), step("b")), {})


@pytest.mark.parametrize(("value", "seconds"), [(1, 1.0), (0.5, 0.5), (-2.5, 0.0), (0, 0.0)])
def test_sleep_values_windmill_accepts(tmp_path: Path, value: float, seconds: float) -> None:
    started = time.time()
    first_at = run_flow(flow(tmp_path, step("a", sleep=value), step("b")), {})["at"]
    assert seconds <= first_at - started < seconds + 1.5


@pytest.mark.parametrize("value", [-1, "5", None, {"seconds": 1}])
def test_sleep_values_windmill_refuses_fail_the_list(tmp_path: Path, value: Any) -> None:
    with pytest.raises(FlowStepError, match="Expected an integer"):
        run_flow(flow(tmp_path, step("a", sleep=value), step("b")), {})


def test_an_identity_step_passes_the_previous_result_on(tmp_path: Path) -> None:
    result = run_flow(flow(tmp_path, step("a"), {"id": "same", "value": {"type": "identity"}}), {})
    assert result["label"] == "a"


def test_loop_iterations_see_the_flow_input_plus_iter(tmp_path: Path) -> None:
    body = step("a")
    body["value"]["input_transforms"]["label"] = {"type": "javascript", "expr": "flow_input.iter.value"}
    results = run_flow(flow(tmp_path, loop(body, items=3)), {"other": 1})
    assert [r["label"] for r in results] == [0, 1, 2]


def test_parallelism_may_be_a_static_input_transform(tmp_path: Path) -> None:
    looped = loop(step("a", sleep=1), items=2, parallelism={"type": "static", "value": 2})
    results = run_flow(flow(tmp_path, looped), {})
    assert abs(results[1]["at"] - results[0]["at"]) < 0.9  # both at once: two slots


def test_a_loop_without_skip_failures_runs_every_iteration_then_fails_with_all_their_results(tmp_path: Path) -> None:
    body = step("a")
    body["value"]["input_transforms"]["fail"] = {"type": "javascript", "expr": "flow_input.iter.value"}
    looped = loop(body, items=3, skip_failures=False)
    looped["value"]["iterator"]["value"] = [False, True, False]
    with pytest.raises(FlowStepError) as failure:
        run_flow(flow(tmp_path, looped), {})
    outcomes = failure.value.error
    assert [("error" in o) for o in outcomes] == [False, True, False]
    assert outcomes[1]["error"]["step_id"] == "a"


# ---- what a workspace stores and refuses (section 7 of the semantics notes) ----

BIG = """
def main(size: int = 0, label: str = ""):
    return "x" * size
"""


def big_flow(tmp_path: Path, *modules: dict[str, Any]) -> Path:
    folder = flow(tmp_path, *modules)
    (folder / "probe.py").write_text(BIG)
    return folder


def test_on_cloud_a_script_result_over_2_mib_fails_the_step_with_windmills_message(tmp_path: Path) -> None:
    """windmill-worker common.rs check_result_too_big: CLOUD_HOSTED and over MAX_RESULT_SIZE, 2,097,152
    bytes; the result "x" * n is n + 2 bytes of JSON."""
    with pytest.raises(FlowStepError, match="Result is too large for the cloud app") as failure:
        run_flow(big_flow(tmp_path, step("a", size=2_097_151)), {})
    assert failure.value.step == "a"
    assert "activate shared folder" in str(failure.value)
    assert len(run_flow(big_flow(tmp_path, step("a", size=2_097_150)), {})) == 2_097_150  # exactly the limit
    with local_workspace(cloud=False) as (self_hosted, _):
        assert len(run_flow(big_flow(tmp_path, step("a", size=2_097_151)), {}, self_hosted)) == 2_097_151


def test_every_iteration_stores_the_whole_flow_input_again(tmp_path: Path) -> None:
    """worker_flow.rs: each iteration's args are the parent flow's args plus `iter`."""
    inputs = {"payload": "p" * 100_000}
    with local_workspace() as (workspace, _):
        run_flow(big_flow(tmp_path, loop(step("a"), items=10)), inputs, workspace)
    # 10 iterations and 10 steps inside them, each with its arguments; the flow itself once
    assert 10 * 100_000 <= workspace.stored_bytes <= 12 * 100_000


def test_an_expression_beyond_a_plain_path_runs_in_quickjs_with_the_flow_input_loaded(tmp_path: Path) -> None:
    """js_eval.rs: flow_input.NAME is read directly; anything else is JavaScript, under a 32 MB heap."""
    computed = step("a")
    computed["value"]["input_transforms"]["label"] = {"type": "javascript", "expr": "flow_input.items.slice(1, 3)"}
    (tmp_path / "js").mkdir()
    folder = flow(tmp_path / "js", computed)
    (folder / "probe.py").write_text("def main(label):\n    return label\n")
    assert run_flow(folder, {"items": [1, 2, 3, 4]}) == [2, 3]
    huge = {"items": [{"text": "t" * 1000, "n": i} for i in range(20_000)]}  # 20 MB: past QuickJS's heap
    with pytest.raises(FlowStepError, match="Error during isolated evaluation"):
        run_flow(folder, huge)
    direct = step("a")
    direct["value"]["input_transforms"]["label"] = {"type": "javascript", "expr": "flow_input.items"}
    (tmp_path / "direct").mkdir()
    plain = flow(tmp_path / "direct", direct)
    (plain / "probe.py").write_text("def main(label):\n    return len(label)\n")
    assert run_flow(plain, huge) == 20_000  # read directly: no QuickJS, no heap limit


def test_on_cloud_a_flow_whose_result_is_3_mib_or_more_fails(tmp_path: Path) -> None:
    """windmill-queue jobs.rs check_result_size, for every completed job: a loop of two 1.9 MB results
    is a 3.8 MB flow result. Each step alone is under the 2 MB script limit."""
    looped = big_flow(tmp_path, loop(step("a", size=1_900_000), items=2))
    with pytest.raises(FlowStepError, match="too large"):
        run_flow(looped, {})
    assert len(run_flow(big_flow(tmp_path, loop(step("a", size=1_900_000), items=1)), {})) == 1


def test_a_job_past_its_timeout_is_killed_with_the_workers_error(tmp_path: Path) -> None:
    """The worker kills a job at its timeout ("job process terminated due to timeout"); on Cloud the
    timeout is at most 900 s (DEFAULT_CLOUD_TIMEOUT)."""
    from workbench.worker import run_job

    probe = tmp_path / "slow.py"
    probe.write_text("import time\n\n\ndef main():\n    time.sleep(30)\n")
    started = time.monotonic()
    job = run_job(probe, {}, timeout=1)
    assert time.monotonic() - started < 10
    assert job.exit_code == 1
    assert job.result["message"].startswith("job process terminated due to timeout")


def test_a_path_into_a_steps_result_is_read_directly_and_anything_more_in_quickjs(tmp_path: Path) -> None:
    """js_eval.rs RE_FULL: `results.ID`, `results.ID[i]`, `results.ID.a.b` are fetched by the API as
    that part only; `results.ID.a[1]` or `results.ID.a.b + 1` is JavaScript, with the whole result
    loaded into QuickJS."""
    folder = tmp_path / "paths.flow"
    folder.mkdir()
    (folder / "make.py").write_text(
        "def main():\n    return {'inner': {'n': 7}, 'items': [{'x': 1}, {'x': 2}], 'bulk': ['t' * 1000] * 40_000}\n"
    )
    (folder / "echo.py").write_text("def main(value):\n    return value\n")

    def echo(expr: str) -> dict[str, Any]:
        return {
            "id": "echo",
            "value": {
                "type": "rawscript",
                "language": "python3",
                "content": "!inline echo.py",
                "input_transforms": {"value": {"type": "javascript", "expr": expr}},
            },
        }

    make = {"id": "make", "value": {"type": "rawscript", "language": "python3", "content": "!inline make.py"}}
    for expr, expected in (
        ("results.make.inner.n", 7),
        ("results.make.items", [{"x": 1}, {"x": 2}]),
        ("results.gone.x", None),
    ):
        (folder / "flow.yaml").write_text(yaml.safe_dump({"summary": "p", "value": {"modules": [make, echo(expr)]}}))
        with local_workspace(cloud=False) as (workspace, _):  # the 40 MB result is fine self-hosted
            assert run_flow(folder, {}, workspace) == expected, expr
    for expr in ("results.make.inner.n + 1", "results.make.items[1].x"):
        (folder / "flow.yaml").write_text(yaml.safe_dump({"summary": "p", "value": {"modules": [make, echo(expr)]}}))
        with local_workspace(cloud=False) as (workspace, _), pytest.raises(FlowStepError, match="out of memory"):
            run_flow(folder, {}, workspace)


def test_the_wrapper_imports_the_loader_only_for_a_script_with_a_relative_import(tmp_path: Path) -> None:
    """python_executor.rs: the loader is imported when the script's text matches
    `(import|from)\\s(((u|f)\\.)|\\.)`; then `from f.kustomer import x` is fetched from the workspace."""
    from workbench.worker import run_job

    plain = tmp_path / "plain.py"
    plain.write_text("import sys\n\n\ndef main():\n    return 'loader' in sys.modules\n")
    relative = tmp_path / "relative.py"
    relative.write_text(
        "import sys\n\nfrom f.kustomer import import_store\n\n\ndef main():\n"
        "    return ['loader' in sys.modules, import_store.batch_key('imp', 3)]\n"
    )
    with local_workspace() as (workspace, _):
        assert run_job(plain, {}, workspace=workspace).result is False
        assert run_job(relative, {}, workspace=workspace).result == [True, "kustomer_import/imp/batch-3.json"]
