"""`uv run deploy` with the real wmill CLI against a recording stand-in of the Windmill API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from windmill_standin import WindmillStandIn

from workbench.paths import FLOWS, ROOT, SCRIPTS, workspace_scripts

DEPLOY = Path(sys.executable).parent / "deploy"
TOKEN = "wm-token-not-to-be-printed"


def run_deploy(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    """`uv run deploy ARGS` with WM_TOKEN set to `token` (unset when None)."""
    env = {k: v for k, v in os.environ.items() if k != "WM_TOKEN"}
    if token is not None:
        env["WM_TOKEN"] = token
    done = subprocess.run(
        [str(DEPLOY), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert TOKEN not in done.stdout + done.stderr
    return done


def deploy(standin: WindmillStandIn, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_deploy("--base-url", standin.url, "--token", TOKEN, "--workspace", "support-ws", *extra, token=None)


def writes(standin: WindmillStandIn) -> list[tuple[str, str, str]]:
    """(method, endpoint, item path or name) of every request that could change the workspace."""
    out = []
    for request in standin.writes():
        body = request["body"] if isinstance(request["body"], dict) else {}
        out.append((request["method"], request["path"], body.get("path") or body.get("name") or ""))
    return out


def body_of(standin: WindmillStandIn, endpoint: str, path: str) -> dict[str, Any]:
    return next(r["body"] for r in standin.writes() if r["path"].endswith(endpoint) and r["body"].get("path") == path)


def test_deploy_creates_exactly_the_folder_its_items_and_nothing_else() -> None:
    with WindmillStandIn() as standin:
        done = deploy(standin)
    assert done.returncode == 0, done.stdout + done.stderr
    assert writes(standin) == [
        ("POST", "/api/w/support-ws/folders/create", "kustomer"),
        ("POST", "/api/w/support-ws/resources/type/create", "kustomer"),
        ("POST", "/api/w/support-ws/scripts/create", "f/kustomer/bulk_create_messages"),
        ("POST", "/api/w/support-ws/scripts/create", "f/kustomer/create_message"),
        ("POST", "/api/w/support-ws/scripts/create", "f/kustomer/import_store"),
        ("POST", "/api/w/support-ws/scripts/create", "f/kustomer/wait_for_bulk_results"),
        ("POST", "/api/w/support-ws/flows/create", "f/kustomer/import_messages"),
    ]
    assert all(r["method"] != "DELETE" for r in standin.requests)
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in standin.requests)


def test_scripts_arrive_with_code_summary_description_schema_and_lock() -> None:
    with WindmillStandIn() as standin:
        assert deploy(standin).returncode == 0
    for name in workspace_scripts():  # the module the flow imports arrives like the scripts
        sent = body_of(standin, "/scripts/create", f"f/kustomer/{name}")
        meta = yaml.safe_load((SCRIPTS / f"{name}.script.yaml").read_text())
        assert sent["content"] == (SCRIPTS / f"{name}.py").read_text()
        assert sent["language"] == "python3"
        assert sent["summary"] == meta["summary"]
        assert sent["description"] == meta["description"]
        assert sent["schema"] == meta["schema"]
        assert sent["lock"] == (SCRIPTS / f"{name}.script.lock").read_text()
    flow = body_of(standin, "/flows/create", "f/kustomer/import_messages")
    prepare, send, _ = flow["value"]["modules"]
    assert prepare["value"]["content"] == (FLOWS / "import_messages.flow" / "prepare.inline_script.py").read_text()
    sender = send["value"]["modules"][0]["value"]["content"]
    for script in ("bulk_create_messages", "wait_for_bulk_results", "create_message", "import_store"):
        assert f"from f.kustomer import {script} as " in sender


def test_an_existing_folder_is_left_as_it_is() -> None:
    with WindmillStandIn(folders=("kustomer",)) as standin:
        assert deploy(standin).returncode == 0
    assert not [w for w in writes(standin) if "/folders/" in w[1]]


def test_another_folder_moves_every_path_and_reference() -> None:
    with WindmillStandIn() as standin:
        assert deploy(standin, "--folder", "cx").returncode == 0
    paths = [w[2] for w in writes(standin) if w[1].endswith(("/scripts/create", "/flows/create"))]
    assert paths == [
        "f/cx/bulk_create_messages",
        "f/cx/create_message",
        "f/cx/import_store",
        "f/cx/wait_for_bulk_results",
        "f/cx/import_messages",
    ]
    flow = body_of(standin, "/flows/create", "f/cx/import_messages")
    sender = flow["value"]["modules"][1]["value"]["modules"][0]["value"]["content"]
    assert "from f.cx import bulk_create_messages" in sender
    assert "from f.cx import import_store" in sender
    assert "from f.cx import wait_for_bulk_results" in sender
    assert "f/kustomer/" not in str(flow)
    assert "f.kustomer" not in str(flow)


def test_dry_run_shows_the_plan_and_sends_nothing() -> None:
    with WindmillStandIn() as standin:
        done = deploy(standin, "--dry-run")
    assert done.returncode == 0
    assert standin.requests == []
    assert "wmill script push f/kustomer/create_message.py" in done.stdout
    assert "wmill flow push f/kustomer/import_messages.flow f/kustomer/import_messages" in done.stdout
    assert "f/kustomer/create_message.script.lock" in done.stdout


@pytest.mark.parametrize("folder", ["Kustomer", "../etc", "a/b"])
def test_folder_names_are_checked(folder: str) -> None:
    with WindmillStandIn() as standin:
        done = deploy(standin, "--folder", folder, "--dry-run")
    assert done.returncode != 0
    assert "--folder must be lowercase letters" in done.stderr


# ---- wmill.yaml: even `wmill sync push`, the dangerous command, cannot reach other items ----

OTHER_ITEMS = {
    "f/other/keep_me.py": "def main():\n    return 1\n",
    "f/other/keep_me.script.yaml": "summary: keep\nkind: script\nschema:\n  type: object\n  properties: {}\n",
    "f/other/folder.meta.yaml": "summary: other\nowners: []\nextra_perms: {}\n",
    "u/alice/mine.py": "def main():\n    return 2\n",
    "u/alice/mine.script.yaml": "summary: mine\nkind: script\nschema:\n  type: object\n  properties: {}\n",
    "other.resource-type.yaml": "description: another team's\nschema:\n  type: object\n",
}


def sync_push_plan(staged: Path) -> list[str]:
    """The change lines of `wmill sync push --dry-run` from `staged` into a workspace holding OTHER_ITEMS."""
    import re

    with WindmillStandIn(workspace=OTHER_ITEMS) as standin:
        done = subprocess.run(
            [
                str(ROOT / "node_modules" / ".bin" / "wmill"),
                "sync",
                "push",
                "--dry-run",
                "--yes",
                "--base-url",
                standin.url,
                "--token",
                TOKEN,
                "--workspace",
                "support-ws",
            ],
            cwd=staged,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not standin.writes()  # a dry run
    output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    return [line for line in output.splitlines() if re.match(r"^[-+~] ", line)]


def test_sync_push_with_this_wmill_yaml_deletes_nothing(tmp_path: Path) -> None:
    from workbench.deploy import stage

    stage("kustomer", tmp_path)
    plan = sync_push_plan(tmp_path)
    assert plan, "the plan should list the kustomer items to add"
    assert all(line.startswith("+ ") and " f/kustomer/" in line for line in plan), plan


def test_without_it_sync_push_would_delete_other_teams_items(tmp_path: Path) -> None:
    """The control: with a broad wmill.yaml, the same push plans deletions (what ours prevents)."""
    from workbench.deploy import stage

    stage("kustomer", tmp_path)
    (tmp_path / "wmill.yaml").write_text("defaultTs: bun\nincludes:\n  - f/**\n")
    plan = sync_push_plan(tmp_path)
    assert "- script f/other/keep_me.py" in plan
    assert "- resource-type other.resource-type.yaml" in plan


# ---- the arguments are checked before anything is staged or sent ----


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--base-url", "app.windmill.dev", "--workspace", "ws"],
            "--base-url must be the Windmill instance's http(s) URL",
        ),
        (["--base-url", "https://app.windmill.dev", "--workspace", ""], "--workspace must be a workspace id"),
        (["--base-url", "https://app.windmill.dev", "--workspace", "my ws"], "--workspace must be a workspace id"),
        (["--base-url", "https://app windmill.dev", "--workspace", "ws"], "--base-url must be the Windmill instance's"),
        (["--base-url", "https://app.windmill.dev:70000", "--workspace", "ws"], "--base-url must be the Windmill"),
        (
            ["--base-url", "https://app.windmill.dev/api", "--workspace", "ws"],
            "--base-url must be the instance's address",
        ),
        (
            ["--base-url", "https://u:tok-secret-1@app.windmill.dev", "--workspace", "ws"],
            "--base-url holds a user name",
        ),
        (["--base-url", "http://windmill.example.com", "--workspace", "ws"], "--base-url uses plain http"),
        (["--base-url", "http://127.0.0.1.nip.io", "--workspace", "ws"], "--base-url uses plain http"),
    ],
)
def test_bad_arguments_fail_in_one_line_each_even_with_dry_run(args: list[str], expected: str) -> None:
    done = run_deploy(*args, "--dry-run")
    assert done.returncode == 2
    assert done.stderr.startswith(f"deploy: {expected}")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_no_token_anywhere_is_one_line_and_a_dry_run_needs_none() -> None:
    done = run_deploy("--base-url", "https://app.windmill.dev", "--workspace", "ws", token=None)
    assert done.returncode == 2
    assert done.stderr.strip() == "deploy: no token: set WM_TOKEN (the variable the wmill CLI reads) or pass --token"
    dry = run_deploy("--base-url", "https://app.windmill.dev", "--workspace", "ws", "--dry-run", token=None)
    assert dry.returncode == 0, dry.stderr
    assert "Would deploy to workspace 'ws'" in dry.stdout


def test_a_secret_pasted_in_the_wrong_argument_is_never_echoed() -> None:
    for args in (
        ["--base-url", "https://admin:tok-secret-123@app.windmill.dev", "--workspace", "ws"],
        ["--base-url", "https://app.windmill.dev", "--workspace", "tok-secret-123 with spaces"],
    ):
        done = run_deploy(*args, "--dry-run", token=None)
        assert done.returncode == 2
        assert "tok-secret-123" not in done.stdout + done.stderr


def test_plain_http_is_allowed_to_loopback_and_with_allow_http() -> None:
    for args in (["--base-url", "http://127.0.0.1:8000"], ["--base-url", "http://wm.lan", "--allow-http"]):
        done = run_deploy(*args, "--workspace", "ws", "--dry-run", token=None)
        assert done.returncode == 0, done.stderr


def test_the_token_comes_from_wm_token_and_reaches_the_cli_through_its_environment() -> None:
    with WindmillStandIn() as standin:
        done = run_deploy("--base-url", standin.url, "--workspace", "support-ws")  # no --token anywhere
    assert done.returncode == 0, done.stdout + done.stderr
    assert standin.requests
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in standin.requests)


def test_a_folder_lookup_refused_for_another_reason_than_not_found_stops_before_any_push() -> None:
    with WindmillStandIn(fail={"/folders/get/": 401}) as standin:
        done = deploy(standin)
    assert done.returncode == 1
    assert "deploy: could not look up folder f/kustomer: Server failed. Unauthorized: Unauthorized" in done.stderr
    assert "Nothing was pushed" in done.stderr
    assert standin.writes() == []


def test_a_failed_push_is_said_once_with_the_clis_error_line() -> None:
    with WindmillStandIn(fail={"/scripts/create": 500}) as standin:
        done = deploy(standin)
    assert done.returncode == 1
    assert done.stderr.count("failed (exit 1)") == 1
    assert "was not successful: 500 - Internal Server Error" in done.stderr
    assert "Usage:" not in done.stdout + done.stderr
    assert "nothing was deleted" in done.stderr
