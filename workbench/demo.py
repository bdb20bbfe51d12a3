"""See what the scripts do with a payload, offline: `uv run demo`.

Starts the embedded Kustomer sandbox, runs create_message and bulk_create_messages through local-run
(a fresh process each, as a Windmill worker does) on the inputs in examples/, and prints for each the
request as Kustomer received it and the job's result; then one bad input, to show the error a
Windmill user reads. With KUSTOMER_API_KEY set it still uses the sandbox unless you add --yes, since
the real API would record real messages on real timelines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from workbench.sandbox import Sandbox
from workbench.worker import ROOT, SCRIPTS, run_job

EXAMPLES = ROOT / "examples"
RUNS = (
    ("create_message", "create_message.json"),
    ("bulk_create_messages", "bulk_create_messages.json"),
    ("create_message", "invalid_create_message.json"),
)


def show(title: str, value: Any) -> None:
    print(f"\n{title}")
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    print("\n".join("    " + line for line in text.splitlines()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--yes", action="store_true", help="with KUSTOMER_API_KEY set: really create the messages")
    options = parser.parse_args(argv)

    real_key = os.environ.get("KUSTOMER_API_KEY")
    if real_key and not options.yes:
        print(
            "KUSTOMER_API_KEY is set: this demo would record the example messages in your real Kustomer org.\n"
            "It uses the offline sandbox instead; run `uv run demo --yes` to use the real API "
            "(edit the conversation ids in examples/ first).\n"
        )
    if real_key and options.yes:
        auth = {"apiKey": real_key, "baseUrl": os.environ.get("KUSTOMER_BASE_URL", "")}
        print(f"Using the REAL Kustomer API at {auth['baseUrl'] or 'https://api.kustomerapp.com'}.")
        return run_all(auth, None)
    with Sandbox() as sandbox:
        print(f"Kustomer sandbox running on {sandbox.url}: nothing leaves this machine.")
        return run_all({"apiKey": "sandbox-key", "baseUrl": sandbox.url}, sandbox)


def run_all(auth: dict[str, str], sandbox: Sandbox | None) -> int:
    for script, example in RUNS:
        args = json.loads((EXAMPLES / example).read_text())
        print(f"\n=== {script}  with examples/{example}")
        seen = len(sandbox.requests) if sandbox else 0
        job = run_job(SCRIPTS / f"{script}.py", {**args, "auth": auth})
        if sandbox:
            received = httpx.get(f"{sandbox.url}/__sandbox/requests").json()[seen:]
            for request in received:
                headers = {
                    k: v for k, v in request["headers"].items() if k in ("Authorization", "User-Agent", "Content-Type")
                }
                show(
                    f"Kustomer received: {request['method']} {request['path']}",
                    {"headers": headers, "body": request["body"]},
                )
            if not received:
                print("\nKustomer received: nothing (the job failed before sending)")
        if job.exit_code == 0:
            show("Job result (what the next flow step reads as results.<step>):", job.result)
        else:
            show(f"Job failed ({job.result['name']}); Windmill's result pane shows:", job.result["message"])
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
