"""Run one script or flow of this repository the way Windmill runs it, and print its result.

    uv run local-run NAME [--data JSON | --data @FILE] [--resource JSON | --resource @FILE] [--pretty]

NAME is a script (create_message, f/kustomer/create_message, a .py file) or a flow (import_messages,
a .flow folder). Each script runs as a worker-style job (workbench/worker.py): a fresh process, the
worker's wrapper, its result encoding and its error object.

The `auth` resource comes from --resource; else from KUSTOMER_API_KEY (and KUSTOMER_BASE_URL); else
the embedded sandbox is started on a free loopback port. stderr says which.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from workbench.local_flow import run_flow_job
from workbench.worker import FLOWS, ROOT, SCRIPTS, JobResult, run_job, script_names


def resolve(name: str) -> Path:
    """A script's .py file or a flow's .flow folder, from any of the names a user would give."""
    stem = Path(name).name.removesuffix(".py").removesuffix(".flow")
    for candidate in (Path(name), ROOT / name, SCRIPTS / f"{stem}.py", FLOWS / f"{stem}.flow"):
        if candidate.is_dir() and (candidate / "flow.yaml").is_file():
            return candidate.resolve()
        if candidate.is_file() and candidate.suffix == ".py":
            return candidate.resolve()
    flows = ", ".join(p.name.removesuffix(".flow") for p in sorted(FLOWS.glob("*.flow")))
    raise SystemExit(
        f"local-run: no script or flow {name!r}; scripts: {', '.join(script_names())}; flows: {flows}; "
        "or give a path to a .py file or a .flow folder"
    )


def read_json_option(value: str, what: str) -> Any:
    """`--data '{...}'` or `--data @file.json`."""
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"local-run: {what} is not JSON or not a readable @file: {exc}") from None


def is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def printed(job: JobResult, pretty: bool) -> str:
    """What local-run prints: the worker's compact JSON, or with --pretty, indented JSON for a result
    and plain text for an error (its message with real line breaks, then its name)."""
    if not pretty:
        return job.output
    if job.exit_code != 0 and isinstance(job.result, dict) and isinstance(job.result.get("message"), str):
        step = f" in step {job.result['step_id']}" if job.result.get("step_id") else ""
        return f"{job.result['message']}\n\n({job.result.get('name', 'Error')}{step})"
    return json.dumps(job.result, indent=2, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local-run", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="a script (create_message, ...), a flow (import_messages), or a path")
    parser.add_argument("--data", help="the job arguments, e.g. '{\"body\": {...}}', or @FILE")
    parser.add_argument("--resource", help='the kustomer resource, e.g. \'{"apiKey": "..."}\', or @FILE')
    parser.add_argument("--pretty", action="store_true", help="indented result; an error as plain text")
    options = parser.parse_args(argv)

    target = resolve(options.name)
    is_flow = target.is_dir()
    args = read_json_option(options.data, "--data") if options.data is not None else {}
    if not is_flow and (not isinstance(args, dict) or ("body" not in args and "auth" not in args)):
        if options.data is not None:
            print("local-run: --data has no 'body' key: using all of it as the body", file=sys.stderr)
        args = {"body": args} if options.data is not None else {}

    sandbox = None
    if options.resource:
        args["auth"] = read_json_option(options.resource, "--resource")
        print("local-run: using the resource given with --resource", file=sys.stderr)
    elif os.environ.get("KUSTOMER_API_KEY"):
        args["auth"] = {"apiKey": os.environ["KUSTOMER_API_KEY"]}
        if os.environ.get("KUSTOMER_BASE_URL"):
            args["auth"]["baseUrl"] = os.environ["KUSTOMER_BASE_URL"]
        where = args["auth"].get("baseUrl", "https://api.kustomerapp.com")
        if is_loopback_url(where):
            print(
                f"local-run: using the local server at {where} (KUSTOMER_API_KEY and KUSTOMER_BASE_URL)",
                file=sys.stderr,
            )
        else:
            print(f"local-run: using the REAL Kustomer API at {where} (KUSTOMER_API_KEY is set)", file=sys.stderr)
    elif "auth" not in args:
        from workbench.sandbox import Sandbox

        sandbox = Sandbox().start()
        args["auth"] = {"apiKey": "sandbox-key", "baseUrl": sandbox.url}
        print(f"local-run: using the embedded Kustomer sandbox at {sandbox.url} (no key needed)", file=sys.stderr)
    try:
        job = run_flow_job(target, args) if is_flow else run_job(target, args)
    finally:
        if sandbox:
            sandbox.stop()
    if job.logs:
        print(job.logs, file=sys.stderr, end="" if job.logs.endswith("\n") else "\n")
    print(printed(job, options.pretty))
    return job.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
