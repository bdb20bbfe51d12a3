"""The faults a real Windmill gives a flow run, at chosen points, for the local flow runner.

Windmill runs a step at least once, and a run can stop anywhere (shared reference, sections 8-9):

- **a zombie restart**: the server's monitor (backend/src/monitor.rs, `handle_zombie_jobs`) puts a
  job whose worker stopped answering back in the queue under the same id (`RESTART_ZOMBIE_JOBS`, on
  by default), and it runs again *from the start*; what its first run did is not undone;
- **a cancel, or a lost worker**: the running job is killed and no later step of the flow runs;
  what the steps wrote to the workspace storage stays;
- **a storage error**: the workspace storage answers 500 now and then.

Every request a job makes, to the workspace storage (workbench/windmill_storage.py) or to Kustomer
(the sandbox's `on_applied` hook), is an *event*, numbered from 0 in the order it happens: a test picks
the event at which to restart the running job (`restart_at`) or to cancel the whole run (`cancel_at`),
and which storage requests answer 500 (`storage_errors`: a piece of the event's text, and how many
times). A storage write is an event once it is stored, before its answer; a Kustomer write once
Kustomer applied it, before its answer: killed there, the job never learns the outcome.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any


class FlowCancelled(Exception):  # noqa: N818  # what happened, not an error of the runner
    """The flow run was cancelled (or its worker lost) at the chosen event: no later step runs."""


Point = int | tuple[str, int]  # the n-th event of the run, or the n-th (from 1) whose text holds a piece


@dataclass
class Chaos:
    cancel_at: Point | None = None
    restart_at: Point | None = None
    storage_errors: dict[str, int] = field(default_factory=dict)  # a piece of the event's text -> 500s left
    events: list[str] = field(default_factory=list)
    cancelled: bool = False
    restarts: int = 0  # jobs killed for a restart, not yet run again
    restarted: int = 0  # jobs run again after a restart
    processes: set[subprocess.Popen[Any]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def event(self, what: str) -> None:
        """A job's request happened: the chosen fault, if this is its event."""
        with self.lock:
            self.events.append(what)
            if self._is(self.cancel_at, what):
                self.cancelled = True
            elif self._is(self.restart_at, what):
                self.restarts += 1
            else:
                return
            running = list(self.processes)
        for process in running:  # one job runs at a time in this project's flow: it is the one killed
            process.kill()

    def _is(self, point: Point | None, what: str) -> bool:
        if isinstance(point, int):
            return len(self.events) - 1 == point
        if point is None or point[0] not in what:
            return False
        return sum(point[0] in e for e in self.events) == point[1]

    def storage_error(self, what: str) -> bool:
        """Whether this storage request answers 500."""
        with self.lock:
            for piece, left in self.storage_errors.items():
                if piece in what and left > 0:
                    self.storage_errors[piece] = left - 1
                    self.events.append(f"{what} -> 500")
                    return True
        return False

    def on_kustomer(self, record: dict[str, Any]) -> None:
        """The sandbox's hook: Kustomer applied a request and is about to answer."""
        self.event(f"kustomer {record.get('method')} {record.get('path')}")

    def started(self, process: subprocess.Popen[Any]) -> None:
        with self.lock:
            self.processes.add(process)
            kill = self.cancelled
        if kill:
            process.kill()

    def ended(self, process: subprocess.Popen[Any]) -> str:
        """Why a job's process ended: "restart" (run it again), "cancel" (stop the run) or ""."""
        with self.lock:
            self.processes.discard(process)
            if self.cancelled:
                return "cancel"
            if self.restarts:
                self.restarts -= 1
                self.restarted += 1
                return "restart"
        return ""
