"""Measure what the scripts cost, side by side with the plainest httpx code: `uv run bench`.

(a) a worker-style job of create_message (fresh process, module import, one POST to the sandbox)
    against the same job of workbench/naive_create_message.py, the naive port of the seed;
(b) import time of each script (compiled from a fresh copy, as on a worker) against `import httpx`;
(c) validating and encoding a 100-item bulk of maximum-size messages, in process;
(d) the import flow's messages per minute against a sandbox rate limit, against the bound it sets.
Each pair is measured interleaved in one run. Prints a table; `--quick` takes fewer samples.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.sandbox import Sandbox
from workbench.worker import ROOT, SCRIPTS, run_job

NAIVE = Path(__file__).with_name("naive_create_message.py")
MESSAGE = {
    "channel": "email",
    "app": "postmark",
    "direction": "in",
    "conversation": "5f9a3c1e2b4d6f8a0c1e3b5d",
    "preview": "Where is my order?",
    "externalId": "bench-1",
}
IMPORT_CODE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def interleaved(runs: int, *measures: Callable[[], float]) -> list[list[float]]:
    """Alternate the measures run by run, so a slow moment of the machine hits them alike."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(runs):
        for i, measure in enumerate(measures):
            samples[i].append(measure())
    return samples


def timed_job(script: Path, args: dict[str, Any]) -> Callable[[], float]:
    def measure() -> float:
        started = time.perf_counter()
        job = run_job(script, args)
        elapsed = time.perf_counter() - started
        if job.exit_code != 0:
            raise SystemExit(f"bench: {script.name} failed: {job.result}")
        return elapsed

    return measure


def import_time(script: Path | None) -> Callable[[], float]:
    """Seconds to import `script` (or httpx alone) in a fresh process, from a fresh copy as a worker
    writes it, so the script's compilation is paid as it is on every Windmill job."""
    module = script.stem if script else "httpx"

    def measure() -> float:
        with tempfile.TemporaryDirectory() as job_dir:
            if script:
                shutil.copyfile(script, Path(job_dir) / script.name)
            done = subprocess.run(
                [sys.executable, "-c", IMPORT_CODE.format(module=module)],
                cwd=job_dir,
                capture_output=True,
                text=True,
                check=True,
            )
        return float(done.stdout)

    return measure


def max_message(i: int) -> dict[str, Any]:
    """A message with every field at its limit."""
    oid = f"{i:024x}"
    return {
        "id": oid,
        "externalId": "e" * 256,
        "customer": oid,
        "conversation": oid,
        "reference": {"message": oid, "type": "replyAll"},
        "channel": "email",
        "preview": "p" * 10240,
        "subject": "s" * 256,
        "direction": "in",
        "app": "a" * 64,
        "size": 10240,
        "related": oid,
        "status": "error",
        "error": {
            "status": 550,
            "code": "c",
            "title": "t",
            "detail": "d" * 200,
            "source": {"k": 1},
            "meta": {"k": 2},
            "links": {"k": 3},
        },
        "errorAt": "2026-11-20T09:15:00.123Z",
        "auto": False,
        "sentAt": "2026-11-20T09:15:00Z",
        "source": "bulk",
        "shortcuts": [oid] * 1,
        "kbArticles": [oid],
        "attachments": [
            {
                "_id": f"{j:024x}",
                "name": "n.pdf",
                "contentType": "application/pdf",
                "contentLength": 10,
                "sourceId": oid,
            }
            for j in range(5)
        ],
        "location": {
            "name": "n",
            "address": "a" * 256,
            "address2": "b" * 256,
            "address3": "c" * 256,
            "latitude": 48.85,
            "longitude": 2.35,
            "countryCode": "FR",
            "countryName": "n" * 64,
            "regionCode": "IF",
            "regionName": "r" * 128,
            "cityName": "c" * 128,
            "zipCode": "z" * 30,
            "areaCode": "a" * 30,
        },
        "meta": {f"m{k}": k for k in range(100)},
        "custom": {f"c{k}Str": "v" for k in range(100)},
        "sentiment": {"polarity": -1, "confidence": 0.5},
        "createdAt": "2026-11-20T09:15:00Z",
        "modifiedAt": "2026-11-20T09:15:00Z",
        "createdBy": oid,
        "modifiedBy": oid,
        "importedAt": "2026-11-22T00:00:00Z",
        "lang": "l" * 100,
        "queue": {"id": oid},
        "_clientRef": f"r{i}",
    }


def validate_and_encode(runs: int, body: list[dict[str, Any]]) -> tuple[float, float]:
    """Median milliseconds to validate `body` as bulk_create_messages does, and to encode it."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import bulk_create_messages

    assert bulk_create_messages._bulk_problems(body) == [], "the bench's messages must be valid"
    checks, encodes = [], []
    for _ in range(runs):
        started = time.perf_counter()
        bulk_create_messages._bulk_problems(body)
        checked = time.perf_counter()
        json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        checks.append(checked - started)
        encodes.append(time.perf_counter() - checked)
    return median_ms(checks), median_ms(encodes)


def flow_throughput(limit: int, window: float, batches: int, paced: bool) -> dict[str, float]:
    """Run the import flow against a rate-limited sandbox; how full each rate-limit window was.

    The bound a limit of L requests per window sets is L bulk requests (L x 100 messages) per window.
    The share is the accepted requests per window over L, averaged over every window but the last
    (which holds what is left over), so it does not depend on where the import ends in its window.
    `paced` gives the flow max_requests_per_minute equal to the limit.
    """
    from workbench.local_flow import run_flow

    messages = [{"channel": "chat", "app": "bench", "preview": f"m{i}"} for i in range(batches * 100)]
    with Sandbox(rate_limit=limit, window=window) as sandbox:
        time.sleep(math.ceil(time.time() / window) * window - time.time())  # start as a window starts
        started = time.time()
        run_flow(
            ROOT / "flows" / "kustomer" / "import_messages.flow",
            {
                "auth": {"apiKey": "bench", "baseUrl": sandbox.url},
                "messages": messages,
                "max_requests_per_minute": round(limit * 60 / window) if paced else 0,
            },
        )
        elapsed = time.time() - started
        requests = [r for r in sandbox.requests if r["path"] == "/v1/messages/bulk"]
    first = math.floor(started / window)
    windows: dict[int, int] = {}
    for r in requests:
        if r["status"] == 200:
            index = math.floor(r["at"] / window) - first
            windows[index] = windows.get(index, 0) + 1
    full = [windows.get(i, 0) for i in range(max(windows))]  # every window but the last
    share = statistics.mean(full) / limit if full else 1.0
    return {
        "rate": share * limit * 100 * 60 / window,
        "bound": limit * 100 * 60 / window,
        "share": share,
        "late_429": sum(1 for r in requests if r["status"] == 429 and math.floor(r["at"] / window) > first),
        "all_429": sum(1 for r in requests if r["status"] == 429),
        "elapsed": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    options = parser.parse_args(argv)
    runs = 5 if options.quick else 30

    rows = []
    with Sandbox() as sandbox:
        args = {"auth": {"apiKey": "bench-key", "baseUrl": sandbox.url}, "body": MESSAGE}
        ours, naive = interleaved(runs, timed_job(SCRIPTS / "create_message.py", args), timed_job(NAIVE, args))
    ratio = statistics.median(ours) / statistics.median(naive)
    rows.append(
        (
            "(a) worker-style job, create_message vs naive httpx",
            f"{median_ms(ours):.1f} ms vs {median_ms(naive):.1f} ms",
            f"ratio {ratio:.3f}",
            "<= 1.10",
            ratio <= 1.10,
        )
    )

    plain, create, bulk = interleaved(
        runs,
        import_time(None),
        import_time(SCRIPTS / "create_message.py"),
        import_time(SCRIPTS / "bulk_create_messages.py"),
    )
    for name, samples in (("create_message", create), ("bulk_create_messages", bulk)):
        extra = median_ms(samples) - median_ms(plain)
        rows.append(
            (
                f"(b) import {name} vs import httpx",
                f"{median_ms(samples):.1f} ms vs {median_ms(plain):.1f} ms",
                f"+{extra:.1f} ms",
                "<= +10 ms",
                extra <= 10,
            )
        )

    checks, encodes = validate_and_encode(runs * 3, [max_message(i) for i in range(100)])
    rows.append(
        (
            "(c) 100 max-size messages (1.7 MB): validate + encode",
            f"{checks:.2f} ms + {encodes:.2f} ms",
            f"{checks + encodes:.2f} ms",
            "<= 5 ms",
            checks + encodes <= 5,
        )
    )
    typical = [dict(MESSAGE, externalId=f"bench-{i}", _clientRef=f"r{i}") for i in range(100)]
    checks, encodes = validate_and_encode(runs * 3, typical)
    rows.append(
        (
            "(c) 100 typical messages (like examples/): validate + encode",
            f"{checks:.2f} ms + {encodes:.2f} ms",
            f"{checks + encodes:.2f} ms",
            "<= 5 ms",
            checks + encodes <= 5,
        )
    )

    limit, window, batches = (2, 4.0, 6) if options.quick else (3, 10.0, 24)
    for paced in (True, False):
        flow = flow_throughput(limit, window, batches, paced)
        how = "paced to the limit" if paced else "unpaced"
        rows.append(
            (
                f"(d) import flow {how}, sandbox limit {limit} req / {window:.0f} s ({batches * 100} messages)",
                f"{flow['rate']:.0f} msg/min vs bound {flow['bound']:.0f} ({flow['elapsed']:.0f} s)",
                f"{flow['share']:.0%}; 429s: {flow['all_429']}, after the 1st window: {flow['late_429']:.0f}",
                ">= 90%, 0 after the 1st window",
                flow["share"] >= 0.9 and flow["late_429"] == 0,
            )
        )

    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {runs} samples per figure (median)"
    )
    print("| measure | figures | result | target | met |")
    print("|---|---|---|---|---|")
    for name, figures, result, target, met in rows:
        print(f"| {name} | {figures} | {result} | {target} | {'yes' if met else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
