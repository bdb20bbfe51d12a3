"""See what the scripts do with a payload, offline: `uv run demo`.

Starts the embedded Kustomer sandbox, runs create_message and bulk_create_messages as Windmill workers
run them (a fresh process each) on the inputs in examples/, then wait_for_bulk_results on the bulk
operation just queued, and prints for each the request as Kustomer received it, the job's log and
its result; then one bad input, to show the error a Windmill user reads. With KUSTOMER_API_KEY set
it still uses the sandbox unless you add --yes, since the real API would record real messages on
real timelines.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx

from workbench.cli import Parser
from workbench.paths import ROOT, SCRIPTS
from workbench.sandbox import Sandbox
from workbench.worker import run_job

EXAMPLES = ROOT / "examples"
# Each run: the script and its input; wait_for_bulk_results takes the bulk operation the run before made.
RUNS = (
    ("create_message", "create_message.json"),
    ("bulk_create_messages", "bulk_create_messages.json"),
    ("wait_for_bulk_results", None),
    ("create_message", "invalid_create_message.json"),
)


def show(title: str, value: Any) -> None:
    print(f"\n{title}")
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    print("\n".join("    " + line for line in text.splitlines()))


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--yes", action="store_true", help="with KUSTOMER_API_KEY set: really create the messages")
    options = parser.parse_args(argv)

    real_key = os.environ.get("KUSTOMER_API_KEY")
    try:
        return run_demo(real_key, options.yes)
    except KeyboardInterrupt:  # the job running is already stopped (worker.run_job), and the sandbox with it
        to = (
            "Kustomer (a request already on its way may have been applied)"
            if real_key and options.yes
            else "the sandbox"
        )
        print(f"demo: interrupted: the running job was stopped and nothing more is sent to {to}", file=sys.stderr)
        return 130


def run_demo(real_key: str | None, yes: bool) -> int:
    if real_key and not yes:
        print(
            "KUSTOMER_API_KEY is set: this demo would record the example messages in your real Kustomer org.\n"
            "It uses the offline sandbox instead; run `uv run demo --yes` to use the real API "
            "(edit the conversation ids in examples/ first).\n"
        )
    if real_key and yes:
        auth = {"apiKey": real_key, "baseUrl": os.environ.get("KUSTOMER_BASE_URL", "")}
        print(f"Using the REAL Kustomer API at {auth['baseUrl'] or 'https://api.kustomerapp.com'}.")
        return run_all(auth, None)
    with Sandbox() as sandbox:
        print(f"Kustomer sandbox running on {sandbox.url}: nothing leaves this machine.")
        return run_all({"apiKey": "sandbox-key", "baseUrl": sandbox.url}, sandbox)


def run_all(auth: dict[str, str], sandbox: Sandbox | None) -> int:
    previous: Any = None
    args: dict[str, Any] = {}
    for script, example in RUNS:
        if example:
            args = json.loads((EXAMPLES / example).read_text())
            print(f"\n=== {script}  with examples/{example}")
        else:  # the bulk operation just queued: what became of each of its messages
            if not (isinstance(previous, dict) and isinstance(previous.get("data"), dict)):
                print("\nThe demo stops here: the bulk request above failed, so there is no operation to wait for.")
                return 1
            bulk = previous["data"]
            count = len(args["body"])
            args = {"bulk_id": bulk["id"], "submitted_at": bulk["attributes"]["createdAt"], "expected_items": count}
            print(f"\n=== {script}  with the bulk_id {bulk['id']} just returned (each message's outcome)")
        seen = len(sandbox.requests) if sandbox else 0
        job = run_job(SCRIPTS / f"{script}.py", {**args, "auth": auth})
        if sandbox:
            received = httpx.get(f"{sandbox.url}/__sandbox/requests").json()[seen:]
            for request in received:
                headers = {
                    k: v for k, v in request["headers"].items() if k in ("Authorization", "User-Agent", "Content-Type")
                }
                shown = {"headers": headers, "body": request["body"]} if request["method"] == "POST" else headers
                show(f"Kustomer received: {request['method']} {request['path']}", shown)
            if not received:
                print("\nKustomer received: nothing (the job failed before sending)")
        for line in job.logs.splitlines():
            print(f"\nJob log: {line}")
        if job.exit_code == 0:
            show("Job result (what the next flow step reads as results.<step>):", job.result)
        else:
            failure = job.result if isinstance(job.result, dict) else {}
            name, message = failure.get("name", "Error"), failure.get("message", job.output)
            show(f"Job failed ({name}); Windmill's result pane shows:", message)
        previous = job.result
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
