"""Bench (f)'s parts of a cold job that cannot be told apart inside it, each in a fresh process:
compiling the script, building the SSL context, validating the body.

    python job_parts.py ours|naive SCRIPT MESSAGE_JSON   -> {"compile": s, "ssl": s, "validation": s}
"""

import json
import sys
import time
from typing import Any

import httpx


def main(who: str, path: str, message: Any) -> dict[str, float]:
    clock = time.perf_counter
    out = {}
    with open(path) as file:
        source = file.read()
    started = clock()
    code = compile(source, path, "exec")
    out["compile"] = clock() - started
    if who == "ours":
        job: dict[str, Any] = {"__name__": "job"}
        exec(code, job)  # noqa: S102  # the script, as the worker's import would run it
        started = clock()
        job["trusted_context"](None, None)
        out["ssl"] = clock() - started
        started = clock()
        job["auth_problems"]({"apiKey": "bench-key-0123456789"})
        job["body_problems"](message)
        out["validation"] = clock() - started
    else:
        started = clock()
        httpx.create_ssl_context()
        out["ssl"] = clock() - started
        out["validation"] = 0.0
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
