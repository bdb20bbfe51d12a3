"""Run one Python script as a Windmill worker runs it: the job that local-run, the flow runner, the
demo and the benchmark all use.

What the worker does (windmill-worker's python_executor.rs), and so what this does: the script is
written under its workspace path (f/kustomer/<name>.py) in a fresh job folder with the job's
arguments in args.json; a generated wrapper.py imports it as a module, keeps only the arguments
`main` names (dropping nulls for parameters with a default, so Python's default applies), calls
main(**args) in a fresh Python process with a cleared environment, and writes the result as
json.dumps(..., separators=(',', ':'), default=str), then rewrites every NaN, Infinity and \\u0000
in that text to ` null ` unless the script's leading `#` lines carry `skip_result_postprocessing`.
An exception becomes {"message", "name", "stack"} (plus "extra" with the exception's attributes and
"step_id" inside a flow) and exit code 1.

Where this differs from the worker: it reads `main`'s signature with inspect rather than Windmill's
static parser, and it imports the script inside the `try`, so an import error is a structured error.
What a workspace does around the job (interpolation, tokens, limits) is workbench/workspace.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from workbench.chaos import Chaos, FlowCancelled
from workbench.workspace import CLOUD_JOB_TIMEOUT, CLOUD_SCRIPT_RESULT_BYTES, TOO_LARGE, InterpolationError, Workspace

# The worker starts the job with a cleared environment plus these, and its proxy settings (below).
_PASSED_ENV = ("PATH", "HOME", "TZ")

# The jobs' processes running now, each the leader of its own process group: what stop_running_jobs ends.
_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()


def stop_running_jobs() -> None:
    """Kill every job process running now, with whatever it started, at once: what an interrupted
    local-run does before it exits, so that no job goes on sending after it (a job's threads would
    finish their requests before its process ends)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its group: the job and anything it started
    process.wait()


def proxy_envs() -> dict[str, str]:
    """The proxy settings a worker gives every job (windmill-worker lib.rs, `PROXY_ENVS`): each read
    from the worker's environment in lower case first, then upper case, and passed in upper case only;
    with a proxy and no NO_PROXY, NO_PROXY is `localhost,127.0.0.1`."""
    found = {
        name: os.environ.get(name.lower(), os.environ.get(name)) for name in ("NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY")
    }
    passed = {name: value for name, value in found.items() if value is not None}
    if "NO_PROXY" not in passed and ("HTTP_PROXY" in passed or "HTTPS_PROXY" in passed):
        passed["NO_PROXY"] = "localhost,127.0.0.1"
    return passed


def _whitelisted() -> dict[str, str]:
    """The variables named in the worker's WHITELIST_ENVS, which it passes on to every job: how a
    self-hosted worker gives jobs SSL_CERT_FILE / SSL_CERT_DIR, say for a TLS-inspecting proxy's CA.
    windmill-common worker.rs: the names are split on "," as they are (no trimming), and a name the
    worker's environment lacks is passed as "" (`load_whitelist_env_vars_from_env`, `load_env_vars`)."""
    names = os.environ["WHITELIST_ENVS"].split(",") if "WHITELIST_ENVS" in os.environ else []
    return {name: os.environ.get(name, "") for name in names if name}  # a process cannot hold an unnamed one


# The worker's post-processing, as its wrapper writes it (python_executor.rs, get_result_postprocessor).
_POSTPROCESS = "re.sub(replace_invalid_fields, ' null ', unprocessed)"
_UNPROCESSED = "unprocessed"

_WRAPPER = r"""import inspect
import json
import os
import re
import re
import sys
import traceback

with open("args.json") as f:
    kwargs = json.load(f, strict=False)

replace_invalid_fields = re.compile(r'(?:\bNaN\b|\\*\\u0000|Infinity|\-Infinity)')
result_json = os.path.join(os.path.abspath(os.path.dirname(__file__)), "result.json")


def res_to_json(res):
    unprocessed = json.dumps(res, separators=(',', ':'), default=str).replace('\n', '')
    return {postprocessor}


{loader}
{peak}
try:
    from {module} import {name} as inner_script

    args = {{}}
    for param in inspect.signature(inner_script.main).parameters.values():
        args[param.name] = kwargs.get(param.name)
        if param.default is not inspect.Parameter.empty and args[param.name] is None:
            del args[param.name]
    res = inner_script.main(**args)
    res_json = res_to_json(res)
    with open(result_json, "w") as f:
        f.write(res_json)
except BaseException as e:
    tb = traceback.format_tb(sys.exc_info()[2])
    err = {{"message": str(e), "name": e.__class__.__name__, "stack": "\n".join(tb[1:])}}
    if e.__dict__:
        err["extra"] = e.__dict__
    if os.environ.get("WM_FLOW_STEP_ID"):
        err["step_id"] = os.environ["WM_FLOW_STEP_ID"]
    with open(result_json, "w") as f:
        f.write(json.dumps(err, separators=(",", ":"), default=str).replace("\n", ""))
    sys.exit(1)
"""


# The worker's Python loader: workbench/job_files/loader.py, copied beside the wrapper and imported by
# it when the script has a relative import, as the worker does (python_executor.rs, RELATIVE_IMPORT_REGEX).
LOADER = Path(__file__).with_name("job_files") / "loader.py"
_RELATIVE_IMPORT = re.compile(r"(import|from)\s(((u|f)\.)|\.)")


# Not the worker's: the workbench notes the job's peak memory for the benchmark. VmHWM is the process's
# own (ru_maxrss would report the peak of the process that started it, carried over exec).
_PEAK = r"""
import atexit


@atexit.register
def _note_peak_memory():
    with open("/proc/self/status") as status, open("peak_kb", "w") as out:
        out.write(next((line.split()[1] for line in status if line.startswith("VmHWM:")), "0"))
"""


class JobResult(NamedTuple):
    """What a Windmill job ends with: its exit code, its result (or error object), and its logs."""

    exit_code: int
    result: Any  # decoded from `output`
    output: str  # result.json exactly as the worker wrote it
    logs: str


def script_annotations(source: str) -> set[str]:
    """The worker's annotations: the words of the `#` lines at the very top of the file, comma-separated
    (windmill's `annotations` macro reads lines while they start with `#`)."""
    found: set[str] = set()
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        found.update(word.strip() for word in line.lstrip("#").split(","))
    return found


def run_job(
    script: Path,
    args: dict[str, Any],
    workspace_path: str | None = None,
    timeout: float = 600,
    step_id: str | None = None,
    workspace: Workspace | None = None,
    root_job: str | None = None,
    on_log: Callable[[str], None] | None = None,
    probe: str = "",
) -> JobResult:
    """Run `script` as a worker would, in a fresh process, with `args` as the job's arguments.

    The job gets its own token and the workspace's environment; its arguments are interpolated as the
    worker does; under Cloud's rules an over-large result or a run past 900 s fails the job. `probe`
    is not the worker's: code the benchmark runs in the wrapper just before it imports the script."""
    workspace = workspace or Workspace(cloud=False)
    workspace_path = workspace_path or f"f/kustomer/{script.stem}"
    folder, _, name = workspace_path.rpartition("/")
    job_id = str(uuid.uuid4())
    token = workspace.new_token()
    reserved = {"WM_TOKEN": token, "WM_WORKSPACE": workspace.name, "WM_JOB_ID": job_id, "WM_JOB_PATH": workspace_path}
    reserved["WM_ROOT_FLOW_JOB_ID"] = root_job or job_id
    if step_id:
        reserved["WM_FLOW_STEP_ID"] = step_id
    try:
        given = workspace.interpolate(args, reserved)
    except InterpolationError as missing:
        return _failed(workspace, args, {"message": f"Not found: {missing}", "name": "NotFound"})
    source = script.read_text()
    skip = "skip_result_postprocessing" in script_annotations(source)
    if workspace.cloud:
        timeout = min(timeout, CLOUD_JOB_TIMEOUT)
    with tempfile.TemporaryDirectory(prefix="windmill-job-") as job_dir:
        module_dir = Path(job_dir, folder)
        module_dir.mkdir(parents=True)
        shutil.copyfile(script, module_dir / f"{name}.py")
        shutil.copyfile(LOADER, Path(job_dir, "loader.py"))
        Path(job_dir, "args.json").write_text(json.dumps(given))
        wrapper = _WRAPPER.format(
            module=folder.replace("/", "."),
            name=name,
            postprocessor=_UNPROCESSED if skip else _POSTPROCESS,
            loader="import loader" if workspace.base_url and _RELATIVE_IMPORT.search(source) else "",
            peak=_PEAK + probe,
        )
        Path(job_dir, "wrapper.py").write_text(wrapper)
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ} | proxy_envs() | _whitelisted()
        env.update(reserved)
        if workspace.base_url:
            env.update({"BASE_INTERNAL_URL": workspace.base_url, "WM_BASE_URL": workspace.base_url})
        started = time.monotonic()
        try:
            while True:  # a job killed for a zombie restart runs again from the start, as Windmill's monitor does
                command = [sys.executable, "-u", "-m", "wrapper"]
                exit_code, logs, ended = _run_streaming(command, job_dir, env, timeout, on_log, workspace.chaos)
                if ended == "cancel":
                    raise FlowCancelled(f"the flow run was cancelled while {workspace_path} ran")
                if ended != "restart":
                    break
                if on_log:
                    on_log("(the worker stopped answering: Windmill runs this job again from the start)")
        except subprocess.TimeoutExpired:
            message = f"job process terminated due to timeout: it ran past {timeout:g} s"
            return _failed(workspace, given, {"message": message, "name": "ExecutionErr"})
        result_file, peak_file = Path(job_dir, "result.json"), Path(job_dir, "peak_kb")
        output = result_file.read_text() if result_file.exists() else "null"
        peak_kb = int(peak_file.read_text() or 0) if peak_file.exists() else 0
    if workspace.cloud and len(output.encode()) > CLOUD_SCRIPT_RESULT_BYTES:
        return _failed(workspace, given, {"message": TOO_LARGE, "name": "ExecutionErr"}, logs)
    workspace.record(given, len(output.encode()), workspace_path, peak_kb, time.monotonic() - started)
    return JobResult(exit_code, json.loads(output), output, logs)


def _run_streaming(
    command: list[str],
    cwd: str,
    env: dict[str, str],
    timeout: float,
    on_log: Callable[[str], None] | None,
    chaos: Chaos | None = None,
) -> tuple[int, str, str]:
    """Run the job's process; its stdout and stderr merged line by line as they come, as the worker
    reads them into the job's log (handle_child.rs), each line also given to `on_log` at once. The
    last value says whether a fault ended it ("restart", "cancel") or nothing did ("").

    The job runs in a process group of its own: a terminal's Ctrl-C reaches the runner, which stops
    the job at once (any exception here, KeyboardInterrupt included, kills it before it propagates),
    rather than the job, whose threads would go on with their requests."""
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        process_group=0,
    ) as process:
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(timeout, kill)
        timer.daemon = True  # a timer left by an interrupt must not keep the runner alive for `timeout`
        try:  # from the job's first instant: an interrupt kills it, never waits for it (Popen's exit would)
            with _RUNNING_LOCK:
                _RUNNING.add(process)
            if chaos:
                chaos.started(process)
            timer.start()
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if on_log and line.strip():
                    on_log(line.rstrip("\n"))
            process.wait()
        except BaseException:
            _stop(process)
            raise
        finally:
            timer.cancel()
            with _RUNNING_LOCK:
                _RUNNING.discard(process)
            ended = chaos.ended(process) if chaos else ""
        if killed.is_set():
            raise subprocess.TimeoutExpired(command, timeout)
    return process.returncode, "".join(lines), ended


def _failed(workspace: Workspace, args: Any, error: dict[str, Any], logs: str = "") -> JobResult:
    output = json.dumps(error, separators=(",", ":"))
    workspace.record(args, len(output))
    return JobResult(1, error, output, logs)
