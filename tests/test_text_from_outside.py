"""Message text is data: a body given as JSON text arrives exactly, and the job's Windmill token,
which the worker puts in place of a text `$WM_TOKEN` in structured arguments, is never sent.

The worker's rule (windmill-worker common.rs, transform_json / transform_json_value) is imitated by
workbench/workspace.py; each of its parts is a test here, then the scripts are run under it."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import bulk_create_messages
import create_message
import httpx
import pytest
import respx

from workbench.paths import SCRIPTS
from workbench.sandbox import Sandbox
from workbench.worker import run_job
from workbench.workspace import InterpolationError, Workspace

US = "https://api.kustomerapp.com"
AUTH = {"apiKey": "test-key-0123456789abcdef"}
TEMPTING = ["$WM_TOKEN", "$var:u/admin/kustomer_key", "$res:u/admin/kustomer", "NaN", "To Infinity and beyond"]


def message(preview: str, **extra: Any) -> dict[str, Any]:
    return {"channel": "email", "app": "postmark", "direction": "in", "preview": preview, **extra}


# ---- the worker's rule, as the workbench imitates it ----


def reserved() -> dict[str, str]:
    return {"WM_TOKEN": "wm_job_secret", "WM_WORKSPACE": "local"}


def test_an_argument_holding_a_marker_is_walked_and_strings_that_start_with_a_dollar_are_replaced() -> None:
    workspace = Workspace(variables={"u/admin/kustomer_key": "the-secret"})
    body = {
        "subject": "50% off with $var: SAVE50",
        "preview": "$WM_TOKEN",
        "meta": {"note": "$var:u/admin/kustomer_key"},
    }
    out = workspace.interpolate({"body": body}, reserved())
    assert out["body"] == {
        "subject": "50% off with $var: SAVE50",
        "preview": "wm_job_secret",
        "meta": {"note": "the-secret"},
    }


def test_an_argument_without_a_marker_is_left_as_it_is() -> None:
    body = {"preview": "$WM_TOKEN"}  # no $var:, $res:, $jsonvar: or $encrypted: anywhere in it
    assert Workspace().interpolate({"body": body}, reserved()) == {"body": body}


def test_each_argument_is_judged_alone() -> None:
    args = {"body": {"preview": "$WM_TOKEN"}, "auth": "$res:u/admin/kustomer"}
    out = Workspace(resources={"u/admin/kustomer": AUTH}).interpolate(args, reserved())
    assert out == {"body": {"preview": "$WM_TOKEN"}, "auth": AUTH}


def test_arrays_are_walked_near_the_top_only_and_up_to_1000_items() -> None:
    workspace = Workspace(variables={"v": "x"})
    shallow = [{"a": "$var:v"}]
    deep = {"a": {"b": {"c": ["$var:v"]}}}  # an array at depth 3
    long = ["$var:v"] * 1001
    out = workspace.interpolate({"shallow": shallow, "deep": deep, "long": long}, reserved())
    assert out == {"shallow": [{"a": "x"}], "deep": deep, "long": long}


def nested(levels: int, inner: Any) -> Any:
    for _ in range(levels):
        inner = {"meta": inner}
    return inner


def test_an_argument_nested_50_levels_with_a_marker_fails_the_job_and_49_levels_are_walked() -> None:
    workspace = Workspace(variables={"v": "x"})
    assert workspace.interpolate({"body": nested(49, "$var:v")}, reserved()) == {"body": nested(49, "x")}
    with pytest.raises(InterpolationError, match="Argument `meta` nests 50 levels or more"):
        workspace.interpolate({"body": nested(50, "$var:v")}, reserved())
    deep_without_marker = nested(120, "$WM_TOKEN")  # never walked: no marker in its text
    assert workspace.interpolate({"body": deep_without_marker}, reserved()) == {"body": deep_without_marker}


def test_json_text_in_one_string_is_never_replaced() -> None:
    text = json.dumps([{"preview": "$var:u/admin/kustomer_key", "subject": "$WM_TOKEN"}])
    assert Workspace(variables={"u/admin/kustomer_key": "s"}).interpolate({"body": text}, reserved()) == {"body": text}


def test_a_variable_the_workspace_lacks_fails_the_job() -> None:
    with pytest.raises(InterpolationError, match="Variable u/x not found for `preview`"):
        Workspace().interpolate({"body": {"preview": "$var:u/x"}}, reserved())


# ---- the scripts: JSON text ----


@pytest.mark.parametrize("text", TEMPTING)
@respx.mock
def test_a_body_given_as_json_text_is_sent_exactly(text: str) -> None:
    route = respx.post(f"{US}/v1/messages").mock(return_value=httpx.Response(201, json={"data": {"id": "m1"}}))
    body = message(text, subject="50% off with $var: SAVE50")
    create_message.main(AUTH, json.dumps(body))  # type: ignore[arg-type]
    assert json.loads(route.calls.last.request.content) == body


@respx.mock
def test_a_bulk_body_given_as_json_text_is_sent_exactly() -> None:
    route = respx.post(f"{US}/v1/messages/bulk").mock(return_value=httpx.Response(200, json={"data": {"id": "b1"}}))
    body = [{**message(t), "_clientRef": f"r{i}"} for i, t in enumerate(TEMPTING)]
    bulk_create_messages.main(AUTH, json.dumps(body))  # type: ignore[arg-type]
    assert json.loads(route.calls.last.request.content) == body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", "body: is text but not JSON (line 1, column 1): Expecting value"),
        ('{"preview": NaN}', "body: is text but not JSON: NaN is not a JSON number"),
        ('{"preview": "a", "preview": "b"}', "body: the JSON text names the key 'preview' twice in one object"),
        ('{"channel": "email",', "body: is text but not JSON (line 1, column 21)"),
    ],
)
@pytest.mark.parametrize("script", [create_message, bulk_create_messages])
@respx.mock
def test_text_that_is_not_strict_json_is_one_clear_error_and_nothing_is_sent(
    script: ModuleType, text: str, expected: str
) -> None:
    with pytest.raises(script.KustomerInputError) as failure:
        script.main(AUTH, text)
    assert str(failure.value).startswith("Nothing was sent to Kustomer: the input has 1 problem:\n- body")
    assert expected in str(failure.value)
    assert not respx.calls


# ---- the scripts: the job's token ----


@respx.mock
def test_a_body_holding_the_jobs_token_is_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WM_TOKEN", "wm_job_a_token_of_this_job")
    body = [{**message("hi"), "_clientRef": "r0"}, {**message("wm_job_a_token_of_this_job"), "_clientRef": "r1"}]
    with pytest.raises(bulk_create_messages.KustomerInputError) as failure:
        bulk_create_messages.main(AUTH, body)  # type: ignore[arg-type]
    text = str(failure.value)
    assert "body[1].preview: holds this job's Windmill token" in text
    assert "pass the body as JSON text" in text
    assert "wm_job_a_token_of_this_job" not in text
    assert "a_token" not in text
    assert not respx.calls


def run(script: str, args: dict[str, Any], workspace: Workspace, sandbox: Sandbox) -> Any:
    auth = {"apiKey": "sandbox-key-0123456789", "baseUrl": sandbox.url}
    return run_job(SCRIPTS / f"{script}.py", {"auth": auth, **args}, workspace=workspace)


def test_under_the_workers_rule_a_structured_body_is_refused_and_json_text_arrives_exactly() -> None:
    workspace = Workspace(variables={"u/admin/kustomer_key": "the-secret-value"})
    body = message("$WM_TOKEN", subject="50% off with $var: SAVE50")
    with Sandbox() as sandbox:
        refused = run("create_message", {"body": body}, workspace, sandbox)
        sent = run("create_message", {"body": json.dumps(body)}, workspace, sandbox)
        received = [r["body"] for r in sandbox.requests if r["path"] == "/v1/messages"]
    assert refused.exit_code == 1
    assert refused.result["name"] == "KustomerInputError"
    assert "body.preview: holds this job's Windmill token" in refused.result["message"]
    assert not any(token in refused.output for token in workspace.tokens)
    assert sent.exit_code == 0, sent.result
    assert received == [body]  # the refused one never reached Kustomer; the text one exactly
