"""Bench (f): cold worker-style jobs over TLS, create_message against the naive httpx port.

Production jobs talk HTTPS to Kustomer, trusting its CA through the system's store (ours) or certifi's
bundle (httpx's default, so the naive port's). To measure that path on loopback without telling either
script anything special, the measurement runs in a private mount namespace (`unshare --mount`, as
root) where a test CA made by trustme is added to both stores by bind mounts over copies: the system's
hashed certificate directory and certifi's cacert.pem. Nothing outside the namespace changes.

It prints the paired ratio and a breakdown of one job, from marks taken inside real jobs: its start
(Python's, then the worker's wrapper), importing the script (httpx with it), `main` (httpcore's
import at the first client, the SSL context, validation, the connection, handshake and request), and
the result with the process's exit. Compiling the script, building the SSL context and validating
the body are measured apart, in fresh processes, to say how much of those stretches they are.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.measure import paired, progress, spread, timed_job
from workbench.paths import SCRIPTS
from workbench.sandbox import Sandbox
from workbench.worker import run_job

SCRIPT = SCRIPTS / "create_message.py"
NAIVE = Path(__file__).with_name("naive_create_message.py")
JOB_PARTS = Path(__file__).with_name("job_files") / "job_parts.py"  # run in a fresh process per script

# Times taken inside a real job (worker.run_job's `probe`, run in the wrapper just before it imports
# the script): when the wrapper's own imports were done, when the script was imported, when `main`
# began and returned, and when the exit began (atexit). The parent notes when the job started and ended.
_MARKS = r"""
import atexit as _atexit, functools as _functools, time as _time
_marks = {{"wrapper": _time.time()}}
__import__("{module}")
_job = sys.modules["{module}"]
_marks["imported"] = _time.time()
_untimed_main = _job.main


@_functools.wraps(_untimed_main)
def _timed_main(*args, **kwargs):
    _marks["main"] = _time.time()
    try:
        return _untimed_main(*args, **kwargs)
    finally:
        _marks["returned"] = _time.time()


_job.main = _timed_main


@_atexit.register
def _note_marks():
    _marks["exit"] = _time.time()
    with open({out!r}, "w") as out:
        json.dump(_marks, out)
"""


def unavailable() -> str:
    """Why the measurement cannot run here; empty when it can."""
    if os.geteuid() != 0:
        return "needs root, for a private mount namespace"
    missing = [tool for tool in ("unshare", "mount", "openssl") if not shutil.which(tool)]
    if missing:
        return f"needs {', '.join(missing)}"
    if not ssl.get_default_verify_paths().capath:
        return "the system has no hashed certificate directory"
    return ""


def measure(pairs: int, message: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement in its namespace and return its figures."""
    import certifi
    import trustme

    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        server = ca.issue_cert("localhost", "127.0.0.1")
        chain, key = Path(tmp, "server.pem"), Path(tmp, "server.key")
        chain.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
        server.private_key_pem.write_to_path(str(key))
        ca_pem = ca.cert_pem.bytes()
        system = os.path.realpath(str(ssl.get_default_verify_paths().capath))
        certs = Path(tmp, "certs")
        shutil.copytree(system, certs, symlinks=True)
        Path(certs, "bench-test-ca.pem").write_bytes(ca_pem)
        subject = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", str(certs / "bench-test-ca.pem")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(certs, f"{subject}.0").symlink_to("bench-test-ca.pem")
        bundle = Path(tmp, "cacert.pem")
        bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca_pem)
        mounts = 'mount --bind "$1" "$2" && mount --bind "$3" "$4" && shift 4 && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mounts, "sh"]
        command += [str(certs), system, str(bundle), certifi.where()]
        command += [sys.executable, "-m", "workbench.bench_tls", str(pairs), str(chain), str(key), json.dumps(message)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: (f) failed in its namespace (exit {done.returncode})")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def _inside(pairs: int, chain: str, key: str, message: dict[str, Any]) -> dict[str, Any]:
    """In the namespace: paired cold jobs against a TLS sandbox, then the parts, apart."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key)
    with Sandbox(ssl_context=context) as box:
        auth = {"apiKey": "bench-key-0123456789", "baseUrl": box.url.replace("127.0.0.1", "localhost")}
        args = {"auth": auth, "body": message}
        samples = paired("(f) job over TLS", pairs, timed_job(SCRIPT, args), timed_job(NAIVE, args))
        ratio, low, high = spread([ours / base for ours, base in samples])
        starts: list[float] = []
        parts: dict[str, list[dict[str, float]]] = {"ours": [], "naive": []}
        for i in range(max(5, pairs // 2)):
            progress(f"(f) parts: run {i + 1}")
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            starts.append(time.perf_counter() - started)
            for who, script in (("ours", SCRIPT), ("naive", NAIVE)):
                parts[who].append(_marked_job(script, args) | _apart(who, script, message))
    median = {
        f"{who}_{name}": statistics.median(run[name] for run in runs) for who, runs in parts.items() for name in runs[0]
    }
    median["start"] = statistics.median(starts)
    median["ours_job"], median["naive_job"] = (statistics.median(s[i] for s in samples) for i in (0, 1))
    return {"ratio": ratio, "low": low, "high": high, **median}


def _marked_job(script: Path, args: dict[str, Any]) -> dict[str, float]:
    """One worker-style job with its marks: seconds in each stretch of it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "marks.json")
        started = time.time()
        job = run_job(script, args, probe=_MARKS.format(module=f"f.kustomer.{script.stem}", out=str(out)))
        ended = time.time()
        if job.exit_code != 0:
            raise SystemExit(f"bench: {script.name} failed: {job.result}")
        marks = json.loads(out.read_text())
    return {
        "until_wrapper": marks["wrapper"] - started,
        "import": marks["imported"] - marks["wrapper"],
        "main": marks["returned"] - marks["main"],
        "end": ended - marks["exit"],
    }


def _apart(who: str, script: Path, message: dict[str, Any]) -> dict[str, float]:
    command = [sys.executable, str(JOB_PARTS), who, str(script), json.dumps(message)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def breakdown(figures: dict[str, Any]) -> str:
    """One job's stretches, ours / naive, in ms (medians), with the parts measured apart inside them."""
    ms = {k: v * 1000 for k, v in figures.items() if isinstance(v, float)}

    def both(name: str, digits: int = 0) -> str:
        return f"{ms['ours_' + name]:.{digits}f} / {ms['naive_' + name]:.{digits}f}"

    return (
        f"ours / naive: start (Python's {ms['start']:.0f}, then the wrapper's imports) {both('until_wrapper')}; "
        f"importing the script {both('import')}, of which compiling it {both('compile', 1)}; main {both('main')}, "
        f"of which the SSL context {both('ssl', 1)} and validation {both('validation', 2)} (the rest: httpcore's "
        f"import, connection, handshake, request); the result and the exit {both('end')}"
    )


if __name__ == "__main__":
    given_pairs, given_chain, given_key, given_message = sys.argv[1:5]
    print(json.dumps(_inside(int(given_pairs), given_chain, given_key, json.loads(given_message))))
