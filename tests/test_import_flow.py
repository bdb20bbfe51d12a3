"""The import flow: valid for Windmill, its inline steps, and whole imports end to end on the sandbox,
each step a worker-style job: every input position accounted for, a report whose `retry` resumes it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from types import ModuleType
from typing import Any

import pytest
import yaml

from workbench.local_flow import run_flow, run_flow_job
from workbench.sandbox import Sandbox
from workbench.worker import ROOT

FLOW = ROOT / "flows" / "kustomer" / "import_messages.flow"


def inline_step(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FLOW / f"{name}.inline_script.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


split = inline_step("split_into_batches")
plan = inline_step("plan_confirmation")
report = inline_step("report_outcomes")


def messages(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"channel": "chat", "app": "import", "preview": f"message {i}", **extra} for i in range(count)]


# ---- the flow file ----


def test_flow_is_valid_for_windmills_own_validator() -> None:
    done = subprocess.run(
        ["node", "tests/windmill/windmill_tools.mjs", "validate-flow", str(FLOW / "flow.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == {"errors": []}


def test_flow_sends_in_a_bounded_parallel_loop_then_confirms_each_operation() -> None:
    flow = yaml.safe_load((FLOW / "flow.yaml").read_text())
    modules = {m["id"]: m["value"] for m in flow["value"]["modules"]}
    assert list(modules) == ["split", "send", "plan", "confirm", "report"]
    send, confirm = modules["send"], modules["confirm"]
    assert (send["type"], send["parallel"], send["skip_failures"]) == ("forloopflow", True, True)
    assert 1 <= send["parallelism"] <= 10
    assert [m["value"].get("path", m["value"]["type"]) for m in send["modules"]] == [
        "identity",
        "f/kustomer/bulk_create_messages",
    ]
    assert (confirm["parallel"], confirm["skip_failures"]) == (False, True)
    assert confirm["modules"][0]["value"]["path"] == "f/kustomer/wait_for_bulk_results"
    assert flow["schema"]["properties"]["auth"]["format"] == "resource-kustomer"
    assert flow["schema"]["required"] == ["auth", "messages"]


# ---- step 1: split ----


def test_split_makes_batches_of_100_with_positions() -> None:
    batches = split.main(messages(250))
    assert [(b["first"], b["last"], len(b["messages"])) for b in batches] == [
        (0, 99, 100),
        (100, 199, 100),
        (200, 249, 50),
    ]


def test_split_paces_batches_for_sleeps_that_run_after_their_step() -> None:
    batches = split.main(messages(500), 100, max_requests_per_minute=60, parallelism=2)
    # the two slots start one second apart; each then holds its slot for two seconds after sending
    assert [b["delay"] for b in batches] == [0, 1, 0, 0, 0]
    assert [b["hold"] for b in batches] == [2, 2, 2, 2, 2]
    assert split.main(messages(10))[0]["delay"] == split.main(messages(10))[0]["hold"] == 0


def test_split_parallelism_is_the_loops() -> None:
    modules = yaml.safe_load((FLOW / "flow.yaml").read_text())["value"]["modules"]
    assert modules[0]["value"]["input_transforms"]["parallelism"]["value"] == modules[1]["value"]["parallelism"]


def test_split_gives_each_message_a_client_ref_from_its_position_unless_it_has_one() -> None:
    given = messages(3)
    given[1]["_clientRef"] = "crm-42"
    refs = [m["_clientRef"] for m in split.main(given)[0]["messages"]]
    assert refs == ["position-0", "crm-42", "position-2"]
    assert "_clientRef" not in given[0]  # the input is not changed


def test_split_refuses_a_repeated_client_ref_before_anything_is_sent() -> None:
    given = messages(3)
    given[2]["_clientRef"] = "position-0"
    with pytest.raises(ValueError, match=r"messages\[2\]._clientRef 'position-0' repeats messages\[0\]"):
        split.main(given)


@pytest.mark.parametrize(
    ("given", "size", "error"),
    [
        ({"channel": "chat"}, 100, "messages must be a list"),
        (["text"], 100, r"messages\[0\] must be a message object"),
        ([], 101, "batch_size must be 1 to 100"),
    ],
)
def test_split_refuses_what_cannot_be_batched(given: Any, size: int, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        split.main(given, size)


def test_split_of_nothing_is_no_batch() -> None:
    assert split.main([]) == []


# ---- steps 3 and 5: plan and report ----


def bulk_answer(bulk_id: str) -> dict[str, Any]:
    return {
        "data": {"type": "bulk", "id": bulk_id, "attributes": {"status": "queued", "createdAt": "2026-11-22T10:00:00Z"}}
    }


def test_plan_confirms_only_the_batches_kustomer_accepted_with_their_size_and_pacing() -> None:
    batches = split.main(messages(250))
    sent = [bulk_answer("a" * 24), {"error": {"name": "KustomerInputError", "message": "bad"}}, bulk_answer("b" * 24)]
    assert plan.main(batches, sent, max_requests_per_minute=120) == [
        {
            "batch": 0,
            "bulk_id": "a" * 24,
            "expected_items": 100,
            "submitted_at": "2026-11-22T10:00:00Z",
            "interval": 0.5,
            "hold": 0.5,
        },
        {
            "batch": 2,
            "bulk_id": "b" * 24,
            "expected_items": 50,
            "submitted_at": "2026-11-22T10:00:00Z",
            "interval": 0.5,
            "hold": 0.5,
        },
    ]


def confirmation(batch: dict[str, Any], failed: dict[int, str]) -> dict[str, Any]:
    items = []
    for i, m in enumerate(batch["messages"]):
        position = batch["first"] + i
        if position in failed:
            items.append({"_clientRef": m["_clientRef"], "status": "error", "error": failed[position]})
        else:
            items.append({"_clientRef": m["_clientRef"], "status": "created", "id": f"{position:024x}"})
    return {"status": "complete", "items": items}


def test_report_of_a_complete_import_counts_every_message_created() -> None:
    batches = split.main(messages(150))
    sent = [bulk_answer("a" * 24), bulk_answer("b" * 24)]
    result = report.main(batches, sent, plan.main(batches, sent), [confirmation(b, {}) for b in batches])
    assert result["counts"] == {"messages": 150, "created": 150, "failed": 0, "unknown": 0, "not_sent": 0}
    assert result["retry"] == result["not_created"] == result["unknown"] == []


def test_report_names_input_positions_and_separates_retry_from_unknown() -> None:
    given = messages(400)
    given[120]["externalId"] = "<m120@mail>"
    batches = split.main(given)
    sent: list[Any] = [
        bulk_answer("a" * 24),
        {
            "error": {
                "name": "KustomerOutcomeUnknownError",
                "message": "Kustomer answered 503",
                "extra": {"status": 503},
            }
        },
        {"error": {"name": "KustomerInputError", "message": "Nothing was sent to Kustomer: - body[7].channel: 'fax'"}},
        bulk_answer("d" * 24),
    ]
    planned = plan.main(batches, sent)
    confirmed = [confirmation(batches[0], {3: "duplicate detected"}), {"error": {"message": "still running"}}]
    with pytest.raises(report.ImportIncompleteError) as failure:
        report.main(batches, sent, planned, confirmed)
    error = failure.value
    assert error.counts == {"messages": 400, "created": 99, "failed": 1, "unknown": 200, "not_sent": 100}
    by_position = {e["position"]: e for e in error.not_created}
    assert by_position[3] == {
        "position": 3,
        "_clientRef": "position-3",
        "outcome": "failed",
        "why": "duplicate detected",
    }
    assert by_position[120]["outcome"] == "unknown"
    assert by_position[120]["why"] == "outcome unknown: the bulk request got 503"
    assert "externalId" in by_position[120]["check"]
    assert by_position[207]["outcome"] == "not sent"
    assert "messages[207].channel: 'fax'" in by_position[207]["why"]  # the batch's body[7], as an input position
    assert "run wait_for_bulk_results with bulk_id " + "d" * 24 in by_position[300]["check"]
    assert [m["_clientRef"] for m in error.retry] == ["position-3", *[f"position-{i}" for i in range(200, 300)]]
    assert {e["position"] for e in error.unknown} == set(range(100, 200)) | set(range(300, 400))
    text = str(error)
    assert text.startswith("400 messages: 99 created, 1 failed, 200 outcome unknown, 100 not sent.")
    assert "- messages[3] (position-3): failed: duplicate detected" in text
    assert "- messages[100] to [199] (100 messages): unknown: outcome unknown: the bulk request got 503" in text
    assert "extra.retry" in text


# ---- end to end, each step a worker-style job, against the sandbox ----


def auth(box: Sandbox) -> dict[str, str]:
    return {"apiKey": "sandbox-key-0123456789", "baseUrl": box.url}


def test_250_messages_are_sent_in_3_bulk_requests_each_exactly_once_and_all_confirmed() -> None:
    with Sandbox() as sandbox:
        result = run_flow(FLOW, {"auth": auth(sandbox), "messages": messages(250)})
        received = [r for r in sandbox.requests if r["path"] == "/v1/messages/bulk"]
        created = sandbox.created_by_ref
    assert len(received) == 3
    refs = [m["_clientRef"] for r in received for m in r["body"]]
    assert sorted(refs) == sorted(f"position-{i}" for i in range(250))
    assert sorted(int(m["preview"].split()[1]) for r in received for m in r["body"]) == list(range(250))
    assert result["counts"] == {"messages": 250, "created": 250, "failed": 0, "unknown": 0, "not_sent": 0}
    assert created == {f"position-{i}": 1 for i in range(250)}
    assert [(b["first"], b["last"], b["created"]) for b in result["batches"]] == [
        (0, 99, 100),
        (100, 199, 100),
        (200, 249, 50),
    ]


def test_1000_messages_with_failures_and_a_lost_answer_report_every_position_and_retry_resumes() -> None:
    all_refs = {f"position-{i}" for i in range(1000)}
    with Sandbox(item_failure_rate=0.03, seed=11, bulk_seconds=1.0) as sandbox:
        sandbox.configure(fault="applied_503", fault_count=1)  # the first bulk request: applied, then 503
        first = run_flow_job(FLOW, {"auth": auth(sandbox), "messages": messages(1000)})
        assert first.exit_code == 1
        assert first.result["step_id"] == "report"
        extra = first.result["extra"]
        lost = next(r for r in sandbox.requests if r.get("fault") == "applied_503")
        lost_refs = {m["_clientRef"] for m in lost["body"]}
        created_first = dict(sandbox.created_by_ref)

        failed = [e for e in extra["not_created"] if e["outcome"] == "failed"]
        failed_refs = {e["_clientRef"] for e in failed}
        # the report says exactly what the sandbox did outside the lost batch
        assert failed_refs == all_refs - lost_refs - set(created_first)
        assert 10 <= len(failed_refs) <= 60  # about 3% of 900
        expected_texts = ("duplicate detected", "conversation not found", "invalid custom attribute")
        assert all(e["why"] in expected_texts for e in failed)
        assert all(e["_clientRef"] == f"position-{e['position']}" for e in extra["not_created"])
        # the lost batch: 100 positions whose outcome is unknown, none of them offered for retry
        assert {e["_clientRef"] for e in extra["unknown"]} == lost_refs
        assert all(e["why"] == "outcome unknown: the bulk request got 503" for e in extra["unknown"])
        assert {m["_clientRef"] for m in extra["retry"]} == failed_refs
        assert extra["counts"] == {
            "messages": 1000,
            "created": 900 - len(failed_refs),
            "failed": len(failed_refs),
            "unknown": 100,
            "not_sent": 0,
        }

        sandbox.configure(item_failure_rate=0.0)
        second = run_flow_job(FLOW, {"auth": auth(sandbox), "messages": extra["retry"]})
        assert second.exit_code == 0, second.result
        assert second.result["counts"]["created"] == len(failed_refs)
        created_after = dict(sandbox.created_by_ref)
    assert set(created_after.values()) == {1}  # no message created twice
    assert set(created_after) == set(created_first) | failed_refs  # exactly the retried ones were added


def test_a_paced_import_stays_under_the_rate_limit_sends_and_confirmations_together() -> None:
    with Sandbox(rate_limit=3, window=2.0) as sandbox:  # 90 requests a minute
        result = run_flow(
            FLOW,
            {"auth": auth(sandbox), "messages": messages(600), "max_requests_per_minute": 72},
        )
        requests = [r for r in sandbox.requests if r["path"].startswith("/v1/")]
    assert [r["status"] for r in requests].count(429) == 0  # the import kept to its share
    assert result["counts"]["created"] == 600
    assert sum(r["method"] == "POST" for r in requests) == 6


def test_a_bad_batch_is_reported_by_input_position_and_the_others_are_sent_once() -> None:
    given = messages(250)
    given[150]["channel"] = "fax"
    with Sandbox() as sandbox:
        job = run_flow_job(FLOW, {"auth": auth(sandbox), "messages": given})
        received = [r for r in sandbox.requests if r["path"] == "/v1/messages/bulk"]
    assert job.exit_code == 1
    assert job.result["step_id"] == "report"
    text = job.result["message"]
    assert "250 messages: 150 created, 0 failed, 0 outcome unknown, 100 not sent." in text
    assert "messages[150].channel: 'fax' is not one of" in text  # the batch's body[50], said as an input position
    assert len(received) == 2  # batches 0-99 and 200-249, never the bad one
    assert len(job.result["extra"]["retry"]) == 100


def test_inline_steps_take_lists_of_objects_for_windmills_parser() -> None:
    names = ("split_into_batches", "plan_confirmation", "report_outcomes")
    files = [str(FLOW / f"{name}.inline_script.py") for name in names]
    done = subprocess.run(
        ["node", "tests/windmill/windmill_tools.mjs", "signature", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for parsed in json.loads(done.stdout).values():
        lists = [a for a in parsed["args"] if isinstance(a["typ"], dict) and "list" in a["typ"]]
        assert lists
        assert all(a["typ"]["list"] == {"object": {"name": None, "props": []}} for a in lists)  # no resource picker
