"""The import flow: valid for Windmill, and whole imports end to end on the sandbox under the rules a
real workspace applies (Cloud's result limits, arguments copied into every iteration, expressions in
QuickJS, the worker's interpolation of job arguments), each step a worker-style job reading and
writing the workspace storage through Windmill's own `wmill` client.

Every input position is accounted for, nothing Windmill stores grows past its limits, and the
report's `retry_file` resumes exactly the messages that were not created."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import tomllib
from typing import Any

import pytest
import yaml
from import_runs import (
    FLOW,
    SECRET,
    TEMPTING,
    auth,
    bulk_bodies,
    jsonl,
    load_step,
    messages,
    read_jsonl,
    run,
    stored_batch,
    workspace,
)

from workbench.paths import ROOT
from workbench.sandbox import Sandbox

__all__ = ["workspace"]  # the fixture, for pytest


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


def test_one_job_at_a_time_takes_a_group_of_batches_and_no_step_gets_messages_as_structured_arguments() -> None:
    """The loop runs in order (one job at a time, so that job's pace is the import's), over groups of
    batch numbers; failed jobs do not stop it, so the report always runs."""
    flow = yaml.safe_load((FLOW / "flow.yaml").read_text())
    modules = {m["id"]: m["value"] for m in flow["value"]["modules"]}
    assert list(modules) == ["prepare", "send", "report"]
    value = modules["send"]
    assert (value["type"], value["parallel"], value["skip_failures"]) == ("forloopflow", False, True)
    assert value["iterator"]["expr"] == "results.prepare.groups"
    assert [m["value"]["type"] for m in value["modules"]] == ["rawscript"]
    assert modules["prepare"]["input_transforms"]["messages"]["expr"] == "JSON.stringify(flow_input.messages ?? [])"
    schema = flow["schema"]["properties"]
    assert schema["messages_file"]["format"] == "resource-s3_object"
    assert flow["schema"]["required"] == ["auth"]
    locked = {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    for step in FLOW.glob("*.inline_script.py"):  # every step that carries message text opts out of rewriting
        text = step.read_text()
        assert text.startswith("# skip_result_postprocessing\n# /// script\n"), step.name
        pinned = re.search(r"^# dependencies = (\[.*?\])", text, re.MULTILINE)
        assert pinned is not None, step.name
        for requirement in json.loads(pinned[1]):  # PEP 723, which Windmill reads: the versions tested here
            name, version = requirement.split("==")
            assert locked[name] == version, requirement


# ---- small imports, inline ----


def test_250_inline_messages_are_sent_in_3_bulk_requests_each_exactly_once(workspace: Any) -> None:
    ws, storage = workspace
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=messages(250))
        bodies = bulk_bodies(box)
        created = box.created_by_ref
    assert job.exit_code == 0, job.result
    assert sorted(len(b) for b in bodies) == [50, 100, 100]  # the loop runs 4 at a time, in any order
    assert sorted(m["_clientRef"] for b in bodies for m in b) == sorted(f"position-{i}" for i in range(250))
    assert job.result["counts"] == {
        "messages": 250,
        "created": 250,
        "failed": 0,
        "unknown": 0,
        "not_sent": 0,
        "pending": 0,
    }
    assert created == {f"position-{i}": 1 for i in range(250)}
    report = read_jsonl(storage, job.result["report_file"])
    assert [e["position"] for e in report] == list(range(250))
    assert all(e["outcome"] == "created" and len(e["id"]) == 24 for e in report)


def test_tempting_texts_reach_kustomer_exactly_and_come_back_exactly_in_retry(workspace: Any) -> None:
    ws, storage = workspace
    given = [
        {**m, "preview": TEMPTING[i % 5], "subject": "50% off with $var: SAVE50"} for i, m in enumerate(messages(10))
    ]
    given[7]["preview"] = "sandbox:fail $WM_TOKEN"  # Kustomer refuses this one: it must come back as it was
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=given)
        sent = [m for b in bulk_bodies(box) for m in b]
    assert [{k: v for k, v in m.items() if k != "_clientRef"} for m in sent] == given
    assert not any(SECRET in json.dumps(m) or any(t in json.dumps(m) for t in ws.tokens) for m in sent)
    assert job.exit_code == 1
    extra = job.result["extra"]
    assert extra["retry"] == [{**given[7], "_clientRef": "position-7"}]
    assert read_jsonl(storage, extra["retry_file"]) == extra["retry"]


def test_tempting_texts_in_a_file_reach_kustomer_exactly_and_come_back_exactly_in_retry_file(
    workspace: Any,
) -> None:
    ws, storage = workspace
    given = [
        {**m, "preview": TEMPTING[i % 5], "subject": "50% off with $var: SAVE50"} for i, m in enumerate(messages(10))
    ]
    given[3]["preview"] = "sandbox:fail $var:u/admin/kustomer_key"
    storage.put("uploads/h.jsonl", jsonl(given))
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"})
        sent = [m for b in bulk_bodies(box) for m in b]
    assert [{k: v for k, v in m.items() if k != "_clientRef"} for m in sent] == given
    assert not any(SECRET in json.dumps(m) or any(t in json.dumps(m) for t in ws.tokens) for m in sent)
    assert read_jsonl(storage, job.result["extra"]["retry_file"]) == [{**given[3], "_clientRef": "position-3"}]


def test_1000_inline_messages_stay_within_cloud_limits_and_the_copies_windmill_makes_are_counted(
    workspace: Any,
) -> None:
    ws, _ = workspace
    given = messages(1000)
    size = len(json.dumps(given))
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=given)
    assert job.exit_code == 0, job.result
    assert ws.largest_result < 10_000  # no job's result holds messages
    # the flow's input, prepare's text of it, and the one loop iteration (one job takes all 10 batches)
    # that Windmill stores with the whole flow input: the price of an inline input
    assert 2.5 * size <= ws.stored_bytes <= 4 * size


def test_an_inline_input_over_2_mb_is_refused_before_anything_is_sent(workspace: Any) -> None:
    ws, _ = workspace
    given = [{**m, "preview": "p" * 700} for m in messages(3000)]
    size = len(json.dumps(given, separators=(",", ":")))  # as JSON.stringify writes it
    assert 2_000_000 < size < 2_500_000
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=given)
        assert box.requests == []
    assert job.exit_code == 1
    assert job.result["step_id"] == "prepare"
    assert f"The inline messages are {size / 1e6:.1f} MB of JSON, over the 2 MB" in job.result["message"]
    assert "give it as messages_file" in job.result["message"]


# ---- checked before the first request ----


def test_one_invalid_message_stops_the_import_before_anything_is_sent_naming_every_position(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(450)
    given[150]["channel"] = "fax"
    given[420]["sentAt"] = "last Friday"
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=given)
        assert box.requests == []
    assert job.exit_code == 1
    assert job.result["step_id"] == "prepare"
    text = job.result["message"]
    assert text.startswith("2 of 450 messages are invalid; nothing was sent.")
    assert "- messages[150].channel: 'fax' is not one of" in text
    assert "- messages[420].sentAt: 'last Friday' is not an RFC 3339 date-time" in text
    invalid = read_jsonl(storage, job.result["extra"]["invalid_file"])
    assert [line["position"] for line in invalid] == [150, 420]


def test_skip_invalid_sends_the_valid_ones_and_reports_the_others_as_not_sent(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(150)
    given[20]["channel"] = "fax"
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=given, skip_invalid=True)
        bodies = bulk_bodies(box)
    assert sum(len(b) for b in bodies) == 149
    extra = job.result["extra"]
    assert extra["counts"] == {"messages": 150, "created": 149, "failed": 0, "unknown": 0, "not_sent": 1, "pending": 0}
    assert extra["not_created"][0]["position"] == 20
    assert "'fax' is not one of" in extra["not_created"][0]["why"]
    assert read_jsonl(storage, extra["retry_file"]) == [{**given[20], "_clientRef": "position-20"}]


def test_a_dry_run_checks_everything_sends_nothing_and_says_what_the_import_would_take(workspace: Any) -> None:
    ws, _ = workspace
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=messages(1234), dry_run=True, max_requests_per_minute=300)
        assert box.requests == []
    assert job.exit_code == 0, job.result
    assert job.result["dry_run"] == {
        "batches": 13,
        "requests": 26,
        "max_requests_per_minute": 300,
        "minutes": 0.1,
        "jobs": 1,
    }
    assert job.result["counts"] == {"messages": 1234, "valid": 1234, "invalid": 0}


def test_a_dry_run_lists_the_invalid_messages_as_a_run_would_and_sends_nothing(workspace: Any) -> None:
    """dry_run checks every message: the problems a run would refuse are in its result (the first
    ones) and in invalid_file (all of them), and nothing reaches Kustomer."""
    ws, storage = workspace
    lines = [json.dumps(m) for m in messages(4)]
    lines[1] = json.dumps({"channel": "fax", "app": "a"})
    lines[2] = "not json at all"
    lines[3] = json.dumps({"channel": "chat"})
    storage.put("uploads/h.jsonl", "".join(line + "\n" for line in lines).encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, dry_run=True)
        assert box.requests == []
    assert job.exit_code == 0, job.result
    result = job.result
    assert result["counts"] == {"messages": 4, "valid": 1, "invalid": 3}
    assert [p.split(":")[0].split(".")[0] for p in result["problems"]] == ["messages[1]", "messages[2]", "messages[3]"]
    assert "'fax' is not one of" in result["problems"][0]
    assert result["summary"].startswith("3 of 4 messages are invalid: a run would send nothing")
    assert "Nothing was sent" in result["summary"]
    assert [entry["position"] for entry in read_jsonl(storage, result["invalid_file"])] == [1, 2, 3]
    assert not any(key.endswith(("manifest.json", "lease.json")) for key in storage.objects("kustomer_import/"))


@pytest.mark.parametrize(
    ("invalid", "total", "refused", "dry_run"),
    [
        (
            1,
            1,
            "The only message is invalid; nothing was sent. Fix it and run again (no message is valid: skip_invalid "
            "would send nothing):\n- messages[0].channel: 'fax' is not one of",
            "The only message is invalid: a run would send nothing (with skip_invalid neither: no message is valid); "
            "invalid_file lists it with its problems. Nothing was sent.",
        ),
        (
            3,
            3,
            "All 3 messages are invalid; nothing was sent. Fix them and run again (no message is valid: skip_invalid "
            "would send nothing):\n",
            "All 3 messages are invalid: a run would send nothing (with skip_invalid neither: no message is valid); "
            "invalid_file lists every one with its problems. Nothing was sent.",
        ),
        (
            1,
            3,
            "1 of 3 messages is invalid; nothing was sent. Fix it, or run with skip_invalid to send the 2 valid ones "
            "and report the invalid one as not sent:\n",
            "1 of 3 messages is invalid: a run would send nothing (with skip_invalid, it sends the 2 valid ones and "
            "reports the invalid one as not sent); invalid_file lists it with its problems. Nothing was sent.",
        ),
        (
            2,
            3,
            "2 of 3 messages are invalid; nothing was sent. Fix them, or run with skip_invalid to send the valid one "
            "and report the others as not sent:\n",
            "2 of 3 messages are invalid: a run would send nothing (with skip_invalid, it sends the valid one and "
            "reports the others as not sent); invalid_file lists every one with its problems. Nothing was sent.",
        ),
    ],
    ids=["the-only-one", "all-three", "one-of-three", "two-of-three"],
)
def test_invalid_messages_are_counted_in_english_and_skip_invalid_is_offered_only_when_one_is_valid(
    workspace: Any, invalid: int, total: int, refused: str, dry_run: str
) -> None:
    ws, _ = workspace
    given = [{**m, "channel": "fax"} if i < invalid else m for i, m in enumerate(messages(total))]
    with Sandbox() as box:
        run_job = run(ws, auth=auth(box), messages=given)
        dry = run(ws, auth=auth(box), messages=given, dry_run=True)
        assert box.requests == []
    assert run_job.result["message"].startswith(refused)
    assert dry.result["summary"] == dry_run


def test_the_summary_of_one_of_each_reads_as_english_and_names_a_line_that_is_no_message_by_its_line(
    workspace: Any,
) -> None:
    """skip_invalid with one line that is no JSON: no Python None in the summary, and no "1 lines"."""
    ws, storage = workspace
    storage.put("uploads/h.jsonl", (json.dumps(messages(1)[0]) + "\nnot json at all\n").encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, skip_invalid=True)
    lines = job.result["message"].splitlines()
    assert lines[0] == "2 messages: 1 created, 0 failed, 0 outcome unknown, 1 not sent, 0 not sent yet."
    assert lines[1].startswith("- messages[1]: not_sent: messages[1]: is text but not JSON")
    assert lines[2] == (
        "1 line of the input is no message at all (report_file gives its line number): fix it in the input; it is "
        "not in retry_file."
    )
    assert "None" not in job.result["message"]
    assert " 1 lines" not in job.result["message"]


def test_one_message_is_one_message_in_every_count(workspace: Any) -> None:
    ws, storage = workspace
    storage.put("uploads/h.jsonl", json.dumps({"channel": "fax", "app": "a"}).encode() + b"\n")
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, skip_invalid=True)
    lines = job.result["message"].splitlines()
    assert lines[0] == "1 message: 0 created, 0 failed, 0 outcome unknown, 1 not sent, 0 not sent yet."
    assert lines[-1].startswith("Safe to send again: the 1 message in retry_file (failed or not sent: it was not")


def test_messages_inline_and_as_a_file_at_once_are_refused(workspace: Any) -> None:
    ws, storage = workspace
    storage.put("uploads/h.jsonl", jsonl(messages(3)))
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=messages(3), messages_file={"s3": "uploads/h.jsonl"})
        assert box.requests == []
    assert "not both" in job.result["message"]


# ---- from a file in the workspace storage ----


def test_a_json_array_file_is_read_as_the_same_messages(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(120, preview="é ünïcode " * 300)
    storage.put("uploads/h.json", json.dumps(given, indent=1).encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.json"})
        sent = [m for b in bulk_bodies(box) for m in b]
    assert job.exit_code == 0, job.result
    assert [{k: v for k, v in m.items() if k != "_clientRef"} for m in sent] == given


def test_a_file_import_of_5000_with_failures_and_a_lost_batch_accounts_for_every_position_and_resumes(
    workspace: Any,
) -> None:
    ws, storage = workspace
    given = messages(5_000)
    for i in range(0, 5_000, 397):
        given[i]["preview"] = TEMPTING[i % 5]
    storage.put("uploads/history.jsonl", jsonl(given))
    all_refs = {f"position-{i}" for i in range(5_000)}
    with Sandbox(item_failure_rate=0.01, seed=5, bulk_seconds=0.2) as box:
        box.configure(fault="applied_503", fault_count=1)  # the first bulk request: applied, then 503
        first = run(ws, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
        lost = next(r for r in box.requests if r.get("fault") == "applied_503")
        lost_refs = {m["_clientRef"] for m in lost["body"]}
        created_first = dict(box.created_by_ref)
        assert first.exit_code == 1
        assert first.result["step_id"] == "report"
        extra = first.result["extra"]
        assert len(first.output) < 100_000  # the error (and its report) stays far under Cloud's 2 MB
        assert ws.largest_result < 100_000
        report = read_jsonl(storage, extra["report_file"])
        assert [e["position"] for e in report] == list(range(5_000))
        by_outcome: dict[str, set[str]] = {}
        for entry in report:
            by_outcome.setdefault(entry["outcome"], set()).add(entry["_clientRef"])
        assert by_outcome["unknown"] == lost_refs
        assert by_outcome["failed"] == all_refs - lost_refs - set(created_first)
        assert by_outcome["created"] == set(created_first) - lost_refs
        assert 20 <= len(by_outcome["failed"]) <= 90  # about 1% of 4,900
        assert extra["counts"]["messages"] == 5_000
        assert len(extra["not_created"]) == 100
        unknown = read_jsonl(storage, extra["unknown_file"])
        assert {e["_clientRef"] for e in unknown} == lost_refs
        retry = read_jsonl(storage, extra["retry_file"])
        assert {m["_clientRef"] for m in retry} == by_outcome["failed"]
        assert all(m == {**given[int(m["_clientRef"].split("-")[1])], "_clientRef": m["_clientRef"]} for m in retry)

        box.configure(item_failure_rate=0.0)
        second = run(ws, auth=auth(box), messages_file=extra["retry_file"])
        assert second.exit_code == 0, second.result
        assert second.result["counts"]["created"] == len(by_outcome["failed"])
        created_after = dict(box.created_by_ref)
    assert set(created_after.values()) == {1}  # no message created twice
    assert set(created_after) == set(created_first) | by_outcome["failed"]


def test_a_paced_import_stays_under_the_rate_limit_sends_and_confirmations_together(workspace: Any) -> None:
    ws, storage = workspace
    storage.put("uploads/h.jsonl", jsonl(messages(600)))
    with Sandbox(rate_limit=3, window=2.0) as box:  # 90 requests a minute
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, max_requests_per_minute=72)
        requests = [r for r in box.requests if r["path"].startswith("/v1/")]
    assert job.exit_code == 0, job.result
    assert [r["status"] for r in requests].count(429) == 0  # the import kept to its share
    assert sum(r["method"] == "POST" for r in requests) == 6


@pytest.mark.parametrize(
    ("inputs", "said"),
    [
        ({"max_requests_per_minute": "60"}, "max_requests_per_minute: must be a whole number, 0 or more, got '60'"),
        ({"dry_run": "yes"}, "dry_run: must be true or false, got 'yes'"),
        ({"messages_file": "history.jsonl"}, "messages_file: must be a file of the workspace storage"),
    ],
)
def test_a_flow_input_of_the_wrong_type_is_named_before_anything_is_sent(
    workspace: Any, inputs: dict[str, Any], said: str
) -> None:
    ws, _ = workspace
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=messages(3), **inputs)
        assert box.requests == []
    assert job.exit_code == 1
    assert job.result["name"] == "ImportInputError"
    assert f"- {said}" in job.result["message"]


def test_a_file_that_is_no_list_of_messages_is_refused_in_one_line(workspace: Any) -> None:
    ws, storage = workspace
    storage.put("uploads/h.json", b'[{"channel": "chat", "app": "a"}, NaN]')
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.json"})
        assert box.requests == []
    assert job.result["message"] == (
        "messages_file: the JSON array is not strict JSON at messages[1] (NaN is not a JSON number), "
        "so it cannot be read on. Nothing was sent."
    )


def test_a_json_lines_file_reports_each_bad_line_at_its_position(workspace: Any) -> None:
    ws, storage = workspace
    lines = [json.dumps(m) for m in messages(5)]
    lines[2] = '{"channel": "chat", "app": '
    lines[3] = '{"channel": "chat", "app": "a", "app": "b"}'
    storage.put("uploads/h.jsonl", ("\n".join(lines) + "\n").encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"})
        assert box.requests == []
    text = job.result["message"]
    assert text.startswith("2 of 5 messages are invalid; nothing was sent.")
    assert "- messages[2]: is text but not JSON (line 3, column 28): Expecting value" in text
    assert "- messages[3]: the JSON text names the key 'app' twice in one object" in text


# ---- what the report says to do next ----


def test_after_a_lost_answer_those_with_an_external_id_are_found_and_the_others_say_what_to_check(
    workspace: Any,
) -> None:
    ws, storage = workspace
    given = [{**m, **({"externalId": f"legacy-{i}"} if i % 2 else {})} for i, m in enumerate(messages(10))]
    with Sandbox() as box:
        box.configure(fault="applied_503", fault_count=1)  # applied, and its answer lost
        job = run(ws, auth=auth(box), messages=given)
    extra = job.result["extra"]
    assert extra["counts"]["created"] == 5  # each one with an externalId, proved by a lookup
    unknown = read_jsonl(storage, extra["unknown_file"])
    assert [e["position"] for e in unknown] == [0, 2, 4, 6, 8]
    for entry in unknown:
        assert "externalId" not in entry
        assert entry["check"].startswith("check its conversation's timeline (batch 1 of the import)")
    assert "not_sent" in extra["counts"]  # one spelling, in counts as in entries
    assert "retry_file" not in extra  # a message that may exist is never offered to send again


def test_inside_the_flow_the_rate_limit_advice_names_max_requests_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """send_group run in process, the request stood in for: the one thing tested is what it says."""
    import bulk_create_messages

    stored = stored_batch([{"channel": "chat", "app": "a"}])

    def rate_limited(auth: Any, body: Any, deadline: float = 0) -> Any:
        raise bulk_create_messages.KustomerRateLimitError(
            "Rate limited by Kustomer: 20 answer(s) 429 ... ",
            "Run again after the reset; in a flow, lower the for-loop's parallelism or spread the schedule.",
            reset_at=1_900_000_000.0,
            answers=20,
        )

    monkeypatch.setattr(bulk_create_messages, "send_bulk", rate_limited)
    step = load_step(monkeypatch, "send_group", stored)
    step.SEND_AGAIN = 0  # no second try: the first answer is the last
    assert step.main({"apiKey": "k"}, "imp", [0, 1])["not_sent"] == 1
    state = json.loads(stored["kustomer_import/imp/state-0.json"])
    assert state["why"].startswith("Rate limited by Kustomer: 20 answer(s) 429 ... ")
    assert "give max_requests_per_minute a share of the org's budget" in state["why"]
    assert "for-loop's parallelism" not in state["why"]


# ---- odd answers inside a step: the report stands, and an accepted batch is never "not sent" (15.8, 15.9) ----


BATCH = [{"channel": "chat", "app": "a"}, {"channel": "chat", "app": "a"}]


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ({}, "done"),  # may exist, and nothing to look up: unknown, for good
        ({"data": None}, "done"),
        ({"data": {"id": "\x1b[2Jnot-an-id"}}, "done"),
        ({"data": {"id": "5f0c1a2b3c4d5e6f7a8b9c0d"}, "error": {"detail": "odd"}}, "accepted"),
    ],
    ids=["empty-object", "data-null", "id-not-kustomers", "accepted-with-an-error-object"],
)
def test_a_2xx_bulk_answer_of_any_shape_is_never_not_sent_and_never_sent_again(
    monkeypatch: pytest.MonkeyPatch, answer: Any, state: str
) -> None:
    import bulk_create_messages
    import create_message
    import wait_for_bulk_results

    stored = stored_batch(BATCH)
    sent: list[Any] = []

    def send_bulk(auth: Any, body: Any, deadline: float = 0) -> Any:
        sent.append(body)
        return answer

    monkeypatch.setattr(bulk_create_messages, "send_bulk", send_bulk)
    monkeypatch.setattr(wait_for_bulk_results, "read_outcomes", lambda *a, **k: None)  # not done yet
    monkeypatch.setattr(create_message, "message_id_by_external_id", lambda *a, **k: None)
    step = load_step(monkeypatch, "send_group", stored)
    step.FIRST_LOOK_AFTER, step.END_BY = 0.0, 6.0  # what is due in the first second is done
    step.main({"apiKey": "k"}, "imp", [0, 1])
    step.main({"apiKey": "k"}, "imp", [0, 1])  # run again: the batch may exist, so it is not sent again
    written = json.loads(stored["kustomer_import/imp/state-0.json"])
    assert written["state"] == state
    assert all(outcome == "unknown" for _, outcome, _ in written.get("outcomes", []))
    assert len(sent) == 1
    assert "\x1b" not in json.dumps(written, ensure_ascii=False)


@pytest.mark.parametrize(
    "items",
    [
        [{"_clientRef": {"not": "hashable"}, "status": "created", "id": "x"}, {"_clientRef": ["a"], "status": "x"}],
        [{"_clientRef": "position-0", "status": "created", "id": "6a" * 12}, "not an item", None],
        "not a list",
    ],
    ids=["unhashable-refs", "odd-entries", "items-not-a-list"],
)
def test_a_confirmation_with_odd_items_accounts_for_every_message(monkeypatch: pytest.MonkeyPatch, items: Any) -> None:
    import wait_for_bulk_results

    accepted = {"state": "accepted", "bulk_id": "5f0c1a2b3c4d5e6f7a8b9c0d", "at": 0}
    accepted["messages"] = [[0, None, None, None], [1, None, "e1", None]]
    stored = stored_batch(BATCH, accepted)
    monkeypatch.setattr(wait_for_bulk_results, "read_outcomes", lambda *a, **k: {"items": items})
    step = load_step(monkeypatch, "send_group", stored)
    counts = step.main({"apiKey": "k"}, "imp", [0, 1])
    done = json.loads(stored["kustomer_import/imp/state-0.json"])
    assert [line[0] for line in done["outcomes"]] == [0, 1]  # every position, once
    assert counts["created"] + counts["unknown"] == 2
    assert counts["not_sent"] == 0  # it was accepted: never "not sent"


def test_a_long_jobs_calls_share_one_connection_and_a_scripts_own_calls_do_not() -> None:
    """The import's jobs call Kustomer hundreds of times inside `reused_connections()`: one client, its
    connection kept open. A script run alone makes its own client per call, closed at its end."""
    import bulk_create_messages

    with Sandbox() as box:
        key: bulk_create_messages.kustomer = {"apiKey": "sandbox-key-0123456789", "baseUrl": box.url}
        body: list[dict[str, Any]] = [{"channel": "chat", "app": "a"}]
        with bulk_create_messages.reused_connections():
            for _ in range(3):
                bulk_create_messages.send_bulk(key, body)
        for _ in range(2):
            bulk_create_messages.main(key, body)
        ports = [r["client_port"] for r in box.requests]
    assert len(set(ports[:3])) == 1
    assert len(set(ports[3:])) == 2
    assert not set(ports[:3]) & set(ports[3:])


# ---- files as exports really are ----


def test_two_arrays_back_to_back_are_refused_naming_what_follows(workspace: Any) -> None:
    ws, storage = workspace
    storage.put("uploads/h.json", (json.dumps(messages(4)) + "\n" + json.dumps(messages(3))).encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.json"})
        assert box.requests == []
    assert job.result["name"] == "ImportInputError"
    assert job.result["message"].startswith("messages_file: something follows the array's closing ] (\"[{")
    assert "two exports back to back are two files" in job.result["message"]


def test_a_line_of_megabytes_is_one_position_and_the_lines_after_it_keep_theirs(workspace: Any) -> None:
    ws, storage = workspace
    lines = [json.dumps(m) for m in messages(3, external=True)]
    lines.insert(1, json.dumps({"channel": "chat", "app": "a", "preview": "x" * 5_000_000}))
    storage.put("uploads/h.jsonl", ("\n".join(lines) + "\n").encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, skip_invalid=True)
        sent = [m["_clientRef"] for b in bulk_bodies(box) for m in b]
    extra = job.result["extra"]
    assert extra["counts"]["messages"] == 4
    assert sent == ["position-0", "position-2", "position-3"]
    entries = read_jsonl(storage, extra["report_file"])
    assert [(e["position"], e["outcome"]) for e in entries] == [
        (0, "created"),
        (1, "not_sent"),
        (2, "created"),
        (3, "created"),
    ]
    assert entries[1]["why"] == (
        "messages[1]: a line of over 1,000 KB; one message must fit in a bulk request (line 2)"
    )  # the line is not read, so it is not called JSON (or not)
    assert "retry_file" not in extra  # a line that is no message is never in retry_file, as null or otherwise


def test_a_line_of_megabytes_that_is_no_json_is_not_called_json(workspace: Any) -> None:
    ws, storage = workspace
    storage.put("uploads/h.jsonl", jsonl(messages(1)) + b"Ann," + b"x" * 3_000_000 + b"\n")
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, dry_run=True)
    assert job.result["problems"] == [
        "messages[1]: a line of over 1,000 KB; one message must fit in a bulk request (line 2)"
    ], job.result


@pytest.mark.parametrize("shape", ["json-lines", "pretty-array"])
def test_a_leading_byte_order_mark_is_skipped(workspace: Any, shape: str) -> None:
    ws, storage = workspace
    given = messages(12)
    text = jsonl(given) if shape == "json-lines" else json.dumps(given, indent=2).encode()
    storage.put("uploads/h", b"\xef\xbb\xbf" + text)  # as Excel and PowerShell write it
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h"})
    assert job.exit_code == 0, job.result
    assert job.result["counts"]["created"] == 12


def test_an_unreadable_line_is_reported_with_its_line_number_and_never_in_retry_file(workspace: Any) -> None:
    ws, storage = workspace
    lines = [json.dumps(m) for m in messages(3)]
    lines[1] = '{"channel": "chat", "app": '
    lines.append(json.dumps({"channel": "fax", "app": "a"}))
    storage.put("uploads/h.jsonl", ("\n".join(lines) + "\n").encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, skip_invalid=True)
    extra = job.result["extra"]
    assert read_jsonl(storage, extra["retry_file"]) == [{"channel": "fax", "app": "a", "_clientRef": "position-3"}]
    entries = read_jsonl(storage, extra["report_file"])
    assert entries[1]["outcome"] == "not_sent"
    assert "(line 2, column 28)" in entries[1]["why"]
    assert entries[1]["check"].startswith("fix this line of the input")
    assert entries[3]["check"].startswith("fix what `why` says, then send it again")
    assert "1 line of the input is no message at all" in job.result["message"]
    assert "Safe to send again: the 1 message in retry_file" in job.result["message"]


def test_a_line_that_is_no_json_is_named_by_its_line_of_the_file_once_and_its_text_is_kept(workspace: Any) -> None:
    """Its problem gives the file's line number once (with the column), and invalid_file keeps the
    line's text (its first 1,000 characters), so that it can be found and fixed."""
    ws, storage = workspace
    lines = [json.dumps(m) for m in messages(3)]
    lines.insert(3, "oops, not JSON " * 100)
    storage.put("uploads/h.jsonl", ("\n".join(lines) + "\n").encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"})
        assert box.requests == []
    problem = job.result["message"].splitlines()[1]
    assert problem.startswith("- messages[3]: is text but not JSON (line 4, column 1): Expecting value")
    assert problem.count("line") == 2  # "line 4", and "each line must be ..."
    assert problem.endswith("each line of the file must be one message object in JSON")
    (entry,) = read_jsonl(storage, job.result["extra"]["invalid_file"])
    assert entry["message"] is None
    assert entry["text"] == ("oops, not JSON " * 100)[:1000]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"[" + b"[" * 1200 + b"]" * 1200 + b"]", "messages[0] is nested too deep to read (over about 1,000 levels)"),
        (b'[{"channel": "chat", "app": "caf\xe9"}]', "it is not UTF-8 text (byte 32 of the file)"),  # the 0xe9
        (
            b'[{"channel": "chat", "app": "a", "preview": "' + b"x" * 2_500_000 + b'"}]',
            "messages[0] is over 2 MB of JSON",
        ),
    ],
    ids=["nested-1200-deep", "a-latin-1-byte", "an-item-of-2.5-MB"],
)
def test_an_array_a_reader_cannot_go_on_in_is_one_error_saying_what_and_where(
    workspace: Any, content: bytes, said: str
) -> None:
    ws, storage = workspace
    storage.put("uploads/h.json", content)
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.json"}, skip_invalid=True)
        assert box.requests == []
    assert job.result["name"] == "ImportInputError"
    assert job.result["message"].startswith(f"messages_file: {said}")
    assert job.result["message"].endswith("Nothing was sent.")


def test_a_line_nested_1000_deep_is_that_positions_problem(workspace: Any) -> None:
    ws, storage = workspace
    lines = [json.dumps(m) for m in messages(2)]
    lines.insert(1, "[" * 1200 + "]" * 1200)
    storage.put("uploads/h.jsonl", ("\n".join(lines) + "\n").encode())
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, skip_invalid=True)
    assert job.result["extra"]["counts"]["created"] == 2
    assert "nested too deep to read" in job.result["extra"]["not_created"][0]["why"]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "messages_file: the workspace storage has no file 'uploads/nothere.jsonl'"),
        (b"name,email\n" + b"Ann,ann@example.com\n" * 3000, "None of the 3001 lines of the input is a JSON message"),
    ],
    ids=["a-missing-file", "a-csv-export"],
)
def test_a_file_that_is_missing_or_no_json_at_all_is_one_clear_error(
    workspace: Any, content: bytes | None, said: str
) -> None:
    ws, storage = workspace
    if content is not None:
        storage.put("uploads/nothere.jsonl", content)
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/nothere.jsonl"})
        assert box.requests == []
    assert job.result["name"] == "ImportInputError"
    assert job.result["message"].startswith(said)
    assert "Nothing was sent." in job.result["message"]


def test_a_foreign_export_with_skip_invalid_gives_a_small_result_and_the_whole_list_in_files(workspace: Any) -> None:
    ws, storage = workspace
    foreign = [{"channel": "chat", "app": "a", **{f"field_{k}": "v" * 20 for k in range(45)}} for _ in range(300)]
    storage.put("uploads/h.jsonl", jsonl(foreign + messages(2)))
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, skip_invalid=True)
    assert len(job.output) < 200_000  # far under Cloud's 2 MiB, whatever the problems
    entry = job.result["extra"]["not_created"][0]
    assert entry["why"].count("unknown field") == 3
    assert re.search(r"; and \d+ more \(invalid_file\)$", entry["why"])
    assert len(entry["why"]) < 1_000
    invalid = read_jsonl(storage, job.result["extra"]["invalid_file"])
    assert len(invalid[0]["problems"]) > 40


def test_with_skip_invalid_the_report_is_in_input_order_and_every_entry_says_what_to_do(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(150, external=True)
    given[20]["channel"] = "fax"
    given[130]["preview"] = "sandbox:fail"
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages=given, skip_invalid=True)
    entries = read_jsonl(storage, job.result["extra"]["report_file"])
    assert [e["position"] for e in entries] == list(range(150))
    assert all(e["externalId"] == f"x-{e['position']}" for e in entries)
    assert all("check" in e for e in entries if e["outcome"] != "created")


# ---- what an import costs the workers: the grouping rule ----


def test_a_job_takes_as_many_batches_as_fit_in_ten_minutes_at_the_pace_and_never_plans_past_cloud_s_900_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepare = load_step(monkeypatch, "prepare", {})
    send = load_step(monkeypatch, "send_group", {})
    assert send.SEND_UNTIL < send.END_BY < 900  # a job's own bound, inside Cloud's
    for per_minute in [0, 1, 2, 7, 60, 300, 1000, 2000, 10_000]:
        size = prepare.group_size(per_minute)
        rate = per_minute or prepare.UNPACED_PLAN
        planned = size * prepare.REQUESTS_PER_BATCH * 60 / rate  # seconds of requests at the pace
        assert 1 <= size <= prepare.MAX_GROUP
        assert planned <= prepare.JOB_PLAN_SECONDS <= send.SEND_UNTIL, per_minute
    assert prepare.group_size(1) == 5  # the slowest pace a user can ask: 10 requests, 10 minutes
    assert prepare.group_size(1000) == 500  # 20,000 messages: one job


def test_the_groups_cover_every_batch_once_in_order(workspace: Any) -> None:
    """prepare alone, as a job: at 1 request a minute, 13 batches are 3 jobs of at most 5."""
    from workbench.worker import run_job

    ws, _ = workspace
    with Sandbox() as box:
        args = {"auth": auth(box), "messages": json.dumps(messages(1234)), "max_requests_per_minute": 1}
        job = run_job(FLOW / "prepare.inline_script.py", args, "f/kustomer/import_messages/prepare", workspace=ws)
    assert job.exit_code == 0, job.result
    assert job.result["groups"] == [[0, 5], [5, 10], [10, 13]]
    assert job.result["plan"]["jobs"] == 3


def test_the_reports_runs_of_alike_outcomes_hold_one_entry_each_whatever_their_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wrong key fails every batch alike: 300,000 alike failures are one run of one entry, not
    300,000 entries kept to show the first and the last."""
    import tracemalloc

    report = load_step(monkeypatch, "report", {})
    runs = report.Runs()
    tracemalloc.start()
    for position in range(300_000):
        runs.add({"position": position, "outcome": "failed", "why": "Kustomer refused the batch: 401"})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(first["position"], last, count) for first, last, count in runs.runs] == [(0, 299_999, 300_000)]
    assert peak < 1_000_000  # bytes: the entries come and go, one at a time


def test_an_operation_not_read_yet_keeps_its_id_and_external_ids_and_says_to_run_the_import_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted = {"state": "accepted", "bulk_id": "5f0c1a2b3c4d5e6f7a8b9c0d", "at": 0}
    accepted["messages"] = [[0, None, None, None], [1, None, "e1", None]]
    stored = stored_batch(BATCH, accepted)
    manifest = {"batches": 1, "counts": {"messages": 2, "valid": 2, "invalid": 0}, "inline": False}
    stored["kustomer_import/imp/manifest.json"] = json.dumps(manifest).encode()
    report = load_step(monkeypatch, "report", stored)
    with pytest.raises(report.ImportIncompleteError) as incomplete:
        report.main({"import_id": "imp"})
    entries = [json.loads(line) for line in stored["kustomer_import/imp/unknown.jsonl"].splitlines()]
    assert [e.get("externalId") for e in entries] == [None, "e1"]
    assert {e["bulk_id"] for e in entries} == {"5f0c1a2b3c4d5e6f7a8b9c0d"}
    assert all(e["check"].startswith("run the import again: it reads the operation's outcome") for e in entries)
    assert "Run the import again (the same input, the same org)" in str(incomplete.value)
    assert "kustomer_import/imp/batch-0.json" in stored  # not finished: its copy stays


def test_a_resumed_message_that_is_invalid_is_named_by_its_original_position_too(workspace: Any) -> None:
    """A retry_file's messages keep the _clientRef of their first import (position-<i>): the error
    names it, and every report entry keeps it, so a chain of resumes points at the original export."""
    ws, storage = workspace
    retry = [{"channel": "fax", "app": "a", "_clientRef": "position-1234"}, {"channel": "chat", "app": "a"}]
    storage.put("uploads/retry.jsonl", jsonl(retry))
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/retry.jsonl"}, skip_invalid=True)
    text = job.result["message"]
    assert "messages[0].channel: 'fax' is not one of" in text
    entries = read_jsonl(storage, job.result["extra"]["report_file"])
    assert entries[0]["_clientRef"] == "position-1234"
    assert "its _clientRef 'position-1234' names the original export's position" in entries[0]["why"]


def test_a_send_stopped_while_it_waits_for_its_turn_leaves_its_batch_new(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sending` is written once the pacer's turn has come, right before the request: a job stopped
    while its threads wait their turns (a cancel, Ctrl-C locally) sent nothing, and its batches stay
    `new` for the next run, never an unknown outcome to settle for 15 minutes."""
    stored = stored_batch([{"channel": "chat", "app": "a"}])
    step = load_step(monkeypatch, "send_group", stored)

    def stopped(self: Any, first: Any = None) -> None:
        raise KeyboardInterrupt  # the job's process is stopped while it waits

    monkeypatch.setattr(step.Pacer, "wait_turn", stopped)
    with pytest.raises(KeyboardInterrupt):
        step.main({"apiKey": "k"}, "imp", [0, 1], max_requests_per_minute=30)
    assert json.loads(stored["kustomer_import/imp/state-0.json"]) == {"state": "new"}


HISTORY = [{"channel": "email", "app": "a", "preview": f"Merci, c'est réglé ({i})"} for i in range(3)]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in HISTORY).encode("cp1252"),
            "messages_file is not UTF-8 text: none of its 3 lines reads as UTF-8 (the file was saved in another "
            "encoding, such as Windows-1252 or Latin-1, as some exports are). Save it as UTF-8 and upload it again. "
            "Nothing was sent.",
        ),
        (
            (json.dumps(HISTORY[0], ensure_ascii=False) + "\n").encode("latin-1"),
            "messages_file is not UTF-8 text: its only line does not read as UTF-8 (the file was saved in another "
            "encoding, such as Windows-1252 or Latin-1, as some exports are). Save it as UTF-8 and upload it again. "
            "Nothing was sent.",
        ),
        (
            "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in HISTORY).encode("utf-16"),  # with its BOM
            "messages_file is UTF-16 text, not UTF-8: save it as UTF-8 and upload it again. Nothing was sent.",
        ),
        (
            json.dumps(HISTORY, ensure_ascii=False).encode("utf-16-le"),  # no BOM
            "messages_file is UTF-16 text, not UTF-8: save it as UTF-8 and upload it again. Nothing was sent.",
        ),
    ],
    ids=["windows-1252-lines", "one-latin-1-line", "utf-16-with-bom", "utf-16-le-array"],
)
def test_a_file_in_another_encoding_is_named_as_such_and_to_be_saved_as_utf_8(
    workspace: Any, content: bytes, said: str
) -> None:
    ws, storage = workspace
    storage.put("uploads/h.jsonl", content)
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"}, skip_invalid=True)
        assert box.requests == []
    assert (job.result["name"], job.result["message"]) == ("ImportInputError", said)


def test_a_file_with_one_line_in_another_encoding_names_that_line_and_says_to_save_the_file_as_utf_8(
    workspace: Any,
) -> None:
    ws, storage = workspace
    lines = [json.dumps(m, ensure_ascii=False).encode() for m in HISTORY]
    lines[1] = json.dumps(HISTORY[1], ensure_ascii=False).encode("cp1252")  # one line pasted from another export
    storage.put("uploads/h.jsonl", b"\n".join(lines) + b"\n")
    with Sandbox() as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/h.jsonl"})
        assert box.requests == []
    assert job.result["name"] == "ImportInputError"
    assert job.result["message"].endswith(
        "\n- messages[1]: not UTF-8 text (byte 59 of the line): the line was saved in another encoding, such as "
        "Windows-1252 or Latin-1; save the file as UTF-8 (line 2)"
    )


def test_a_group_paced_at_one_request_a_minute_says_request_in_the_singular(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    step = load_step(monkeypatch, "send_group", {})  # no batch to send: the job says its pace and ends
    step.main({"apiKey": "k"}, "imp", [0, 0], max_requests_per_minute=1)
    assert "at most 1 request a minute." in capsys.readouterr().out


def test_unpaced_a_slow_state_write_holds_up_no_other_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpaced there is no turn to keep: one batch's slow storage write must not make the confirmations
    and the other sends wait behind it (paced, a write runs inside the turn, SAVE_LEAD ahead of it)."""
    step = load_step(monkeypatch, "send_group", {})
    pacer = step.Pacer(0)
    release = threading.Event()
    writer = threading.Thread(target=pacer.wait_turn, args=(lambda: release.wait(5),))
    writer.start()
    time.sleep(0.1)  # the slow write is under way
    started = time.monotonic()
    pacer.wait_turn()  # a confirmation's turn
    waited = time.monotonic() - started
    release.set()
    writer.join()
    assert waited < 1.0
