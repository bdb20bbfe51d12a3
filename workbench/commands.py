"""The console commands of pyproject.toml. Each imports its tool only once it is ready for Ctrl-C: an
interrupt while the tool loads (a quarter of a second for local-run) or wherever the tool has nothing
more precise to say is one line and exit 130, never a traceback. The tools say more where they know
more (local-run and demo stop the running job, deploy keeps what it pushed)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C


def interruptible(prog: str, said: str, main: Callable[[], int]) -> int:
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted {said}", file=sys.stderr, flush=True)
        return INTERRUPTED


def _tool(prog: str, said: str, module: str) -> int:
    """Run `module`'s main, imported inside the interrupt's reach."""
    return interruptible(prog, said, lambda: int(importlib.import_module(module).main()))


def local_run() -> int:
    return _tool("local-run", "before the job started: nothing was run", "workbench.local_run")


def demo() -> int:
    return _tool("demo", "before it started: nothing was run", "workbench.demo")


def kustomer_sandbox() -> int:
    return _tool("kustomer-sandbox", "before it started: nothing was listening", "workbench.sandbox")


def deploy() -> int:
    return _tool("deploy", "before anything was pushed", "workbench.deploy")


def bench() -> int:
    return _tool("bench", "before the measures ended: no table was printed", "workbench.bench")
