"""The result is Kustomer's JSON, unchanged, as Windmill stores it: the worker's result rewriting is
turned off, and numbers JSON cannot carry are kept as their text."""

from __future__ import annotations

import json
from typing import Any

import create_message
import pytest
from conftest import API_KEY
from hostile_server import Answer, HostileServer
from script_calls import MESSAGE, attempt

from workbench.paths import SCRIPTS
from workbench.worker import run_job


def test_the_result_keeps_nan_infinity_and_nul_in_its_text_through_the_worker_wrapper() -> None:
    preview = "To Infinity and beyond, NaN times, \u0000 -Infinity"
    answer = {"data": {"type": "message", "id": "m1", "attributes": {"preview": preview}}}
    with HostileServer([Answer.http(201, json.dumps(answer).encode())]) as server:
        job = run_job(
            SCRIPTS / "create_message.py",
            {"auth": {"apiKey": API_KEY, "baseUrl": server.url}, "body": dict(MESSAGE, preview=preview)},
        )
    assert job.exit_code == 0, job.result
    assert job.result["data"]["attributes"]["preview"] == preview
    assert json.loads(job.output) == answer


def test_without_the_annotation_the_worker_wrapper_rewrites_such_text(tmp_path: Any) -> None:
    """The rule local-run imitates (python_executor.rs, get_result_postprocessor), shown on a probe."""
    probe = tmp_path / "probe.py"
    probe.write_text('def main():\n    return {"preview": "To Infinity and beyond"}\n')
    assert run_job(probe, {}).result == {"preview": "To  null  and beyond"}
    probe.write_text('# skip_result_postprocessing\ndef main():\n    return {"preview": "To Infinity and beyond"}\n')
    assert run_job(probe, {}).result == {"preview": "To Infinity and beyond"}


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_an_answer_with_non_json_number_tokens_is_not_taken_for_json(token: bytes) -> None:
    with HostileServer([Answer.http(201, b'{"data": {"size": ' + token + b"}}")]) as server:
        _, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": server.url})
    assert isinstance(error, create_message.KustomerOutcomeUnknownError)
    assert "its answer was not JSON" in str(error)


def test_a_number_too_large_for_a_float_in_a_success_answer_is_kept_as_its_text_and_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = Answer.http(201, b'{"data": {"id": "5f9a3c1e2b4d6f8a0c1e3b5d", "attributes": {"n": 1e400, "m": 2.5}}}')
    with HostileServer([answer]) as server:
        result, error = attempt(create_message, {"apiKey": API_KEY, "baseUrl": server.url})
    assert error is None, error
    assert result == {"data": {"id": "5f9a3c1e2b4d6f8a0c1e3b5d", "attributes": {"n": "1e400", "m": 2.5}}}
    json.dumps(result, allow_nan=False)  # strict JSON, as Windmill stores it
    said = capsys.readouterr().out
    assert "(id 5f9a3c1e2b4d6f8a0c1e3b5d)" in said
    assert "1 number(s) too large for JSON (1e400)" in said
