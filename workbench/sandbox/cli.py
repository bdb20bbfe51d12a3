"""`uv run kustomer-sandbox`: the sandbox in the foreground, until Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import sys
import time

from workbench.cli import Parser
from workbench.sandbox.faults import FAULTS
from workbench.sandbox.server import Sandbox


def switch_problems(options: argparse.Namespace) -> list[str]:
    checks = [
        (0 <= options.port <= 65535, f"--port must be 0 to 65535, not {options.port}"),
        (
            options.rate_limit is None or options.rate_limit >= 1,
            f"--rate-limit must be 1 or more, not {options.rate_limit}",
        ),
        (0 < options.window <= 3600, f"--window must be over 0 and at most 3600 seconds, not {options.window}"),
        (0 <= options.latency <= 600_000, f"--latency must be 0 to 600000 ms, not {options.latency}"),
        (0 <= options.bulk_seconds <= 3600, f"--bulk-seconds must be 0 to 3600, not {options.bulk_seconds}"),
        (0 <= options.item_failure_rate <= 1, f"--item-failure-rate must be 0 to 1, not {options.item_failure_rate}"),
        (options.fault_count is None or options.fault_count >= 0, "--fault-count must be 0 or more"),
    ]
    return [problem for ok, problem in checks if not ok]


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="kustomer-sandbox", description="A Kustomer stand-in on loopback.")
    parser.add_argument("--port", type=int, default=8787, help="loopback port (0 picks a free one; default 8787)")
    parser.add_argument("--rate-limit", type=int, help="requests allowed per window; more answer 429")
    parser.add_argument("--window", type=float, default=60.0, help="rate-limit window in seconds (default 60)")
    parser.add_argument("--latency", type=float, default=0.0, help="milliseconds added to every answer")
    parser.add_argument("--fault", choices=list(FAULTS), help="answer POSTs with this fault")
    parser.add_argument("--fault-count", type=int, help="how many POSTs get the fault (default: all)")
    parser.add_argument("--bulk-seconds", type=float, default=0.0, help="how long a bulk operation takes")
    parser.add_argument("--item-failure-rate", type=float, default=0.0, help="share of bulk items that fail")
    options = parser.parse_args(argv)
    for problem in switch_problems(options):  # a switch that would break the sandbox later: say so now
        print(f"kustomer-sandbox: {problem}", file=sys.stderr)
        return 2
    try:
        box = Sandbox(
            port=options.port,
            rate_limit=options.rate_limit,
            window=options.window,
            latency=options.latency / 1000,
            fault=options.fault,
            fault_count=options.fault_count,
            bulk_seconds=options.bulk_seconds,
            item_failure_rate=options.item_failure_rate,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"kustomer-sandbox: port {options.port} is in use: pass --port N (0 picks a free one) "
                "or stop the other sandbox",
                file=sys.stderr,
            )
        else:
            print(f"kustomer-sandbox: cannot listen on port {options.port}: {exc.strerror}", file=sys.stderr)
        return 2
    box.start()  # before it, Ctrl-C is workbench/commands.py's line: a server not serving cannot be shut down
    try:
        print(f"Kustomer sandbox on {box.url}  (baseUrl for the kustomer resource; any apiKey works)", flush=True)
        print(f"What it received: {box.url}/__sandbox/requests   Stop: Ctrl-C", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        box.stop()
        print("kustomer-sandbox: stopped (Ctrl-C); what it received is gone with it", file=sys.stderr, flush=True)
        return 130
