"""Run one script of this repository the way a Windmill worker runs it, and print its result.

    uv run local-run SCRIPT [--data JSON | --data @FILE] [--resource JSON | --resource @FILE]

What a worker does, and so what this does: the script is written under its workspace path
(f/kustomer/<name>.py) in a fresh job folder with the job's arguments in args.json; a generated
wrapper.py imports it as a module, keeps only the arguments `main` names (dropping nulls for
parameters with a default, so Python's default applies), calls main(**args) in a fresh Python
process, and writes the result as json.dumps(..., separators=(',', ':'), default=str); an exception
becomes {"message", "name", "stack"} (plus "extra" with the exception's attributes) and exit code 1.

The `auth` resource comes from --resource; else from KUSTOMER_API_KEY (and KUSTOMER_BASE_URL), which
means the real Kustomer API; else the embedded sandbox is started on a free loopback port.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts" / "kustomer"

# The worker starts the job with a cleared environment plus these (proxies included, as Windmill does).
_PASSED_ENV = ("PATH", "HOME", "TZ", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

_WRAPPER = """\
import inspect
import json
import os
import sys
import traceback

with open("args.json") as f:
    kwargs = json.load(f, strict=False)

result_json = os.path.join(os.path.abspath(os.path.dirname(__file__)), "result.json")

try:
    from {module} import {name} as inner_script

    args = {{}}
    for param in inspect.signature(inner_script.main).parameters.values():
        args[param.name] = kwargs.get(param.name)
        if param.default is not inspect.Parameter.empty and args[param.name] is None:
            del args[param.name]
    res = inner_script.main(**args)
    with open(result_json, "w") as f:
        f.write(json.dumps(res, separators=(",", ":"), default=str).replace("\\n", ""))
except BaseException as e:
    tb = traceback.format_tb(sys.exc_info()[2])
    err = {{"message": str(e), "name": e.__class__.__name__, "stack": "\\n".join(tb[1:])}}
    if e.__dict__:
        err["extra"] = e.__dict__
    with open(result_json, "w") as f:
        f.write(json.dumps(err, separators=(",", ":"), default=str).replace("\\n", ""))
    sys.exit(1)
"""


class JobResult(NamedTuple):
    """What a Windmill job ends with: its exit code, its result (or error object), and its logs."""

    exit_code: int
    result: Any  # decoded from `output`
    output: str  # result.json exactly as the worker wrote it
    logs: str


def resolve_script(name: str) -> Path:
    """Accept `create_message`, `f/kustomer/create_message` or a path to a .py file."""
    candidates = [Path(name), ROOT / name, SCRIPTS / f"{Path(name).name.removesuffix('.py')}.py"]
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix == ".py":
            return candidate.resolve()
    known = ", ".join(p.stem for p in sorted(SCRIPTS.glob("*.py")))
    raise SystemExit(f"local-run: no script {name!r}; known scripts: {known}, or give a path to a .py file")


def run_job(script: Path, args: dict[str, Any], workspace_path: str | None = None, timeout: float = 600) -> JobResult:
    """Run `script` as a worker would, in a fresh process, with `args` as the job's arguments."""
    workspace_path = workspace_path or f"f/kustomer/{script.stem}"
    folder, _, name = workspace_path.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="windmill-job-") as job_dir:
        module_dir = Path(job_dir, folder)
        module_dir.mkdir(parents=True)
        shutil.copyfile(script, module_dir / f"{name}.py")
        Path(job_dir, "args.json").write_text(json.dumps(args))
        Path(job_dir, "wrapper.py").write_text(_WRAPPER.format(module=folder.replace("/", "."), name=name))
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        completed = subprocess.run(
            [sys.executable, "-u", "-m", "wrapper"],
            cwd=job_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result_file = Path(job_dir, "result.json")
        output = result_file.read_text() if result_file.exists() else "null"
    return JobResult(completed.returncode, json.loads(output), output, completed.stdout + completed.stderr)


def run_flow_job(flow: Path, args: dict[str, Any]) -> JobResult:
    """A flow run as one job: its result, or the failed step's error, as Windmill shows them."""
    from workbench.local_flow import FlowStepError, run_flow

    try:
        result = run_flow(flow, args)
    except FlowStepError as failure:
        error = failure.error if isinstance(failure.error, dict) else {"message": str(failure.error)}
        error = {**error, "step_id": failure.step}
        return JobResult(1, error, json.dumps(error, separators=(",", ":"), default=str), "")
    return JobResult(0, result, json.dumps(result, separators=(",", ":"), default=str), "")


def read_json_option(value: str, what: str) -> Any:
    """`--data '{...}'` or `--data @file.json`."""
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"local-run: {what} is not JSON or not a readable @file: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local-run", description=__doc__.split("\n\n")[0])
    parser.add_argument("script", help="create_message, bulk_create_messages, a .py script or a .flow folder")
    parser.add_argument("--data", default="{}", help="the job arguments, e.g. '{\"body\": {...}}', or @FILE")
    parser.add_argument("--resource", help='the kustomer resource, e.g. \'{"apiKey": "..."}\', or @FILE')
    parser.add_argument("--pretty", action="store_true", help="indent the result (the worker writes it compact)")
    options = parser.parse_args(argv)

    flow = Path(options.script) if Path(options.script).is_dir() else None
    script = None if flow else resolve_script(options.script)
    args = read_json_option(options.data, "--data")
    if not flow and (not isinstance(args, dict) or ("body" not in args and "auth" not in args)):
        print("local-run: --data has no 'body' key: using all of it as the body", file=sys.stderr)
        args = {"body": args}

    sandbox = None
    if options.resource:
        args["auth"] = read_json_option(options.resource, "--resource")
        print("local-run: using the resource given with --resource", file=sys.stderr)
    elif os.environ.get("KUSTOMER_API_KEY"):
        args["auth"] = {"apiKey": os.environ["KUSTOMER_API_KEY"]}
        if os.environ.get("KUSTOMER_BASE_URL"):
            args["auth"]["baseUrl"] = os.environ["KUSTOMER_BASE_URL"]
        where = args["auth"].get("baseUrl", "https://api.kustomerapp.com")
        print(f"local-run: using the REAL Kustomer API at {where} (KUSTOMER_API_KEY is set)", file=sys.stderr)
    elif "auth" not in args:
        from workbench.sandbox import Sandbox

        sandbox = Sandbox().start()
        args["auth"] = {"apiKey": "sandbox-key", "baseUrl": sandbox.url}
        print(f"local-run: using the embedded Kustomer sandbox at {sandbox.url} (no key needed)", file=sys.stderr)
    try:
        job = run_flow_job(flow, args) if flow else run_job(script or Path(), args)
    finally:
        if sandbox:
            sandbox.stop()
    if job.logs:
        print(job.logs, file=sys.stderr, end="" if job.logs.endswith("\n") else "\n")
    print(json.dumps(job.result, indent=2, ensure_ascii=False) if options.pretty else job.output)
    return job.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
