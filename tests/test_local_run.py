"""local-run behaves like a Windmill worker: fresh process, filtered arguments, Windmill's result and error."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from import_runs import QUICK_STEPS

from workbench.paths import ROOT
from workbench.sandbox import Sandbox
from workbench.worker import run_job

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
            "pid": os.getpid(), "leaked": os.environ.get("LOCAL_RUN_TEST_SECRET"),
            "passed": {k: v for k, v in os.environ.items() if k.startswith("LOCAL_RUN_PASSED")},
            "proxies": {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}}
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


def test_only_what_the_workers_whitelist_envs_names_is_passed_on_exactly_as_named(
    probe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """windmill-common worker.rs load_whitelist_env_vars_from_env / load_env_vars: split on ",", no
    trimming; a listed name the worker lacks reaches the job as ""."""
    monkeypatch.setenv("LOCAL_RUN_PASSED_A", "a-value")
    monkeypatch.setenv("LOCAL_RUN_PASSED_SPACED", "not passed: its name is listed with a space")
    monkeypatch.setenv("LOCAL_RUN_TEST_SECRET", "s3cret")
    monkeypatch.setenv("WHITELIST_ENVS", "LOCAL_RUN_PASSED_A, LOCAL_RUN_PASSED_SPACED,LOCAL_RUN_PASSED_MISSING")
    job = run_job(probe, {"name": "a"})
    assert job.result["passed"] == {"LOCAL_RUN_PASSED_A": "a-value", "LOCAL_RUN_PASSED_MISSING": ""}
    assert job.result["leaked"] is None


@pytest.mark.parametrize(
    ("worker", "job"),
    [
        (
            {"https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128"},
            {"HTTPS_PROXY": "http://lower:3128", "NO_PROXY": "localhost,127.0.0.1"},
        ),
        ({"HTTP_PROXY": "http://p:3128", "no_proxy": ".corp"}, {"HTTP_PROXY": "http://p:3128", "NO_PROXY": ".corp"}),
        ({}, {}),
    ],
    ids=["lower-case-first-and-a-default-no-proxy", "no-proxy-kept", "none"],
)
def test_a_job_gets_the_workers_proxies_in_upper_case_only(
    probe: Path, monkeypatch: pytest.MonkeyPatch, worker: dict[str, str], job: dict[str, str]
) -> None:
    """windmill-worker lib.rs PROXY_ENVS: each of NO_PROXY, HTTP_PROXY, HTTPS_PROXY read lower case
    first, then upper case, passed upper case only; a proxy without NO_PROXY gets localhost,127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in worker.items():
        monkeypatch.setenv(name, value)
    assert run_job(probe, {"name": "a"}).result["proxies"] == job


def test_an_exception_becomes_windmills_error_object_and_exit_code_1(probe: Path) -> None:
    job = run_job(probe, {"name": "fail"})
    assert job.exit_code == 1
    assert job.result["message"] == "no thanks"
    assert job.result["name"] == "Refused"
    assert "raise Refused" in job.result["stack"]
    assert job.result["extra"] == {"status": 418}


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUSTOMER_")}
    quick = {"WHITELIST_ENVS": ",".join(QUICK_STEPS), **QUICK_STEPS}  # the import's waits, for a sandbox
    return {**base, **quick, **(env or {})}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """local-run in the checkout, as a user runs it; its workspace storage and reports in a folder of
    their own (a fresh one for each call, unless the test gives them), never in the checkout."""
    with tempfile.TemporaryDirectory(prefix="local-run-") as folder:
        given = [] if "--storage-dir" in args else ["--storage-dir", f"{folder}/storage"]
        given += [] if "--report-dir" in args else ["--report-dir", f"{folder}/reports"]
        return subprocess.run(
            [str(BIN / "local-run"), *args, *given],
            cwd=ROOT,
            env=cli_env(env),
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


# ---- the local workspace: files, the worker's interpolation, reports ----


def test_cli_imports_a_file_through_the_workspace_storage_and_streams_each_steps_log(tmp_path: Path) -> None:
    done = run_cli("import_messages", "--file", "examples/history.jsonl", "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["counts"]["created"] == 3
    assert "uploaded examples/history.jsonl" in done.stderr
    assert "[prepare] Checked 3 messages" in done.stderr
    assert re.search(r"\[send_group #0\] Batch 1 \(3 messages from messages\[0\]\): accepted", done.stderr)
    assert "[send] 1 of 1 done" in done.stderr


def test_a_failed_import_saves_its_report_and_prints_the_command_that_resumes_it(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(
        "".join(json.dumps({"channel": "chat", "app": "a", "preview": f"m{i}"}) + "\n" for i in range(40))
    )
    with Sandbox(item_failure_rate=0.2, seed=3) as sandbox:
        env = {"KUSTOMER_API_KEY": "k-0123456789", "KUSTOMER_BASE_URL": sandbox.url}
        first = run_cli("import_messages", "--file", str(history), "--report-dir", str(tmp_path / "r"), env=env)
        assert first.returncode == 1
        failed = json.loads(first.stdout)["extra"]["counts"]["failed"]
        assert failed > 0
        command = next(line for line in first.stderr.splitlines() if "to send again" in line).split(": ", 2)[-1]
        assert command.startswith("uv run local-run import_messages --file ")
        retry = Path(command.rsplit(" ", 1)[-1])
        assert len(retry.read_text().splitlines()) == failed
        assert json.loads((retry.parent / "report.json").read_text())["counts"]["failed"] == failed
        sandbox.configure(item_failure_rate=0.0)
        second = run_cli("import_messages", "--file", str(retry), "--report-dir", str(tmp_path / "r"), env=env)
        created = sandbox.created_by_ref
    assert second.returncode == 0, second.stdout
    assert set(created.values()) == {1}
    assert len(created) == 40  # every message once, the resumed ones included


def test_cli_runs_a_script_with_its_own_arguments_when_it_takes_no_body() -> None:
    with Sandbox() as sandbox:
        env = {"KUSTOMER_API_KEY": "k-0123456789", "KUSTOMER_BASE_URL": sandbox.url}
        bulk = run_cli(
            "bulk_create_messages", "--data", '[{"channel": "chat", "app": "a", "_clientRef": "r"}]', env=env
        )
        bulk_id = json.loads(bulk.stdout)["data"]["id"]
        done = run_cli("wait_for_bulk_results", "--data", json.dumps({"bulk_id": bulk_id}), env=env)
    assert done.returncode == 0, done.stdout
    assert "'body'" not in done.stderr
    assert json.loads(done.stdout)["items"][0]["_clientRef"] == "r"


def test_an_explicit_auth_wins_over_kustomer_api_key_and_says_so() -> None:
    with Sandbox() as sandbox:
        data = {"auth": {"apiKey": "k-explicit-1234", "baseUrl": sandbox.url}, "body": {"channel": "chat", "app": "a"}}
        env = {"KUSTOMER_API_KEY": "k-from-env-9876", "KUSTOMER_BASE_URL": "https://api.kustomerapp.com"}
        done = run_cli("bulk_create_messages", "--data", json.dumps({**data, "body": [data["body"]]}), env=env)
        assert len(sandbox.requests) == 1
    assert done.returncode == 0, done.stdout
    assert "using the auth given in --data" in done.stderr
    assert "REAL" not in done.stderr


def test_the_workers_interpolation_applies_and_the_token_is_never_sent(tmp_path: Path) -> None:
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps({"u/admin/promo": "SAVE50"}))
    body = {"channel": "email", "app": "a", "direction": "in", "subject": "$var:u/admin/promo", "preview": "$WM_TOKEN"}
    with Sandbox() as sandbox:
        env = {"KUSTOMER_API_KEY": "k-0123456789", "KUSTOMER_BASE_URL": sandbox.url}
        done = run_cli("create_message", "--data", json.dumps({"body": body}), "--variables", f"@{variables}", env=env)
        as_text = run_cli("create_message", "--data", json.dumps({"body": json.dumps(body)}), env=env)
        received = [r["body"] for r in sandbox.requests]
    assert done.returncode == 1
    assert "body.preview: holds this job's Windmill token" in json.loads(done.stdout)["message"]
    assert "wm_job_" not in done.stdout + done.stderr
    assert as_text.returncode == 0, as_text.stdout
    assert received == [body]  # the text body, exactly; the structured one never left


def test_a_public_name_that_starts_like_a_loopback_address_is_no_local_server() -> None:
    done = run_cli(
        "create_message",
        "--data",
        '{"body": {"channel": "fax"}}',
        env={"KUSTOMER_API_KEY": "k-0123456789", "KUSTOMER_BASE_URL": "https://127.0.0.1.nip.io"},
    )
    assert "using the REAL Kustomer API at https://127.0.0.1.nip.io" in done.stderr
    assert "local server" not in done.stderr


# ---- what local-run refuses before anything starts ----


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["import_messages", "--data", '{"dryrun": true}'],
            "local-run: import_messages has no input 'dryrun' (did you mean 'dry_run'?); its inputs are auth, "
            "messages_file, messages, import_label, max_requests_per_minute, skip_invalid, dry_run. Nothing was run.",
        ),
        (
            ["create_message", "--data", '{"body": {"channel": "chat"}, "bodyy": 1}'],
            "local-run: create_message has no input 'bodyy' (did you mean 'body'?); its inputs are auth, body. "
            "Nothing was run.",
        ),
        (
            ["import_messages", "--file", "nothere.jsonl"],
            "local-run: --file 'nothere.jsonl' is not a readable file; nothing was run",
        ),
        (
            ["create_message", "--data", '{"auth": {"apiKey": "k-0123456789"}}', "--resource", '{"apiKey": "k-2"}'],
            "local-run: a resource is given twice, with --resource and as 'auth' in --data: keep one; nothing was run",
        ),
        (
            ["create_message", "--data", '{"Body": {"channel": "chat", "app": "a", "direction": "in"}}'],
            "local-run: create_message has no input 'Body' (did you mean 'body'?); its inputs are auth, body. "
            "Nothing was run.",
        ),
        (
            ["import_messages", "--data", '{"messages_file": "examples/history.jsonl"}'],
            "local-run: messages_file in --data is a text, but it must be a file of the workspace storage: give the "
            "local file with --file PATH instead (local-run uploads it and passes it as messages_file); nothing was "
            "run",
        ),
    ],
    ids=[
        "a-misspelt-flow-input",
        "a-misspelt-script-argument",
        "a-missing-file",
        "resource-and-auth-both",
        "a-capitalised-body",
        "messages-file-as-a-path",
    ],
)
def test_a_wrong_argument_is_refused_in_one_line_before_anything_starts(args: list[str], said: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 1
    assert done.stderr.strip() == said
    assert done.stdout == ""


def test_a_base_url_without_a_key_is_refused_rather_than_ignored() -> None:
    """The README's own background sandbox sets both: with one alone the user meant a server, not the
    embedded sandbox, and should hear so before anything starts."""
    done = run_cli(
        "create_message", "--data", "@examples/create_message.json", env={"KUSTOMER_BASE_URL": "http://127.0.0.1:9"}
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "local-run: KUSTOMER_BASE_URL is set but KUSTOMER_API_KEY is not: set KUSTOMER_API_KEY too (any key "
        "for a sandbox), or unset KUSTOMER_BASE_URL to use the embedded sandbox; nothing was run\n"
    )


@pytest.mark.parametrize(
    ("switch", "under", "problem"),
    [
        ("--report-dir", "", "is a file, not a folder"),
        ("--report-dir", "/reports", "is inside '{file}', a file"),
        ("--storage-dir", "", "is a file, not a folder"),
    ],
    ids=["report-dir-a-file", "report-dir-inside-a-file", "storage-dir-a-file"],
)
def test_a_folder_switch_naming_a_file_is_refused_before_the_import_sends_anything(
    tmp_path: Path, switch: str, under: str, problem: str
) -> None:
    file = tmp_path / "afile"
    file.write_text("")
    with Sandbox() as sandbox:
        env = {"KUSTOMER_API_KEY": "k-0123456789", "KUSTOMER_BASE_URL": sandbox.url}
        done = run_cli("import_messages", "--file", "examples/history.jsonl", switch, f"{file}{under}", env=env)
        sent = sandbox.requests
    assert (done.returncode, done.stdout, sent) == (1, "", [])
    assert done.stderr == (
        f"local-run: {switch} '{file}{under}' {problem.format(file=file)}: give a folder (made if missing); "
        "nothing was run\n"
    )


def test_an_import_refused_for_its_invalid_messages_saves_the_invalid_file(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    lines = [{"channel": "fax", "app": "a", "preview": f"m{i}"} for i in range(25)]
    history.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_cli("import_messages", "--file", str(history), "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 1
    said = next(line for line in done.stderr.splitlines() if "every invalid message" in line)
    invalid = Path(said.split(": ", 2)[2].split(";")[0])
    assert [json.loads(line)["position"] for line in invalid.read_text().splitlines()] == list(range(25))


def test_the_command_that_sends_failed_messages_again_keeps_the_resource_file_and_shows_no_key(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps({"channel": "chat", "app": "a", "preview": "sandbox:fail"}) + "\n")
    with Sandbox() as sandbox:
        resource = tmp_path / "resource.json"
        resource.write_text(json.dumps({"apiKey": "k-secret-0123456789", "baseUrl": sandbox.url}))
        done = run_cli(
            "import_messages", "--file", str(history), "--resource", f"@{resource}", "--report-dir", str(tmp_path / "r")
        )
    command = next(line for line in done.stderr.splitlines() if "to send again" in line)
    assert command.endswith(f"--resource @{resource}")
    assert "k-secret-0123456789" not in done.stdout + done.stderr


# ---- an import run again locally ----


def test_an_import_run_again_locally_goes_on_with_the_same_storage_and_sends_nothing_twice(tmp_path: Path) -> None:
    """local-run keeps its workspace storage between runs (--storage-dir): the same import against the
    same Kustomer is the same import, as in Windmill, so a second run creates nothing again."""
    storage = ["--storage-dir", str(tmp_path / "storage"), "--report-dir", str(tmp_path / "r")]
    with Sandbox() as sandbox:
        env = {"KUSTOMER_API_KEY": "k-0123456789", "KUSTOMER_BASE_URL": sandbox.url}
        first = run_cli("import_messages", "--file", "examples/history.jsonl", *storage, env=env)
        second = run_cli("import_messages", "--file", "examples/history.jsonl", *storage, env=env)
        created = sandbox.created_by_ref
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert created == {"position-0": 1, "position-1": 1, "position-2": 1}
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert "is finished: nothing to send" in second.stderr


def test_an_import_into_the_embedded_sandbox_keeps_nothing_in_the_storage_folder(tmp_path: Path) -> None:
    """The embedded sandbox ends with the run, so what the import kept would name messages gone with it."""
    done = run_cli("import_messages", "--file", "examples/history.jsonl", "--storage-dir", str(tmp_path / "s"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list((tmp_path / "s").rglob("*.json*"))


def test_ctrl_c_stops_the_import_at_once_and_says_so_in_one_line(tmp_path: Path) -> None:
    """Ctrl-C during an import: the running job is stopped with local-run (nothing reaches Kustomer
    after it exited), one line says so and how to go on, no traceback, exit code 130. The terminal
    sends SIGINT to local-run's whole process group, the job's process included."""
    history = tmp_path / "history.jsonl"
    history.write_text(
        "".join(json.dumps({"channel": "chat", "app": "a", "preview": f"m{i}"}) + "\n" for i in range(3000))
    )
    options = ["--storage-dir", str(tmp_path / "s"), "--report-dir", str(tmp_path / "r")]
    options += ["--data", '{"max_requests_per_minute": 120}']  # a request every 0.5 s: the job's sends wait their turn
    with Sandbox(latency=0.2) as sandbox:
        env = {"KUSTOMER_API_KEY": "k-0123456789", "KUSTOMER_BASE_URL": sandbox.url}
        process = subprocess.Popen(
            [str(BIN / "local-run"), "import_messages", "--file", str(history), *options],
            cwd=ROOT,
            env=cli_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        deadline = time.monotonic() + 30
        while not any(r["path"] == "/v1/messages/bulk" for r in sandbox.requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
        out, err = process.communicate(timeout=30)
        time.sleep(0.3)  # a request written before the job was stopped may still be in the sandbox's socket
        after_exit = len(sandbox.requests)
        time.sleep(2)
        later = len(sandbox.requests)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert err.splitlines()[-1] == (
        "local-run: interrupted: the running job was stopped and nothing more is sent to Kustomer; run the same "
        "command again to go on with the import where it stopped (what may have gone out is looked up, never sent "
        "twice)"
    )
    assert later == after_exit  # nothing was sent after local-run exited


def test_every_file_a_readme_local_run_command_names_exists() -> None:
    """A command copied from the README runs from the checkout: its --file and @FILE paths are there."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\$ (uv run local-run .*)$", readme, re.M)  # in the console blocks
    prose = re.sub(r"^```.*?^```", "", readme, flags=re.M | re.S)
    commands += [span for span in re.findall(r"`([^`]+)`", prose) if "local-run " in span]  # and in the text
    named = [
        path
        for command in commands
        for path in re.findall(r"(?:--file\s+|--(?:data|resource|variables)\s+@)([^\s'\"\]]+)", command)
        if "." in path or "/" in path  # not a placeholder such as MESSAGES
    ]
    assert "examples/history.jsonl" in named
    assert [path for path in named if not (ROOT / path).is_file()] == []


def test_the_command_that_sends_failed_messages_again_is_safe_to_paste_after_an_inline_resource(
    tmp_path: Path,
) -> None:
    """An inline --resource is never echoed (it holds a key), nor shown as something a shell misreads
    (`<the same>` is a redirect): the command names a file to save it in; the pace and label carry over."""
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps({"channel": "chat", "app": "a", "preview": "sandbox:fail"}) + "\n")
    data = {"max_requests_per_minute": 600, "import_label": "spring's move"}
    with Sandbox() as sandbox:
        resource = json.dumps({"apiKey": "k-secret-0123456789", "baseUrl": sandbox.url})
        done = run_cli("import_messages", "--file", str(history), "--resource", resource, "--data", json.dumps(data))
    assert done.returncode == 1, done.stdout + done.stderr
    said = next(line for line in done.stderr.splitlines() if "to send again" in line)
    assert "your-resource.json" in said.split(": ", 2)[1]  # the note says where the resource goes
    argv = shlex.split(said.split(": ", 2)[2])
    assert argv[:5] == ["uv", "run", "local-run", "import_messages", "--file"]
    assert argv[6:] == ["--resource", "@your-resource.json", "--data", json.dumps(data)]
    assert "k-secret-0123456789" not in done.stdout + done.stderr


def test_a_dry_run_with_invalid_messages_saves_the_invalid_file_and_lists_the_problems(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(
        json.dumps({"channel": "chat", "app": "a"}) + "\n" + json.dumps({"channel": "fax", "app": "a"}) + "\n"
    )
    done = run_cli(
        "import_messages", "--file", str(history), "--data", '{"dry_run": true}', "--report-dir", str(tmp_path / "r")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["counts"]["invalid"] == 1
    assert result["problems"][0].startswith("messages[1].channel: 'fax' is not one of")
    said = next(line for line in done.stderr.splitlines() if "every invalid message" in line)
    invalid = Path(said.split(": ", 2)[2].split(";")[0])
    assert [json.loads(line)["position"] for line in invalid.read_text().splitlines()] == [1]


@pytest.mark.parametrize(
    ("resource", "said"),
    [
        (
            {"apiKey": "k-secret-0123456789"},
            "local-run: using the resource given with --resource: the REAL Kustomer API at https://api.kustomerapp.com",
        ),
        (
            {"apiKey": "k-secret-0123456789", "baseUrl": "https://acme.api.kustomerapp.com/"},
            "local-run: using the resource given with --resource: the REAL Kustomer API at https://acme.api.kustomerapp.com",
        ),
        (
            {"apiKey": "k-secret-0123456789", "baseUrl": "http://127.0.0.1:8787"},
            "local-run: using the resource given with --resource: a local server at http://127.0.0.1:8787",
        ),
    ],
    ids=["the-default-host", "an-org-host", "a-local-sandbox"],
)
def test_a_resource_given_with_resource_says_which_kustomer_it_points_at(resource: dict[str, str], said: str) -> None:
    """As with KUSTOMER_API_KEY, stderr says which Kustomer: the real one or a local server; never the key.
    (The body is invalid: nothing is sent anywhere.)"""
    done = run_cli("create_message", "--data", '{"body": {"channel": "fax"}}', "--resource", json.dumps(resource))
    assert done.returncode == 1
    assert said in done.stderr.splitlines()
    assert "k-secret-0123456789" not in done.stdout + done.stderr


def test_an_import_of_one_message_says_one_message_in_its_log() -> None:
    data = json.dumps({"messages": [{"channel": "chat", "app": "api", "preview": "hi"}]})
    done = run_cli("import_messages", "--data", data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[prepare] Checked 1 message in" in done.stderr
    assert "[send_group #0] Batch 1 (1 message from messages[0])" in done.stderr
    assert "; 1 message created so far" in done.stderr
    assert "[report] Wrote the report of 1 position in" in done.stderr


def test_prepares_time_is_the_checking_not_the_wait_for_the_lease() -> None:
    """prepare waits CLAIM_SETTLE seconds after it writes the lease; its "Checked ... in" says how long
    the checking took, not that wait."""
    done = run_cli(
        "import_messages", "--file", "examples/history.jsonl", env={"KUSTOMER_IMPORT_CLAIM_SETTLE_SECONDS": "1.5"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seconds = re.search(r"\[prepare\] Checked 3 messages in (\d+\.\d) s", done.stderr)
    assert seconds, done.stderr
    assert float(seconds[1]) < 1.0


def test_the_readmes_file_with_problems_is_refused_whole_and_with_skip_invalid_sends_the_valid_ones() -> None:
    """examples/history_with_problems.jsonl is what the README says: three invalid lines of five."""
    refused = run_cli("import_messages", "--file", "examples/history_with_problems.jsonl", "--pretty")
    assert refused.returncode == 1
    assert refused.stdout.startswith("3 of 5 messages are invalid; nothing was sent.")
    skipped = run_cli(
        "import_messages", "--file", "examples/history_with_problems.jsonl", "--data", '{"skip_invalid": true}'
    )
    assert skipped.returncode == 1
    counts = json.loads(skipped.stdout)["extra"]["counts"]
    assert (counts["created"], counts["not_sent"]) == (2, 3)


# ---- every tool at its command line: a wrong switch is one line, Ctrl-C is one line ----


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (
            ["local-run"],
            "local-run: name the script or flow to run (scripts: bulk_create_messages, create_message, "
            "wait_for_bulk_results; flows: import_messages; or a path to a .py file or a .flow folder) (see --help)",
        ),
        (["local-run", "create_message", "--bogus"], "local-run: no switch --bogus (see --help)"),
        (
            ["local-run", "create_message", "--reprot-dir", "x"],
            "local-run: no switch --reprot-dir (did you mean --report-dir?) (see --help)",
        ),
        (
            ["local-run", "create_message", "k-secret-0123456789"],
            "local-run: 1 argument too many (not shown: it may hold a key) (see --help)",
        ),
        (
            ["kustomer-sandbox", "--port", "abc"],
            "kustomer-sandbox: argument --port: invalid int value: 'abc' (see --help)",
        ),
        (["demo", "--bogus"], "demo: no switch --bogus (see --help)"),
        (["deploy"], "deploy: the following arguments are required: --base-url, --workspace (see --help)"),
        (["bench", "--bogus"], "bench: no switch --bogus (see --help)"),
    ],
    ids=[
        "local-run-no-name",
        "local-run-bogus",
        "local-run-misspelt",
        "local-run-stray-word",
        "sandbox-port",
        "demo",
        "deploy",
        "bench",
    ],
)
def test_a_wrong_switch_is_one_line_naming_it_and_exit_2(command: list[str], said: str) -> None:
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr, done.stdout) == (2, said + "\n", "")


def test_a_choice_not_among_a_switchs_choices_is_one_line_too() -> None:
    done = subprocess.run(
        [str(BIN / "kustomer-sandbox"), "--fault", "404"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("kustomer-sandbox: argument --fault: invalid choice: '404' (choose from '429', ")


def test_help_still_prints_the_whole_help() -> None:
    done = subprocess.run([str(BIN / "local-run"), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: local-run ")
    assert "--storage-dir" in done.stdout


def catches_ctrl_c(pid: int) -> bool:
    """Whether the process has its SIGINT handler in place."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGINT - 1)))


def loading_the_tool(pid: int) -> bool:
    """Whether Python has started, and is importing the tool: it has loaded the json module's library,
    which neither Python's start-up nor workbench/commands.py imports, and the tool does first."""
    return "/_json." in Path(f"/proc/{pid}/maps").read_text()


def has_a_child(pid: int) -> bool:
    return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def ctrl_c(command: list[str], when: Callable[[int], bool]) -> tuple[int, str]:
    """Start a tool in its own process group, as a terminal's foreground job, and once `when(pid)` holds
    send SIGINT to the whole group, as Ctrl-C does; its exit code and its stderr."""
    with tempfile.TemporaryDirectory(prefix="ctrl-c-") as folder:
        process = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            cwd=ROOT,
            env=cli_env({"HOME": folder}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not when(process.pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert "Traceback" not in out + err
    return process.returncode, err


def test_ctrl_c_while_local_run_loads_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Its imports take a quarter of a second: an interrupt then is no traceback either."""
    code, err = ctrl_c(["local-run", "create_message", "--storage-dir", str(tmp_path)], loading_the_tool)
    assert (code, err) == (130, "local-run: interrupted before the job started: nothing was run\n")


def test_ctrl_c_during_the_demo_stops_its_job_in_one_line_and_exit_130() -> None:
    code, err = ctrl_c(["demo"], has_a_child)  # a job is running
    assert (code, err) == (
        130,
        "demo: interrupted: the running job was stopped and nothing more is sent to the sandbox\n",
    )


def test_ctrl_c_stops_the_sandbox_in_one_line_and_exit_130() -> None:
    process = subprocess.Popen(
        [str(BIN / "kustomer-sandbox"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("Kustomer sandbox on http://127.0.0.1:")  # it serves
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (130, "kustomer-sandbox: stopped (Ctrl-C); what it received is gone with it\n")
