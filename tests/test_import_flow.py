"""The import flow: valid for Windmill, its inline steps, and 250 messages end to end on the sandbox."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from types import ModuleType
from typing import Any

import pytest
import yaml

from workbench.local_flow import FlowStepError, run_flow
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
summarize = inline_step("summarize_batches")


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


def test_flow_loops_in_parallel_with_bounded_parallelism_over_the_bulk_script() -> None:
    flow = yaml.safe_load((FLOW / "flow.yaml").read_text())
    loop = flow["value"]["modules"][1]["value"]
    assert loop["type"] == "forloopflow"
    assert loop["parallel"] is True
    assert 1 <= loop["parallelism"] <= 10
    assert loop["modules"][0]["value"]["path"] == "f/kustomer/bulk_create_messages"
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


def test_split_paces_batches_to_the_requests_per_minute_given() -> None:
    batches = split.main(messages(500), 100, max_requests_per_minute=60, parallelism=2)
    # the two slots start one second apart, then each waits two seconds before its next batch
    assert [b["delay"] for b in batches] == [0, 1, 2, 2, 2]


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


# ---- step 3: summarize ----


def test_summary_has_one_entry_per_batch() -> None:
    batches = split.main(messages(150))
    outcomes = [{"data": {"type": "bulk", "id": f"b{i}", "attributes": {"status": "queued"}}} for i in range(2)]
    assert summarize.main(batches, outcomes) == [
        {"batch": 0, "first": 0, "last": 99, "count": 100, "bulk_id": "b0", "status": "queued"},
        {"batch": 1, "first": 100, "last": 149, "count": 50, "bulk_id": "b1", "status": "queued"},
    ]


def test_summary_fails_naming_the_positions_not_sent() -> None:
    batches = split.main(messages(150))
    outcomes = [
        {"error": {"name": "KustomerRateLimitError", "message": "Rate limited by Kustomer"}},
        {"data": {"type": "bulk", "id": "b1", "attributes": {"status": "queued"}}},
    ]
    with pytest.raises(RuntimeError) as failure:
        summarize.main(batches, outcomes)
    text = str(failure.value)
    assert "1 of 2 batches failed" in text
    assert "- positions 0-99: Rate limited by Kustomer" in text
    assert "100-149: bulk b1" in text


# ---- end to end, each step a worker-style job, against the sandbox ----


def test_250_messages_are_sent_in_3_bulk_requests_each_exactly_once() -> None:
    with Sandbox() as sandbox:
        result = run_flow(FLOW, {"auth": {"apiKey": "k", "baseUrl": sandbox.url}, "messages": messages(250)})
        received = [r for r in sandbox.requests if r["path"] == "/v1/messages/bulk"]
    assert len(received) == 3
    refs = [m["_clientRef"] for r in received for m in r["body"]]
    assert sorted(refs) == sorted(f"position-{i}" for i in range(250))
    assert sorted(int(m["preview"].split()[1]) for r in received for m in r["body"]) == list(range(250))
    assert [(e["first"], e["last"], e["count"]) for e in result] == [(0, 99, 100), (100, 199, 100), (200, 249, 50)]
    assert all(len(e["bulk_id"]) == 24 and e["status"] == "queued" for e in result)


def test_a_paced_import_stays_under_the_rate_limit() -> None:
    with Sandbox(rate_limit=3, window=2.0) as sandbox:  # 90 requests a minute
        result = run_flow(
            FLOW,
            {"auth": {"apiKey": "k", "baseUrl": sandbox.url}, "messages": messages(600), "max_requests_per_minute": 72},
        )
        statuses = [r["status"] for r in sandbox.requests if r["path"] == "/v1/messages/bulk"]
    assert statuses == [200] * 6  # no 429: the import kept to its share
    assert len(result) == 6


def test_a_bad_batch_fails_the_flow_but_the_others_are_sent_once() -> None:
    given = messages(250)
    given[150]["channel"] = "fax"
    with Sandbox() as sandbox:
        with pytest.raises(FlowStepError) as failure:
            run_flow(FLOW, {"auth": {"apiKey": "k", "baseUrl": sandbox.url}, "messages": given})
        received = [r for r in sandbox.requests if r["path"] == "/v1/messages/bulk"]
    assert failure.value.step == "summary"
    text = str(failure.value)
    assert "positions 100-199: Nothing was sent to Kustomer" in text
    assert "body[50].channel: 'fax' is not one of" in text
    assert len(received) == 2  # batches 0-99 and 200-249, never the bad one


def test_inline_steps_take_lists_of_objects_for_windmills_parser() -> None:
    files = [str(FLOW / "split_into_batches.inline_script.py"), str(FLOW / "summarize_batches.inline_script.py")]
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
        assert all(a["typ"]["list"] == {"object": {"name": None, "props": []}} for a in lists)
