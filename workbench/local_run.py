"""Run one script or flow of this repository the way Windmill runs it, and print its result.

    uv run local-run NAME [--data JSON | --data @FILE] [--resource JSON | --resource @FILE] [--pretty]
                          [--file MESSAGES.jsonl] [--variables @FILE] [--no-cloud] [--report-dir DIR]
                          [--storage-dir DIR]

NAME is a script (create_message, f/kustomer/create_message, a .py file) or a flow (import_messages,
a .flow folder). Each script runs as a worker-style job (workbench/worker.py): a fresh process, the
worker's wrapper, its result encoding and its error object.

Every job runs in a local workspace (workbench/workspace.py): its arguments interpolated as the
worker does (`$var:`/`$res:` from --variables, `$WM_TOKEN` the job's own token), its own WM_TOKEN,
Cloud's limits unless --no-cloud, and a stand-in of the workspace storage on loopback, where --file
is uploaded for the import flow. The storage's objects are kept in --storage-dir between runs, as a
real workspace keeps them: an import run again goes on where the last run stopped, and a finished
one sends nothing again. Each step's log is printed on stderr as it is written.

The `auth` resource comes from --resource, or `auth` in --data; else from KUSTOMER_API_KEY (and
KUSTOMER_BASE_URL); else the embedded sandbox is started on a free loopback port. stderr says which.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, NamedTuple

from workbench.cli import Parser
from workbench.hosts import is_loopback_url
from workbench.local_flow import local_workspace, run_flow_job
from workbench.paths import FLOWS, ROOT, SCRIPTS, script_names
from workbench.windmill_storage import WindmillStorage
from workbench.worker import JobResult, run_job, stop_running_jobs

STORAGE_DIR = "import-reports/.storage"  # gitignored with the reports


def resolve(name: str) -> Path:
    """A script's .py file or a flow's .flow folder, from any of the names a user would give."""
    stem = Path(name).name.removesuffix(".py").removesuffix(".flow")
    for candidate in (Path(name), ROOT / name, SCRIPTS / f"{stem}.py", FLOWS / f"{stem}.flow"):
        if candidate.is_dir() and (candidate / "flow.yaml").is_file():
            return candidate.resolve()
        if candidate.is_file() and candidate.suffix == ".py":
            return candidate.resolve()
    raise SystemExit(f"local-run: no script or flow {name!r}; {'; '.join(runnable())}")


def runnable() -> list[str]:
    """What local-run runs by name, for a message that asks for one."""
    flows = ", ".join(p.name.removesuffix(".flow") for p in sorted(FLOWS.glob("*.flow")))
    return [f"scripts: {', '.join(script_names())}", f"flows: {flows}", "or a path to a .py file or a .flow folder"]


def read_json_option(value: str, what: str) -> Any:
    """`--data '{...}'` or `--data @file.json`."""
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"local-run: {what} is not JSON or not a readable @file: {exc}") from None
    except RecursionError:
        raise SystemExit(f"local-run: {what} is nested too deep to read (over about 1,000 levels)") from None


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
    parser = Parser(prog="local-run", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help="a script (create_message, ...), a flow (import_messages), or a path")
    parser.add_argument("--data", help="the job arguments, e.g. '{\"body\": {...}}', or @FILE")
    parser.add_argument("--resource", help='the kustomer resource, e.g. \'{"apiKey": "..."}\', or @FILE')
    parser.add_argument("--file", help="for the import flow: a JSON Lines or JSON file of messages, as messages_file")
    parser.add_argument("--variables", help="the workspace's variables and resources: {path: value} or @FILE")
    parser.add_argument("--report-dir", default="import-reports", help="where a flow's report files are saved")
    parser.add_argument(
        "--storage-dir",
        default=STORAGE_DIR,
        help=f"where the local workspace storage is kept between runs (default {STORAGE_DIR}): an import run "
        "again goes on from there and never sends a message twice; delete it to forget every local import",
    )
    parser.add_argument(
        "--cloud",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply Windmill Cloud's limits (results over 2 MB, 900 s per job); --no-cloud for self-hosted",
    )
    parser.add_argument("--pretty", action="store_true", help="indented result; an error as plain text")
    options = parser.parse_args(argv)
    if options.name is None:
        parser.error(f"name the script or flow to run ({'; '.join(runnable())})")

    target = resolve(options.name)
    is_flow = target.is_dir()
    args = read_json_option(options.data, "--data") if options.data is not None else {}
    wants_body = not is_flow and "body" in parameters(target) and options.data is not None
    # {"Body": ...} is the argument misspelt, not a bare body: refuse_unknown_inputs names `body`
    named = isinstance(args, dict) and any(str(key).lower() in ("body", "auth") for key in args)
    if wants_body and not named:
        say("--data has no 'body' key: using all of it as the body")
        args = {"body": args}
    if not isinstance(args, dict):
        raise SystemExit(f"local-run: --data must be a JSON object of the job's arguments, got {type(args).__name__}")
    if options.file and not is_flow:
        raise SystemExit("local-run: --file is for the import flow (it becomes messages_file)")
    refuse_unknown_inputs(target, args)
    if is_flow and isinstance(args.get("messages_file"), str):
        raise SystemExit(
            "local-run: messages_file in --data is a text, but it must be a file of the workspace storage: give "
            "the local file with --file PATH instead (local-run uploads it and passes it as messages_file); "
            "nothing was run"
        )
    if options.file and not Path(options.file).is_file():
        raise SystemExit(f"local-run: --file {options.file!r} is not a readable file; nothing was run")
    if options.resource and "auth" in args:
        raise SystemExit(
            "local-run: a resource is given twice, with --resource and as 'auth' in --data: keep one; nothing was run"
        )
    if not (options.resource or "auth" in args or os.environ.get("KUSTOMER_API_KEY")) and os.environ.get(
        "KUSTOMER_BASE_URL"
    ):
        raise SystemExit(
            "local-run: KUSTOMER_BASE_URL is set but KUSTOMER_API_KEY is not: set KUSTOMER_API_KEY too (any key "
            "for a sandbox), or unset KUSTOMER_BASE_URL to use the embedded sandbox; nothing was run"
        )
    for switch, folder in (("--report-dir", options.report_dir), ("--storage-dir", options.storage_dir)):
        if problem := folder_problem(Path(folder)):
            raise SystemExit(
                f"local-run: {switch} {folder!r} {problem}: give a folder (made if missing); nothing was run"
            )
    store = read_json_option(options.variables, "--variables") if options.variables else {}
    if not isinstance(store, dict):
        raise SystemExit("local-run: --variables must be a JSON object: {path: value}")
    variables = {k: v for k, v in store.items() if isinstance(v, str)}
    resources = {k: v for k, v in store.items() if not isinstance(v, str)}

    resume = resume_options(options, args)  # before `auth` is added to the arguments
    embedded = False
    handlers = {signum: signal.signal(signum, _stop_jobs_and_raise) for signum in STOP_SIGNALS}
    try:
        with contextlib.ExitStack() as stack:
            args["auth"], embedded = kustomer_auth(args, options.resource, stack)
            try:
                workspace, storage = stack.enter_context(
                    local_workspace(
                        cloud=options.cloud,
                        # what was sent to the embedded sandbox ends with it: its imports are not kept either
                        storage_folder=None if embedded else Path(options.storage_dir),
                        variables=variables,
                        resources=resources,
                    )
                )
            except OSError as exc:
                raise SystemExit(
                    f"local-run: cannot keep the workspace storage in --storage-dir {options.storage_dir!r} "
                    f"({exc.strerror or exc}); give another folder. Nothing was run."
                ) from None
            if options.file:
                args["messages_file"] = upload(storage, Path(options.file))
                stack.callback(storage.delete, args["messages_file"]["s3"])  # the import keeps its own copy

            def log(line: str) -> None:
                print(line, file=sys.stderr, flush=True)

            if is_flow:
                job = run_flow_job(target, args, workspace, log)
            else:
                job = run_job(target, args, workspace=workspace, on_log=log)
            if is_flow:
                save_report(job, storage, Path(options.report_dir), target, resume)
        print(printed(job, options.pretty))  # Ctrl-C until the last line is this handler's too
    except Interrupted as stop:
        say(interrupted_line(stop.signum, is_flow, embedded))
        return 128 + stop.signum
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return job.exit_code


# Ctrl-C, and the signals that end a run from outside (kill, a closed terminal): the job is stopped too.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """local-run was interrupted (Ctrl-C) or told to stop; its running job is already stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_jobs_and_raise(signum: int, frame: object) -> None:
    """Stop the running job at once (its process group), then unwind: no job outlives local-run. The
    job runs in its own process group, so a terminal's Ctrl-C reaches local-run alone, and this."""
    for each in STOP_SIGNALS:
        signal.signal(each, signal.SIG_IGN)  # a second Ctrl-C while stopping changes nothing
    stop_running_jobs()
    raise Interrupted(signum)


def interrupted_line(signum: int, is_flow: bool, embedded: bool) -> str:
    """What an interrupted run says, in one line: that nothing more is sent, and what running again does."""
    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    if not is_flow and embedded:
        return f"{what}: the running job was stopped, and the embedded sandbox with it"
    if not is_flow:
        return (
            f"{what}: the running job was stopped and nothing more is sent to Kustomer (a request already on its "
            "way may have been applied)"
        )
    if embedded:
        return (
            f"{what}: the running job was stopped and nothing more is sent; the embedded sandbox ended with it, so "
            "running the same command again starts the import over"
        )
    return (
        f"{what}: the running job was stopped and nothing more is sent to Kustomer; run the same command again to "
        "go on with the import where it stopped (what may have gone out is looked up, never sent twice)"
    )


def folder_problem(folder: Path) -> str | None:
    """Why local-run could not make or write in `folder`, found before anything is sent (not after an
    import, when its report is saved), by its nearest part that exists."""
    for each in (folder, *folder.parents):
        if not each.exists():
            continue
        if not each.is_dir():
            return "is a file, not a folder" if each == folder else f"is inside {str(each)!r}, a file"
        if not os.access(each, os.W_OK | os.X_OK):
            return "is not writable" if each == folder else f"cannot be made in {str(each)!r}: not writable"
        return None
    return None


def say(line: str) -> None:
    print(f"local-run: {line}", file=sys.stderr, flush=True)


def parameters(script: Path) -> list[str]:
    """The names `main` takes, read as Windmill's parser reads them: from the source, nothing run."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            return [a.arg for a in node.args.args]
    return []


def inputs_of(target: Path) -> list[str]:
    """What a flow's form asks (its schema's properties) or what a script's `main` takes."""
    if target.is_dir():
        import yaml

        schema = yaml.safe_load((target / "flow.yaml").read_text()).get("schema", {})
        return list(schema.get("properties", {}))
    return parameters(target)


def refuse_unknown_inputs(target: Path, args: dict[str, Any]) -> None:
    """An input the flow's schema (or the script's `main`) does not have is refused in one line before
    anything starts: Windmill would drop it silently, and a misspelt `dry_run` would run the real thing."""
    known = inputs_of(target)
    unknown = [name for name in args if name not in known]
    if not unknown:
        return
    name = target.name.removesuffix(".flow").removesuffix(".py")
    hints = []
    for given in unknown:
        close = difflib.get_close_matches(given.replace("-", "_").lower(), known, n=1, cutoff=0.6)
        hints.append(f"{given!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise SystemExit(
        f"local-run: {name} has no input {', '.join(hints)}; its inputs are {', '.join(known)}. Nothing was run."
    )


def kustomer_auth(args: dict[str, Any], resource: str | None, stack: contextlib.ExitStack) -> tuple[Any, bool]:
    """Which Kustomer: an explicit `auth` (--resource, or in --data) first; then KUSTOMER_API_KEY; then
    the embedded sandbox (the second value: True). stderr says which."""
    if resource:
        given = read_json_option(resource, "--resource")
        say(f"using the resource given with --resource{kustomer_of(given)}")
        return given, False
    if "auth" in args:
        say(f"using the auth given in --data{kustomer_of(args['auth'])}")
        return args["auth"], False
    if os.environ.get("KUSTOMER_API_KEY"):
        auth = {"apiKey": os.environ["KUSTOMER_API_KEY"]}
        if os.environ.get("KUSTOMER_BASE_URL"):
            auth["baseUrl"] = os.environ["KUSTOMER_BASE_URL"]
        where = auth.get("baseUrl", "https://api.kustomerapp.com")
        if is_loopback_url(where):
            say(f"using the local server at {where} (KUSTOMER_API_KEY and KUSTOMER_BASE_URL)")
        else:
            say(f"using the REAL Kustomer API at {where} (KUSTOMER_API_KEY is set)")
        return auth, False
    from workbench.sandbox import Sandbox

    sandbox = stack.enter_context(Sandbox())
    say(f"using the embedded Kustomer sandbox at {sandbox.url} (no key needed)")
    return {"apiKey": "sandbox-key", "baseUrl": sandbox.url}, True


def kustomer_of(auth: Any) -> str:
    """Which Kustomer a resource points at, by its baseUrl: its scheme, host and port only, so never a
    key, even one pasted in the wrong field; nothing for a resource that is not one (the job says why)."""
    from urllib.parse import urlsplit

    base = (auth.get("baseUrl") or "https://api.kustomerapp.com") if isinstance(auth, dict) else None
    if not isinstance(base, str):
        return ""
    try:
        parts = urlsplit(base.strip())
        shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return f": a local server at {shown}" if is_loopback_url(base.strip()) else f": the REAL Kustomer API at {shown}"


def upload(storage: WindmillStorage, file: Path) -> dict[str, str]:
    """Put a local file in the stand-in storage, as a user uploads one in the flow's form."""
    if not file.is_file():
        raise SystemExit(f"local-run: --file {str(file)!r} is not a readable file")
    key = f"uploads/{file.name}"
    storage.put(key, file.read_bytes())
    say(f"uploaded {file} ({file.stat().st_size:,} bytes) to the workspace storage as {key}")
    return {"s3": key}


RESOURCE_FILE = "your-resource.json"  # where the printed command asks for a resource given inline
CARRIED = ("max_requests_per_minute", "import_label")  # the --data inputs a later run keeps: none is secret


class Resume(NamedTuple):
    """The options that make a later run go where this one went, and what to do first, if anything."""

    options: str
    note: str = ""


def resume_options(options: argparse.Namespace, data: dict[str, Any]) -> Resume:
    """The same Kustomer (a resource file by its name; a resource given inline, with --resource or as
    `auth` in --data, is never echoed, it holds a key: the command names a file to save it in), the same
    pace and label, the same rules; every word quoted for a shell."""
    given = []
    note = ""
    if (options.resource and not options.resource.startswith("@")) or (not options.resource and "auth" in data):
        where = "--resource" if options.resource else "'auth' in --data"
        given += ["--resource", f"@{RESOURCE_FILE}"]
        note = f" (first save the resource you gave with {where} as {RESOURCE_FILE}; its key is not printed)"
    elif options.resource:
        given += ["--resource", options.resource]
    carried = {name: data[name] for name in CARRIED if name in data}
    if carried:
        given += ["--data", json.dumps(carried, ensure_ascii=False)]
    if not options.cloud:
        given.append("--no-cloud")
    return Resume("".join(f" {shlex.quote(g)}" for g in given), note)


def save_report(
    job: JobResult, storage: WindmillStorage, folder: Path, flow: Path, resume: Resume | None = None
) -> None:
    """Keep the report files of an import beside its report (where a user looks for them, not in the
    storage folder), and say the exact command that sends again what failed."""
    report = job.result.get("extra", job.result) if isinstance(job.result, dict) else None
    if not isinstance(report, dict):
        return
    any_file = next((report[n] for n in ("report_file", "invalid_file") if isinstance(report.get(n), dict)), None)
    if any_file is None:
        return
    run = folder / any_file["s3"].split("/")[-2]
    run.mkdir(parents=True, exist_ok=True)
    (run / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    saved = {}
    for name in ("report_file", "retry_file", "unknown_file", "invalid_file"):
        if isinstance(report.get(name), dict):
            target = run / report[name]["s3"].split("/")[-1]
            target.write_bytes(storage.get(report[name]["s3"]))
            saved[name] = target
    say(f"the report is in {run}/ (report.json and {', '.join(p.name for p in saved.values())})")
    name = flow.name.removesuffix(".flow")
    resume = resume or Resume("")
    if "invalid_file" in saved and "report_file" not in saved:
        say(f"every invalid message and its problems: {saved['invalid_file']}; fix them, then run again")
    if "retry_file" in saved:
        say(
            f"to send again the messages that were not created, once the reasons in the report are fixed{resume.note}: "
            f"uv run local-run {name} --file {shlex.quote(str(saved['retry_file']))}{resume.options}"
        )
    if "unknown_file" in saved:
        say(f"check the messages in {saved['unknown_file']} before sending them again")


if __name__ == "__main__":
    raise SystemExit(main())
