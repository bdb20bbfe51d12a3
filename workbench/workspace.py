"""What a Windmill workspace does around a job, imitated from Windmill's source with its limits.

- **Arguments are interpolated** (worker common.rs, `transform_json` / `transform_json_value`): each
  top-level argument whose JSON text matches `_MARKER` is walked; a string that *starts with*
  `$var:` becomes the variable's value, `$jsonvar:` its parsed JSON, `$res:` the resource, and `$`
  followed by a reserved name (`$WM_TOKEN`, ...) that reserved value; any other string is kept.
  Objects are walked to depth 50: an argument that nests 50 levels or more fails the job
  (`MAX_INTERPOLATION_DEPTH`, newest workers); arrays are walked at depth 2 or less and of at most
  1,000 items (newer workers; older ones skip arrays). A variable or resource that does not exist
  fails the job. A string holding JSON text (it starts with `{` or `[`) is never replaced.
- **Every job gets its own token** in `WM_TOKEN`, and `WM_WORKSPACE`, `BASE_INTERNAL_URL`,
  `WM_BASE_URL`, `WM_JOB_ID`, `WM_ROOT_FLOW_JOB_ID` (variables.rs, `get_reserved_variables`).
- **Cloud's limits** (`cloud=True`): a script job whose result.json is over 2 MB fails with the
  worker's message (common.rs `check_result_too_big`); a completed job (flow, loop iteration) whose
  result is 3 MiB or more fails (windmill-queue jobs.rs `check_result_size`); a job runs at most
  900 s (`DEFAULT_CLOUD_TIMEOUT`).
- **What it stores** is counted: every job's arguments and result, in bytes of JSON, as the
  workspace's database keeps them (`stored_bytes`, and the largest result).

The object storage and the script loader are served by `workbench.windmill_storage`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from workbench.chaos import Chaos

# windmill-worker common.rs RE_RES_VAR: only an argument whose JSON text holds one is walked.
_MARKER = re.compile(r"\$(?:var|jsonvar|res|encrypted)\:|\"\$interpolate\"")
MAX_INTERPOLATION_DEPTH = 50  # deeper fails the job (shared/reference/windmill-flow-semantics.md section 8)
MAX_ARRAY_DEPTH = 2
MAX_ARRAY_ITEMS = 1000

CLOUD_SCRIPT_RESULT_BYTES = 2_097_152  # MAX_RESULT_SIZE (2 MiB): "Result is too large for the cloud app (limit 2MB)"
CLOUD_JOB_RESULT_BYTES = 3 * 1024 * 1024  # check_result_size: whole MiB, 3 or more fails
CLOUD_JOB_TIMEOUT = 900.0
TOO_LARGE = (  # worker common.rs, check_result_too_big, word for word
    "Result is too large for the cloud app (limit 2MB).\nWe highly recommend using object to store and pass heavy "
    "data (https://www.windmill.dev/docs/core_concepts/object_storage_in_windmill#read-a-file-from-s3-within-a-script)"
    "\nAlternatively, if using this script as part of a flow, activate shared folder and use the shared folder to "
    "pass heavy data between steps."
)


class InterpolationError(Exception):
    """A `$var:` or `$res:` the workspace does not hold, or an argument nested too deep to walk: the job
    fails before it runs."""


@dataclass
class Workspace:
    """One workspace: its variables and resources, its limits, and what it stored."""

    variables: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    cloud: bool = True
    name: str = "local"
    base_url: str = ""  # the storage stand-in, when one runs
    stored_bytes: int = 0
    largest_result: int = 0
    jobs: int = 0
    python_jobs: int = 0
    peak_kb: dict[str, int] = field(default_factory=dict)  # the largest peak memory of each script, by path
    longest: dict[str, float] = field(default_factory=dict)  # the longest run of each script, in seconds, by path
    tokens: set[str] = field(default_factory=set)
    flow_runs: dict[str, bool] = field(default_factory=dict)  # root flow job id -> still running
    chaos: Chaos | None = None  # the faults to play (workbench/chaos.py)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def new_token(self) -> str:
        token = "wm_job_" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens.add(token)
        return token

    def record(self, args: Any, result_bytes: int, script: str = "", peak_kb: int = 0, seconds: float = 0.0) -> None:
        """A job's arguments and result are stored: count them (and a Python job's peak memory and time)."""
        size = len(json.dumps(args, separators=(",", ":"), default=str)) + result_bytes
        with self._lock:
            self.stored_bytes += size
            self.largest_result = max(self.largest_result, result_bytes)
            self.jobs += 1
            if script:
                self.python_jobs += 1
                self.peak_kb[script] = max(self.peak_kb.get(script, 0), peak_kb)
                self.longest[script] = max(self.longest.get(script, 0.0), seconds)

    def interpolate(self, args: dict[str, Any], reserved: dict[str, str]) -> dict[str, Any]:
        """The job's arguments as the worker hands them to `main`."""
        out = {}
        for name, value in args.items():
            text = json.dumps(value, default=str)
            out[name] = self._walk(name, value, reserved, 0) if _MARKER.search(text) else value
        return out

    def _walk(self, name: str, value: Any, reserved: dict[str, str], depth: int) -> Any:
        if isinstance(value, str):
            return self._replace(name, value, reserved)
        if isinstance(value, dict):
            if depth + 1 >= MAX_INTERPOLATION_DEPTH:  # the argument itself is level 1
                raise InterpolationError(
                    f"Argument `{name}` nests {MAX_INTERPOLATION_DEPTH} levels or more: the worker's interpolation "
                    "stops the job there (MAX_INTERPOLATION_DEPTH)"
                )
            return {k: self._walk(k, v, reserved, depth + 1) for k, v in value.items()}
        if isinstance(value, list) and depth <= MAX_ARRAY_DEPTH and len(value) <= MAX_ARRAY_ITEMS:
            return [self._walk(name, v, reserved, depth + 1) for v in value]
        return value

    def _replace(self, name: str, text: str, reserved: dict[str, str]) -> Any:
        for prefix, store, parse in (("$var:", self.variables, False), ("$jsonvar:", self.variables, True)):
            if text.startswith(prefix):
                path = text.removeprefix(prefix)
                if path not in store:
                    raise InterpolationError(f"Variable {path} not found for `{name}`")
                return json.loads(store[path]) if parse else store[path]
        if text.startswith("$res:"):
            path = text.removeprefix("$res:")
            if path not in self.resources:
                raise InterpolationError(f"Resource {path} not found for `{name}`")
            return self.resources[path]
        if text.startswith("$encrypted:"):
            raise InterpolationError(f"Argument `{name}`: the local workspace cannot decrypt $encrypted: values")
        if text.startswith("$"):
            return reserved.get(text[1:], text)
        return text
