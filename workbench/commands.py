"""The console commands of pyproject.toml. Each imports its tool only once it is ready for Ctrl-C: an
interrupt while the tool loads (a quarter of a second for local-run) or wherever the tool has nothing
more precise to say is one line and exit 130, never a traceback. The tools say more where they know
more (local-run and demo stop the running job, deploy keeps what it pushed)."""

from __future__ import annotations

import sys
from collections.abc import Callable

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C


def interruptible(prog: str, said: str, main: Callable[[], int]) -> int:
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted {said}", file=sys.stderr, flush=True)
        return INTERRUPTED


def local_run() -> int:
    def run() -> int:
        from workbench.local_run import main

        return main()

    return interruptible("local-run", "before the job started: nothing was run", run)


def demo() -> int:
    def run() -> int:
        from workbench.demo import main

        return main()

    return interruptible("demo", "before it started: nothing was run", run)


def kustomer_sandbox() -> int:
    def run() -> int:
        from workbench.sandbox import main

        return main()

    return interruptible("kustomer-sandbox", "before it started: nothing was listening", run)


def deploy() -> int:
    def run() -> int:
        from workbench.deploy import main

        return main()

    return interruptible("deploy", "before anything was pushed", run)


def bench() -> int:
    def run() -> int:
        from workbench.bench import main

        return main()

    return interruptible("bench", "before the measures ended: no table was printed", run)
