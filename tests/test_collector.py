"""Each script pauses Python's cyclic collector while httpx is imported and then freezes what the
imports made (the shared part "collector"; `uv run bench`, row (f), shows what it saves). A job, and
a dedicated worker that runs many jobs in one process, must still collect what they make.

Each case runs in a fresh process, as a Windmill job does: the test process has long since imported
the scripts."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import pytest

from workbench.paths import ROOT
from workbench.sandbox import Sandbox

SCRIPTS = ("create_message", "bulk_create_messages", "wait_for_bulk_results")
MESSAGE = {"conversation": "5f9a3c1e2b4d6f8a0c1e3b5d", "app": "postmark", "channel": "email", "direction": "in"}


def fresh_process(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT / "scripts" / "kustomer",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("script", SCRIPTS)
def test_importing_a_script_leaves_the_collector_on_and_what_httpx_made_frozen(script: str) -> None:
    enabled, frozen = fresh_process(f"""
        import gc
        import {script}
        print(gc.isenabled(), gc.get_freeze_count())
    """).split()
    assert enabled == "True"
    assert int(frozen) > 10_000  # httpx's modules, classes and functions: out of every later collection


def test_a_collector_the_host_turned_off_stays_off() -> None:
    assert fresh_process("import gc; gc.disable(); import create_message; print(gc.isenabled())") == "False"


def test_a_dedicated_worker_freezes_once_and_collects_each_jobs_own_objects() -> None:
    """Thirty jobs in one process, as a dedicated worker runs them: the first client freezes what
    httpcore's import made, and no later job adds to what is frozen or to what stays tracked."""
    with Sandbox() as sandbox:
        counts = json.loads(
            fresh_process(f"""
                import gc, json
                import create_message
                auth = {{"apiKey": "test-key-0123456789abcdef", "baseUrl": {sandbox.url!r}}}
                counts = []
                for i in range(30):
                    create_message.main(auth, dict({MESSAGE!r}, externalId=f"collector-{{i}}"))
                    leftover = [[i]]
                    leftover[0].append(leftover)  # a cycle only the collector can free
                    del leftover
                    gc.collect()
                    counts.append([gc.get_freeze_count(), len(gc.get_objects())])
                print(json.dumps(counts))
            """)
        )
        created = len([r for r in sandbox.state.requests if r["method"] == "POST"])
    assert created == 30
    frozen = [f for f, _ in counts]
    assert frozen[0] > frozen_at_import(), "the first client froze what httpcore's import made"
    # A frozen object that dies by its refcount leaves the frozen set (a few of the first job's own,
    # made before the freeze, do), so the count may fall; a second gc.freeze() would raise it.
    rises = [(i, b - a) for i, (a, b) in enumerate(itertools.pairwise(frozen), 2) if b > a]
    assert not rises, f"later jobs froze more (job, how many): {rises}"
    tracked = [t for _, t in counts]
    assert tracked[-1] - tracked[4] < 100, f"objects pile up job after job: {tracked}"


def frozen_at_import() -> int:
    return int(fresh_process("import gc, create_message; print(gc.get_freeze_count())"))
