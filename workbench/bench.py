"""Measure what the scripts cost, side by side with the plainest httpx code: `uv run bench`.

(a) a worker-style job of create_message (fresh process, module import, one POST to the sandbox)
    against the same job of workbench/naive_create_message.py, the naive port of the seed;
(b) import time of each script (compiled from a fresh copy, as on a worker) against `import httpx`;
(c) validating and encoding a 100-item bulk of typical and of maximum-size messages, in process;
(d) the import flow against a rate-limited sandbox whose bulk operations take 5 s: messages per
    minute (with the confirmation of every message), confirmation requests per batch, and 429s;
(e) the import flow at scale under Windmill Cloud's rules: 20,000 and 100,000 messages from a file
    in the workspace storage (`--scale N` for the larger), paced at 1,000 and at 300 requests a
    minute, then 1,000 inline: Python jobs and their own CPU seconds per batch, the longest job, each
    step's peak memory, the requests' pace against the budget and the busiest 6 s window, the
    bookkeeping (storage requests, bytes and time per batch), bytes Windmill would store, bytes the
    storage moves and keeps, the largest job result. `--only-scale` and `--no-scale` run one part;
(f) a cold worker-style job over TLS, create_message against the naive port, both trusting a test CA
    the way a production worker trusts Kustomer's (workbench/bench_tls.py), with a breakdown of the
    job's parts. `--only-tls` runs it alone.

Comparisons are paired: each pair is a block of four runs back to back, ours, the baseline, the
baseline, ours, and gives one ratio (or difference) of the block's means. The table shows the median
of those with their spread (the middle half, 25th to 75th percentile), and a verdict only when the
whole spread is on one side of the target; otherwise "undecided". `--quick` takes few samples and
prints figures without verdicts.
Progress goes to stderr.
"""

from __future__ import annotations

import json
import math
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from workbench import bench_tls
from workbench.cli import Parser
from workbench.local_flow import local_workspace, run_flow_job
from workbench.measure import Row, import_time, paired, progress, spread, timed_job, verdict
from workbench.paths import FLOWS, SCRIPTS, script_names
from workbench.sandbox import Sandbox

NAIVE = Path(__file__).with_name("naive_create_message.py")
MESSAGE = {
    "channel": "email",
    "app": "postmark",
    "direction": "in",
    "conversation": "5f9a3c1e2b4d6f8a0c1e3b5d",
    "preview": "Where is my order?",
    "externalId": "bench-1",
}


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


def validate_and_encode(runs: int, body: list[dict[str, Any]]) -> list[float]:
    """Milliseconds to check every message of `body` as bulk_create_messages does (its public
    `message_problems`, what the import flow checks too) and to encode it, per run. The size check
    is left out: `main` refuses a body over 1 MB by its size alone, before any field is looked at."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import bulk_create_messages

    def check() -> list[str]:
        return [p for i, m in enumerate(body) for p in bulk_create_messages.message_problems(m, f"body[{i}]")]

    assert check() == [], "the bench's messages must be valid"
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        check()
        json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def import_flow(limit: int, window: float, batches: int, paced: bool, bulk_seconds: float) -> dict[str, float]:
    """Run the import flow against a rate-limited sandbox whose operations take `bulk_seconds`.

    A limit of L requests per window allows L / 2 confirmed batches per window (a send and a read
    each): `bound` is that many messages a minute, and `share` the confirmed messages a minute of the
    whole flow over it. `paced` gives the flow max_requests_per_minute equal to the limit.
    """
    messages = [{"channel": "chat", "app": "bench", "preview": f"m{i}"} for i in range(batches * 100)]
    with Sandbox(rate_limit=limit, window=window, bulk_seconds=bulk_seconds) as sandbox:
        time.sleep(math.ceil(time.time() / window) * window - time.time())  # start as a window starts
        started = time.time()
        job = run_flow_job(
            FLOWS / "import_messages.flow",
            {
                "auth": {"apiKey": "bench-key-0123456789", "baseUrl": sandbox.url},
                "messages": messages,
                "max_requests_per_minute": round(limit * 60 / window) if paced else 0,
            },
        )
        elapsed = time.time() - started
        requests = [r for r in sandbox.requests if r["path"].startswith("/v1/")]
    report = job.result.get("extra", job.result) if isinstance(job.result, dict) else {}
    created = report.get("counts", {}).get("created", 0)
    first = math.floor(started / window)
    bound = limit / 2 * 100 * 60 / window
    return {
        "created": created / len(messages),
        "share": created / elapsed * 60 / bound,
        "bound": bound,
        "per_minute": created / elapsed * 60,
        "elapsed": elapsed,
        "reads_per_batch": sum(r["status"] == 200 for r in requests if r["method"] == "GET") / batches,
        "all_429": sum(r["status"] == 429 for r in requests),
        "late_429": sum(1 for r in requests if r["status"] == 429 and math.floor(r["at"] / window) > first),
    }


def history(count: int) -> bytes:
    """A history to import: JSON Lines of messages of about 500 bytes, as an email export gives."""
    text = "Hello, I am writing about my order; it has not arrived and the tracking page says nothing. " * 4
    lines = (
        {"channel": "email", "app": "bench", "direction": "in", "preview": f"{i} {text}", "externalId": f"h-{i}"}
        for i in range(count)
    )
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def import_at_scale(count: int, budget: int, inline: bool = False) -> dict[str, Any]:
    """The import flow under Cloud's rules on `count` messages (a file, or inline), paced at `budget`
    requests a minute against a sandbox that allows twice that: what Windmill would store, what the
    storage reads, writes and keeps, the largest result, each step's peak memory and longest job,
    Python jobs and their own CPU seconds per batch, and the pace of the requests against the budget."""
    data = history(count)
    args: dict[str, Any] = {"max_requests_per_minute": budget}
    with (
        local_workspace(cloud=True) as (workspace, storage),
        Sandbox(rate_limit=budget * 2, window=60.0, bulk_seconds=1.0) as sandbox,
    ):
        args["auth"] = {"apiKey": "bench-key-0123456789", "baseUrl": sandbox.url}
        if inline:
            args["messages"] = [json.loads(line) for line in data.splitlines()]
        else:
            storage.put("uploads/history.jsonl", data)
            args["messages_file"] = {"s3": "uploads/history.jsonl"}
        read, written, requests, busy = storage.bytes_read, storage.bytes_written, storage.requests, storage.busy

        checked: list[float] = []
        confirmed = [0]

        def log(line: str) -> None:  # every 50th batch confirmed, and how long prepare took
            if line.startswith("[send_group") and ": confirmed: " in line:
                confirmed[0] += 1
                if confirmed[0] % 50 == 0:
                    progress(f"(e) {confirmed[0]} of {count // 100} batches confirmed, {time.time() - started:.0f} s")
            if line.startswith("[prepare] Checked "):
                checked.append(float(line.split(" in ")[1].split(" s")[0]))

        started, jobs_cpu, own_cpu = time.time(), _cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF)
        job = run_flow_job(FLOWS / "import_messages.flow", args, workspace, log)
        elapsed = time.time() - started
        jobs_cpu, own_cpu = _cpu(resource.RUSAGE_CHILDREN) - jobs_cpu, _cpu(resource.RUSAGE_SELF) - own_cpu
        if job.exit_code != 0:
            raise SystemExit(f"bench: the import at scale failed: {str(job.result)[:500]}")
        batches = job.result["counts"]["messages"] / 100
        sent = sorted(r["at"] for r in sandbox.requests if r["path"].startswith("/v1/"))
        last_send = max(r["at"] for r in sandbox.requests if r["method"] == "POST")
        sending = [at for at in sent if at <= last_send]  # while the import still had batches to send
        kept = storage.objects("kustomer_import/")
        return {
            "input": len(data) if not inline else len(json.dumps(args["messages"], separators=(",", ":"))),
            "stored": workspace.stored_bytes,
            "storage": storage.bytes_read - read + storage.bytes_written - written,
            "storage_requests_per_batch": (storage.requests - requests) / batches,
            "storage_ms_per_batch": (storage.busy - busy) / batches * 1000,
            "kept": sum(v for k, v in kept.items() if not k.endswith(".jsonl")),
            "largest": workspace.largest_result,
            "peaks": {path.rsplit("/", 1)[-1]: kb for path, kb in sorted(workspace.peak_kb.items())},
            "longest": max(workspace.longest.values()),
            "python_jobs_per_batch": workspace.python_jobs / batches,
            "per_minute": count / elapsed * 60,
            "requests_per_minute": (len(sent) - 1) / (sent[-1] - sent[0]) * 60 if len(sent) > 1 else 0.0,
            "sending_per_minute": (len(sending) - 1) / (sending[-1] - sending[0]) * 60 if len(sending) > 1 else 0.0,
            "busiest_6s": busiest(sent, 6.0),
            "requests_per_batch": len(sent) / batches,
            "elapsed": elapsed,
            "429": sum(r["status"] == 429 for r in sandbox.requests),
            "prepare_per_minute": count / checked[0] * 60 if checked and checked[0] else 0.0,
            "jobs_cpu_per_batch": jobs_cpu / batches,  # CPU seconds of the Python jobs, per batch
            "stand_in_cpu_per_batch": own_cpu / batches,  # the sandbox, the storage and the runner here
        }


def flow_row(limit: int, window: float, batches: int, paced: bool, quick: bool) -> Row:
    how = "paced to the limit" if paced else "unpaced"
    flow = import_flow(limit, window, batches, paced, bulk_seconds=5.0)
    met = flow["created"] == 1 and flow["share"] >= 0.9 and flow["late_429"] == 0 and flow["reads_per_batch"] <= 1.2
    return Row(
        f"(d) import flow {how}, sandbox limit {limit} req / {window:.0f} s, operations take 5 s "
        f"({batches * 100} messages, confirmed)",
        f"{flow['per_minute']:.0f} msg/min confirmed ({flow['elapsed']:.0f} s), {flow['share']:.0%} of the "
        f"{flow['bound']:.0f} the budget allows (a send and a read a batch); {flow['created']:.0%} created",
        f"{flow['reads_per_batch']:.2f} confirmation requests per batch; 429s: {flow['all_429']:.0f}, "
        f"after the 1st window: {flow['late_429']:.0f}",
        "every message created, >= 90% of what the budget allows, 0 429s after the 1st window, <= 1.2 reads per batch",
        "" if quick else ("yes (1 run)" if met else "no (1 run)"),
    )


def busiest(moments: list[float], width: float) -> int:
    """The most of `moments` (sorted) in any half-open window [t, t + width)."""
    most, first = 0, 0
    for last, moment in enumerate(moments):
        while moments[first] <= moment - width:
            first += 1
        most = max(most, last - first + 1)
    return most


def scale_row(count: int, budget: int) -> Row:
    progress(f"(e) import {count:,} messages from a file under Cloud's rules, paced at {budget} requests/min")
    scale = import_at_scale(count, budget)
    mib = 1024 * 1024
    share = budget / 10  # the budget's share of a 6 s window
    pace = scale["sending_per_minute"] / budget
    met = (
        scale["stored"] <= 3 * scale["input"]
        and scale["storage"] <= 4 * scale["input"]
        and scale["largest"] <= 2_000_000
        and scale["python_jobs_per_batch"] <= 0.1
        and scale["jobs_cpu_per_batch"] <= 0.05
        and pace >= 0.9
        and scale["busiest_6s"] <= share
        and max(scale["peaks"].values()) <= 128 * 1024
        and scale["kept"] <= scale["input"] / 10
    )
    return Row(
        f"(e) import of {count:,} messages from a file ({scale['input'] / mib:.1f} MiB of JSON Lines), "
        f"Cloud's rules, {budget} requests/min",
        f"{scale['python_jobs_per_batch']:.3f} Python jobs per batch; CPU per batch: jobs "
        f"{scale['jobs_cpu_per_batch']:.3f} s, stand-ins {scale['stand_in_cpu_per_batch']:.3f} s; longest job "
        f"{scale['longest']:.0f} s; peak memory "
        + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in scale["peaks"].items())
        + f"; prepare checks {scale['prepare_per_minute']:,.0f} messages/min",
        f"requests at {pace:.0%} of the budget while batches remain to send ({scale['sending_per_minute']:.0f}/min; "
        f"{scale['requests_per_minute']:.0f}/min with the last reads, 5 s after the last send; "
        f"{scale['requests_per_batch']:.2f} a batch), busiest 6 s: {scale['busiest_6s']} (share {share:.0f}); "
        f"{scale['per_minute']:.0f} msg/min confirmed ({scale['elapsed']:.0f} s); 429s: {scale['429']}; "
        f"bookkeeping per batch: {scale['storage_requests_per_batch']:.1f} storage requests, "
        f"{scale['storage'] / (count / 100) / 1000:.0f} KB, {scale['storage_ms_per_batch']:.1f} ms of the storage; "
        f"stored {scale['stored'] / scale['input']:.2f} x the input, "
        f"storage moved {scale['storage'] / scale['input']:.2f} x, "
        f"kept {scale['kept'] / scale['input']:.3f} x besides the report files; largest result "
        f"{scale['largest'] / 1000:.1f} KB",
        "<= 0.1 jobs and <= 0.05 CPU s per batch, requests >= 90% of the budget, no 6 s window over its share, "
        "<= 128 MiB a job; stored <= 3 x, storage <= 4 x, kept <= 0.1 x, no result over 2 MB",
        "yes (1 run)" if met else "no (1 run)",
    )


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def tls_row(pairs: int, quick: bool) -> Row:
    measure = (
        "(f) worker-style cold job over TLS (a test CA in the system store and in certifi's), "
        "create_message vs naive httpx"
    )
    reason = bench_tls.unavailable()
    if reason:
        return Row(measure, f"not measured here: {reason}", "", "<= 0.90", "")
    progress("(f) cold jobs over TLS, in a private mount namespace")
    figures = bench_tls.measure(pairs, MESSAGE)
    return Row(
        measure,
        f"{figures['ours_job'] * 1000:.1f} ms vs {figures['naive_job'] * 1000:.1f} ms; " + bench_tls.breakdown(figures),
        f"ratio {figures['ratio']:.3f} (middle half {figures['low']:.3f} to {figures['high']:.3f})",
        "<= 0.90",
        verdict(figures["low"], figures["high"], 0.90, quick),
    )


def job_row(pairs: int, quick: bool) -> Row:
    """(a) a worker-style job of create_message against the naive port's, over loopback."""
    with Sandbox() as sandbox:
        args = {"auth": {"apiKey": "bench-key-0123456789", "baseUrl": sandbox.url}, "body": MESSAGE}
        samples = paired("(a) job", pairs, timed_job(SCRIPTS / "create_message.py", args), timed_job(NAIVE, args))
    ratio, low, high = spread([ours / base for ours, base in samples])
    ours_ms, base_ms = (statistics.median(s[i] for s in samples) * 1000 for i in (0, 1))
    return Row(
        "(a) worker-style job, create_message vs naive httpx",
        f"{ours_ms:.1f} ms vs {base_ms:.1f} ms",
        f"ratio {ratio:.3f} (middle half {low:.3f} to {high:.3f})",
        "<= 1.10",
        verdict(low, high, 1.10, quick),
    )


def import_row(name: str, pairs: int, quick: bool) -> Row:
    """(b) importing a script, compiled from a fresh copy, against `import httpx`."""
    samples = paired(f"(b) import {name}", pairs, import_time(SCRIPTS / f"{name}.py"), import_time(None))
    extra, low, high = spread([(ours - base) * 1000 for ours, base in samples])
    ours_ms, base_ms = (statistics.median(s[i] for s in samples) * 1000 for i in (0, 1))
    return Row(
        f"(b) import {name} vs import httpx",
        f"{ours_ms:.1f} ms vs {base_ms:.1f} ms",
        f"+{extra:.1f} ms (middle half {low:+.1f} to {high:+.1f})",
        "<= +10 ms",
        verdict(low, high, 10.0, quick),
    )


def validation_row(label: str, body: list[dict[str, Any]], runs: int, quick: bool) -> Row:
    """(c) validating and encoding one bulk body, in process."""
    progress(f"(c) validate and encode 100 {label} messages")
    median, low, high = spread(validate_and_encode(runs, body))
    return Row(
        f"(c) 100 {label} messages: validate + encode",
        f"{median:.2f} ms",
        f"middle half {low:.2f} to {high:.2f} ms",
        "<= 5 ms",
        verdict(low, high, 5.0, quick),
    )


def inline_row(quick: bool) -> Row:
    """(e) a small import given inline: what Windmill stores of it, and the largest result."""
    progress("(e) import of 1,000 messages inline under Cloud's rules")
    small = import_at_scale(1000, 1000, inline=True)
    mib = 1024 * 1024
    return Row(
        f"(e) import of 1,000 messages inline ({small['input'] / 1000:.0f} KB of JSON)",
        f"stored {small['stored'] / small['input']:.1f} x the input ({small['stored'] / mib:.1f} MiB); "
        f"largest result {small['largest'] / 1000:.1f} KB",
        "Windmill copies the flow input into the one loop iteration (one job takes the 10 batches)",
        "no result over 2 MB",
        "" if quick else ("yes (1 run)" if small["largest"] <= 2_000_000 else "no (1 run)"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples, figures without verdicts")
    parser.add_argument("--scale", type=int, default=100_000, help="messages of the import at scale (e)")
    parser.add_argument("--only-scale", action="store_true", help="measure (e) only")
    parser.add_argument("--no-scale", action="store_true", help="measure (a) to (d) and (f) only")
    parser.add_argument("--only-tls", action="store_true", help="measure (f) only")
    options = parser.parse_args(argv)
    quick = options.quick
    pairs = 5 if quick else 30
    rows: list[Row] = []

    if not options.only_scale:
        rows.append(tls_row(pairs, quick))
    if not (options.only_scale or options.only_tls):
        rows.append(job_row(pairs, quick))
        rows += [import_row(name, pairs, quick) for name in script_names()]
        typical = [dict(MESSAGE, externalId=f"bench-{i}", _clientRef=f"r{i}") for i in range(100)]
        rows.append(validation_row("typical (like examples/)", typical, pairs * 3, quick))
        rows.append(validation_row("max-size (1.7 MB)", [max_message(i) for i in range(100)], pairs * 3, quick))
        limit, window, batches = (2, 4.0, 6) if quick else (3, 10.0, 24)
        for paced in (True, False):
            how = "paced to the limit" if paced else "unpaced"
            progress(f"(d) import flow {how}: {batches * 100} messages, sandbox limit {limit} req / {window:.0f} s")
            rows.append(flow_row(limit, window, batches, paced, quick))
    if not (options.no_scale or options.only_tls):
        for count in (5_000,) if quick else (20_000, options.scale):
            rows += [scale_row(count, budget) for budget in ((1000,) if quick else (1000, 300))]
        rows.append(inline_row(quick))

    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {pairs} pairs per comparison"
        + (" (quick: figures only, no verdicts)" if quick else "")
    )
    print("| measure | figures | result | target | met |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.measure} | {row.figures} | {row.result} | {row.target} | {row.verdict or '-'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
