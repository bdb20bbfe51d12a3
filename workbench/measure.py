"""How the benchmarks measure: paired blocks of runs, their median and middle half, and a verdict only
when the whole middle half is on one side of the target (workbench/bench.py, workbench/bench_tls.py)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from workbench.worker import run_job

IMPORT_CODE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


class Row(NamedTuple):
    measure: str
    figures: str
    result: str
    target: str
    verdict: str  # yes, no, undecided, or "" when no verdict is given


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def spread(values: list[float]) -> tuple[float, float, float]:
    """The median and the middle half (25th and 75th percentiles) of `values`."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return median, q1, q3


def verdict(low: float, high: float, bound: float, quick: bool) -> str:
    """yes when the whole spread meets `value <= bound`, no when none of it does, else undecided."""
    if quick:
        return ""
    return "yes" if high <= bound else "no" if low > bound else "undecided"


def paired(name: str, pairs: int, ours: Callable[[], float], base: Callable[[], float]) -> list[tuple[float, float]]:
    """`pairs` measurements of both, each the mean of a block run back to back as ours, the baseline,
    the baseline, ours: a change in the machine's speed during the block (this VM's can double within
    seconds) hits both alike, to first order."""
    out = []
    for i in range(pairs):
        progress(f"{name}: pair {i + 1} of {pairs}")
        first, theirs, again, mine = ours(), base(), base(), ours()
        out.append(((first + mine) / 2, (theirs + again) / 2))
    return out


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
                Path(job_dir, script.name).write_bytes(script.read_bytes())
            done = subprocess.run(
                [sys.executable, "-c", IMPORT_CODE.format(module=module)],
                cwd=job_dir,
                capture_output=True,
                text=True,
                check=True,
            )
        return float(done.stdout)

    return measure
