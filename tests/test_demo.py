"""`uv run demo`, the README's main command, works offline and never touches a real org by surprise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workbench.paths import ROOT

DEMO = Path(sys.executable).parent / "demo"


def run_demo(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUSTOMER_")}
    if key:
        env["KUSTOMER_API_KEY"] = key
    return subprocess.run(
        [str(DEMO), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_demo_runs_the_scripts_against_the_sandbox_and_shows_each_bulk_messages_outcome() -> None:
    done = run_demo()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Kustomer sandbox running on http://127.0.0.1:" in out
    assert "Kustomer received: POST /v1/messages\n" in out
    assert "Kustomer received: POST /v1/messages/bulk\n" in out
    assert '"_clientRef": "ticket-7-2"' in out
    assert out.count("Job result (what the next flow step reads as results.<step>):") == 3
    assert '"type": "bulk"' in out
    assert "=== wait_for_bulk_results  with the bulk_id " in out  # then what became of each message
    assert '"_clientRef": "ticket-7-2",\n          "status": "created"' in out
    assert "Job log: Bulk operation " in out
    assert "Kustomer received: nothing (the job failed before sending)" in out
    assert "body.chanel: unknown field; did you mean 'channel'?" in out


def test_demo_with_a_key_but_without_yes_stays_on_the_sandbox() -> None:
    done = run_demo(key="a-real-looking-key-123")
    assert done.returncode == 0, done.stderr
    assert "would record the example messages in your real Kustomer org" in done.stdout
    assert "run `uv run demo --yes` to use the real API" in done.stdout
    assert "Kustomer sandbox running on http://127.0.0.1:" in done.stdout
    assert "a-real-looking-key-123" not in done.stdout + done.stderr


def test_demo_yes_against_an_unreachable_api_says_which_step_failed_and_stops() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUSTOMER_")}
    env.update(KUSTOMER_API_KEY="k-unreachable-0123", KUSTOMER_BASE_URL="http://127.0.0.1:9")  # nothing listens
    done = subprocess.run(
        [str(DEMO), "--yes"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert "Traceback" not in done.stdout + done.stderr
    assert "Job failed (KustomerConnectionError)" in done.stdout
    assert "The demo stops here: the bulk request above failed" in done.stdout
    assert done.returncode == 1
    assert "k-unreachable-0123" not in done.stdout + done.stderr
