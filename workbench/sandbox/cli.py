"""`uv run kustomer-sandbox`: the sandbox in the foreground, until Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import sys
import time

from workbench.sandbox.faults import FAULTS
from workbench.sandbox.server import Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kustomer-sandbox", description="A Kustomer stand-in on loopback.")
    parser.add_argument("--port", type=int, default=8787, help="loopback port (0 picks a free one; default 8787)")
    parser.add_argument("--rate-limit", type=int, help="requests allowed per window; more answer 429")
    parser.add_argument("--window", type=float, default=60.0, help="rate-limit window in seconds (default 60)")
    parser.add_argument("--latency", type=float, default=0.0, help="milliseconds added to every answer")
    parser.add_argument("--fault", choices=list(FAULTS), help="answer POSTs with this fault")
    parser.add_argument("--fault-count", type=int, help="how many POSTs get the fault (default: all)")
    parser.add_argument("--bulk-seconds", type=float, default=0.0, help="how long a bulk operation takes")
    parser.add_argument("--item-failure-rate", type=float, default=0.0, help="share of bulk items that fail")
    options = parser.parse_args(argv)
    if not 0 <= options.port <= 65535:
        print(f"kustomer-sandbox: --port must be 0 to 65535, not {options.port}", file=sys.stderr)
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
    box.start()
    print(f"Kustomer sandbox on {box.url}  (baseUrl for the kustomer resource; any apiKey works)", flush=True)
    print(f"What it received: {box.url}/__sandbox/requests   Stop: Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        box.stop()
    return 0
