"""Bench (f): cold worker-style jobs over TLS, create_message against the naive httpx port.

Production jobs talk HTTPS to Kustomer, trusting its CA through the system's store (ours) or certifi's
bundle (httpx's default, so the naive port's). To measure that path on loopback without telling either
script anything special, the measurement runs in a private mount namespace (`unshare --mount`, as
root) where a test CA made by trustme is added to both stores by bind mounts over copies: the system's
hashed certificate directory and certifi's cacert.pem. Nothing outside the namespace changes.

It prints the paired ratio and a breakdown of one job's parts, each measured apart in fresh processes:
Python's start, `import httpx` (as each script's top level does it), compiling the script, building
the SSL context, validating the body, the process's exit, and the rest (the worker's wrapper,
httpcore's import at the first client, the connection, the handshake, the request).
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

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "kustomer" / "create_message.py"
NAIVE = Path(__file__).with_name("naive_create_message.py")

# One fresh process per script: the parts of its job that can be timed apart. The script's own top
# level imports httpx (ours with the collector paused, see its "collector" part); a first client is
# made as the job makes it, then the process ends, and the parent times that end (the exit).
_PARTS = r"""
import json, sys, time
T = time.perf_counter
who, path, message = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {}
source = open(path).read()
t = T(); code = compile(source, path, "exec"); out["compile"] = T() - t
m = {"__name__": "job"}
t = T(); exec(code, m); out["imports"] = T() - t
httpx = m["httpx"]
if who == "ours":
    t = T(); context = m["_trust"](None, None); out["ssl"] = T() - t
    t = T()
    body, problems = m["_given_body"](message)
    problems = problems or m["_size_problems"](body, "body")
    problems = problems or m["_message_problems"](body, "body", m["CREATE_REQUIRED"])
    problems += m["_auth_problems"]({"apiKey": "bench-key-0123456789"}) + m["_token_problems"](body, "body")
    out["validation"] = T() - t
    httpx.Client(verify=context).close()
    m["_freeze_once"]()  # as _Exchange.client() does after its first client
else:
    t = T(); context = httpx.create_ssl_context(); out["ssl"] = T() - t
    out["validation"] = 0.0
    httpx.Client(verify=context).close()
out["done"] = time.time()
print(json.dumps(out), flush=True)
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
    from workbench.bench import paired, progress, spread, timed_job
    from workbench.sandbox import Sandbox

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
            done = subprocess.run(
                [sys.executable, "-c", _PARTS, who, str(script), json.dumps(message)],
                capture_output=True,
                text=True,
                check=True,
            )
            ended = time.time()
            figures = json.loads(done.stdout)
            figures["exit"] = ended - figures.pop("done")
            parts[who].append(figures)
    median = {
        f"{who}_{name}": statistics.median(run[name] for run in runs) for who, runs in parts.items() for name in runs[0]
    }
    median["start"] = statistics.median(starts)
    median["ours_job"], median["naive_job"] = (statistics.median(s[i] for s in samples) for i in (0, 1))
    return {"ratio": ratio, "low": low, "high": high, **median}


def breakdown(figures: dict[str, Any]) -> str:
    """One job's parts, ours / naive, in ms; "the rest" is the job less the parts measured apart."""
    ms = {k: v * 1000 for k, v in figures.items() if isinstance(v, float)}
    names = ("imports", "compile", "ssl", "validation", "exit")
    rest = {who: ms[f"{who}_job"] - ms["start"] - sum(ms[f"{who}_{n}"] for n in names) for who in ("ours", "naive")}

    def both(name: str, digits: int = 1) -> str:
        return f"{ms['ours_' + name]:.{digits}f} / {ms['naive_' + name]:.{digits}f}"

    return (
        f"ours / naive: Python start {ms['start']:.0f}, import httpx {both('imports', 0)}, compile {both('compile')}, "
        f"SSL context {both('ssl')}, validation {both('validation', 2)}, exit {both('exit', 0)}, the rest (wrapper, "
        f"httpcore's import, connection, handshake, request) {rest['ours']:.0f} / {rest['naive']:.0f} ms"
    )


if __name__ == "__main__":
    given_pairs, given_chain, given_key, given_message = sys.argv[1:5]
    print(json.dumps(_inside(int(given_pairs), given_chain, given_key, json.loads(given_message))))
