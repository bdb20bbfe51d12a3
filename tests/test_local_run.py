"""local-run behaves like a Windmill worker: fresh process, filtered arguments, Windmill's result and error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.sandbox import Sandbox
from workbench.worker import ROOT, run_job

BIN = Path(sys.executable).parent

PROBE = """
import os
from datetime import date


class Refused(Exception):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def main(name: str, count: int = 5, note: str | None = None, when: str = "today"):
    if name == "fail":
        raise Refused("no thanks", 418)
    return {"name": name, "count": count, "note": note, "when": when, "day": date(2026, 1, 2),
            "pid": os.getpid(), "leaked": os.environ.get("LOCAL_RUN_TEST_SECRET")}
"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return path


def test_arguments_are_filtered_by_the_signature_and_nulls_give_defaults(probe: Path) -> None:
    job = run_job(probe, {"name": "x", "count": None, "note": None, "unknown": 1})
    assert job.exit_code == 0
    assert job.result["name"] == "x"
    assert job.result["count"] == 5  # null dropped: the default applies
    assert job.result["note"] is None
    assert job.result["when"] == "today"  # absent: the default applies


def test_result_is_encoded_as_the_worker_does(probe: Path) -> None:
    job = run_job(probe, {"name": "x"})
    assert job.result["day"] == "2026-01-02"  # default=str
    assert job.output.startswith('{"name":"x","count":5')  # separators=(',', ':')


def test_each_job_is_a_fresh_process_with_a_cleared_environment(probe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RUN_TEST_SECRET", "s3cret")
    first, second = run_job(probe, {"name": "a"}), run_job(probe, {"name": "b"})
    assert first.result["pid"] != second.result["pid"] != os.getpid()
    assert first.result["leaked"] is None


def test_an_exception_becomes_windmills_error_object_and_exit_code_1(probe: Path) -> None:
    job = run_job(probe, {"name": "fail"})
    assert job.exit_code == 1
    assert job.result["message"] == "no thanks"
    assert job.result["name"] == "Refused"
    assert "raise Refused" in job.result["stack"]
    assert job.result["extra"] == {"status": 418}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUSTOMER_")}
    return subprocess.run(
        [str(BIN / "local-run"), *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_without_a_key_uses_the_embedded_sandbox() -> None:
    done = run_cli("create_message", "--data", "@examples/create_message.json")
    assert done.returncode == 0, done.stderr
    assert "using the embedded Kustomer sandbox at http://127.0.0.1:" in done.stderr
    result = json.loads(done.stdout)
    assert result["data"]["type"] == "message"
    assert len(result["data"]["id"]) == 24


def test_cli_prints_the_error_object_and_exits_1_on_bad_input() -> None:
    done = run_cli("create_message", "--data", '{"body": {"channel": "fax"}}')
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["name"] == "KustomerInputError"
    assert "body.channel: 'fax' is not one of" in error["message"]


def test_cli_with_pretty_prints_an_error_as_text_with_real_line_breaks() -> None:
    done = run_cli("create_message", "--data", '{"body": {"channel": "fax", "app": "x"}}', "--pretty")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "Nothing was sent to Kustomer: the input has 2 problems:"
    assert lines[1] == "- body.direction: required, but missing"
    assert lines[2].startswith("- body.channel: 'fax' is not one of email")
    assert lines[-1] == "(KustomerInputError)"


def test_cli_without_data_runs_with_no_note_about_a_body() -> None:
    done = run_cli("wait_for_bulk_results")
    assert "'body'" not in done.stderr
    assert "bulk_id: must be a bulk operation's id" in done.stdout


def test_cli_runs_a_flow_by_its_short_name() -> None:
    data = json.dumps({"messages": [{"channel": "chat", "app": "api", "preview": "hi"}]})
    done = run_cli("import_messages", "--data", data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["counts"]["created"] == 1


def test_cli_suggests_apikey_for_a_misspelled_resource_key() -> None:
    done = run_cli("create_message", "--data", "@examples/create_message.json", "--resource", '{"api_key": "k-1"}')
    assert done.returncode == 1
    assert "did you mean apiKey?" in json.loads(done.stdout)["message"]
    assert "k-1" not in done.stdout


def test_a_job_that_waits_out_a_rate_limit_says_so_in_its_log() -> None:
    """Windmill shows a job's output as its log while it runs: a 429 wait must not look like a hang."""
    with Sandbox(window=2.0) as sandbox:
        sandbox.configure(fault="429", fault_count=1)
        resource = json.dumps({"apiKey": "k-rate-limited-123", "baseUrl": sandbox.url})
        done = run_cli("create_message", "--data", "@examples/create_message.json", "--resource", resource)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stderr.splitlines() if "429" in line)
    assert re.fullmatch(
        r"Kustomer answered 429 Too Many Requests to POST http://127\.0\.0\.1:\d+/v1/messages "
        r"\(the org's rate limit\); waiting \d+ s, until \d\d:\d\d:\d\d UTC, then attempt 2 of at most 20\.",
        line,
    ), line
    assert "k-rate-limited-123" not in done.stderr
    assert "Where is my order" not in line  # never the body


def test_cli_takes_a_bare_body_and_says_so() -> None:
    done = run_cli("bulk_create_messages", "--data", '[{"channel": "chat", "app": "api"}]')
    assert done.returncode == 0, done.stderr
    assert "using all of it as the body" in done.stderr
    assert json.loads(done.stdout)["data"]["type"] == "bulk"


def test_cli_uses_resource_option_then_environment() -> None:
    with Sandbox() as sandbox:
        resource = json.dumps({"apiKey": "k-123456", "baseUrl": sandbox.url})
        given = run_cli("create_message", "--data", "@examples/create_message.json", "--resource", resource)
        assert given.returncode == 0, given.stderr
        assert "using the resource given with --resource" in given.stderr
        from_env = run_cli(
            "create_message",
            "--data",
            "@examples/create_message.json",
            env={"KUSTOMER_API_KEY": "k-654321", "KUSTOMER_BASE_URL": sandbox.url},
        )
        assert from_env.returncode == 0, from_env.stderr
        assert f"using the local server at {sandbox.url}" in from_env.stderr
        assert "REAL" not in from_env.stderr  # a loopback KUSTOMER_BASE_URL is no real Kustomer
        assert len(sandbox.requests) == 2
    assert "k-654321" not in from_env.stdout + from_env.stderr


def test_cli_names_known_scripts_when_one_is_missing() -> None:
    done = run_cli("send_fax")
    assert done.returncode != 0
    assert "scripts: bulk_create_messages, create_message" in done.stderr
    assert "flows: import_messages" in done.stderr
