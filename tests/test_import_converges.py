"""An import converges: stopped anywhere, by anything a real Windmill does, and run again as often as
needed, it creates every message exactly once and its final report is exact.

The faults are Windmill's (workbench/chaos.py, from the shared reference, sections 8-9): a cancel or
a lost worker kills the running job and ends the flow run; a zombie restart kills the running job
and Windmill runs it again from the start; the workspace storage answers 500. Every fault lands on a
request a job makes, to the storage or to Kustomer (the sandbox applies a request, then the job is
killed before it reads the answer)."""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from import_runs import (
    auth,
    bulk_bodies,
    ids_by_external_id,
    jsonl,
    messages,
    quick_steps,
    read_jsonl,
    report_of,
    run,
    run_with,
    workspace,
)

from workbench.chaos import Chaos
from workbench.local_flow import local_workspace
from workbench.sandbox import Sandbox
from workbench.windmill_storage import WindmillStorage
from workbench.workspace import Workspace

__all__ = ["workspace"]  # the fixture, for pytest

COUNT = 2_000  # 20 batches


def converged(ws: Workspace, storage: WindmillStorage, box: Sandbox, given: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the import again, with no fault, until it ends (at most three runs); its final report."""
    storage.put("uploads/history.jsonl", jsonl(given))
    for _ in range(3):
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
        report = report_of(job)
        assert "counts" in report, f"the run failed in {job.result.get('step_id')}: {job.result.get('message')}"
        if report["counts"]["pending"] == 0 and not any("bulk_id" in e for e in report["not_created"]):
            return report
    raise AssertionError(f"the import did not end in three runs: {report['counts']}")


def assert_each_created_once(box: Sandbox, storage: WindmillStorage, report: dict[str, Any], count: int) -> None:
    """No message twice in Kustomer; the report says created for each, with the id Kustomer gave it."""
    held = ids_by_external_id(box)
    assert {k: len(v) for k, v in held.items() if len(v) > 1} == {}, "a message was created twice"
    assert set(held) == {f"x-{i}" for i in range(count)}
    assert report["counts"] == {
        "messages": count,
        "created": count,
        "failed": 0,
        "unknown": 0,
        "not_sent": 0,
        "pending": 0,
    }
    entries = read_jsonl(storage, report["report_file"])
    assert [e["position"] for e in entries] == list(range(count))
    assert all(e["outcome"] == "created" and [e["id"]] == held[e["externalId"]] for e in entries)


def stopped_then_converged(tmp_chaos: Chaos) -> tuple[Sandbox, WindmillStorage, dict[str, Any], Any]:
    given = messages(COUNT, external=True)
    with local_workspace() as (ws, storage), Sandbox(bulk_seconds=0.2) as box:
        storage.put("uploads/history.jsonl", jsonl(given))
        first = run_with(ws, box, tmp_chaos, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
        report = converged(ws, storage, box, given)
        assert_each_created_once(box, storage, report, COUNT)
        return box, storage, report, first


# ---- a cancel (or a lost worker) at the moments that matter, then the import run again ----

MOMENTS = {
    "prepare, while it writes the batches": ("/batch-5.json", 1),
    "prepare, once the manifest is written": ("manifest.json", 2),
    "before a bulk request (its state says sending)": ('"state":"sending"', 3),
    "while a bulk answer is in flight (Kustomer applied it)": ("kustomer POST /v1/messages/bulk", 4),
    "once an operation's id is noted": ('"state":"accepted"', 4),
    "while a confirmation's answer is in flight": ("/batches", 2),
    "once a confirmation is noted": ('"state":"done"', 3),
    "report, once report.jsonl is written": ("report.jsonl", 1),
    "report, while it deletes the copies": ("storage DELETE", 3),
}


@pytest.mark.parametrize("moment", MOMENTS, ids=list(MOMENTS))
def test_an_import_cancelled_and_run_again_creates_each_message_once(
    monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    quick_steps(monkeypatch)
    chaos = Chaos(cancel_at=MOMENTS[moment])
    _, _, _, first = stopped_then_converged(chaos)
    assert chaos.cancelled, f"the run never reached {moment}"
    assert first is None  # the run was cancelled there


@pytest.mark.parametrize(
    "moment",
    [
        "prepare, while it writes the batches",
        "while a bulk answer is in flight (Kustomer applied it)",
        "once a confirmation is noted",
        "report, once report.jsonl is written",
    ],
)
def test_a_step_restarted_by_windmill_midway_creates_each_message_once(
    monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """A zombie restart: the job is killed there and runs again from the start, in the same flow run."""
    quick_steps(monkeypatch)
    chaos = Chaos(restart_at=MOMENTS[moment])
    _, _, _, first = stopped_then_converged(chaos)
    assert chaos.restarted == 1, f"no job was restarted at {moment}"
    assert first is not None  # the run went on: the restarted job did its work


@functools.cache
def events_of_a_clean_run() -> int:
    with pytest.MonkeyPatch.context() as patch:
        quick_steps(patch)
        chaos = Chaos()
        given = messages(COUNT, external=True)
        with local_workspace() as (ws, storage), Sandbox(bulk_seconds=0.2) as box:
            storage.put("uploads/history.jsonl", jsonl(given))
            assert run_with(ws, box, chaos, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
        return len(chaos.events)


@settings(max_examples=5)
@given(where=st.floats(0, 1, exclude_max=True), restart=st.booleans())
def test_an_import_stopped_at_any_request_and_run_again_creates_each_message_once(where: float, restart: bool) -> None:
    """Hypothesis picks the request, among all of a clean run's, at which the run is cancelled or the
    running job restarted."""
    point = int(where * events_of_a_clean_run())
    with pytest.MonkeyPatch.context() as patch:
        quick_steps(patch)
        stopped_then_converged(Chaos(restart_at=point) if restart else Chaos(cancel_at=point))


# ---- a step run twice, a resume run twice, two runs at once ----


def test_a_send_job_run_twice_after_it_finished_sends_nothing_again(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(COUNT, external=True)
    with Sandbox(bulk_seconds=0.2) as box:
        storage.put("uploads/history.jsonl", jsonl(given))
        chaos = Chaos(restart_at=('"state":"done"', 20))  # the last batch's outcome written: the job's last write
        job = run_with(ws, box, chaos, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
        assert job is not None
        assert len(bulk_bodies(box)) == 20
        assert_each_created_once(box, storage, report_of(job), COUNT)


def test_a_resume_run_twice_sends_its_messages_once(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(300, external=True)
    for i in (7, 150, 299):
        given[i]["preview"] = "sandbox:fail this one"
    with Sandbox(bulk_seconds=0.2) as box:
        first = report_of(run(ws, auth=auth(box), messages=given))
        assert first["counts"]["failed"] == 3
        retry = read_jsonl(storage, first["retry_file"])
        fixed = [{**m, "preview": "fixed"} for m in retry]
        storage.put("uploads/retry.jsonl", jsonl(fixed))
        resumed = [run(ws, auth=auth(box), messages_file={"s3": "uploads/retry.jsonl"}) for _ in range(2)]
        held = ids_by_external_id(box)
    assert [r.exit_code for r in resumed] == [0, 0]
    assert report_of(resumed[1]) == report_of(resumed[0])  # the second run is the same import, finished
    assert {k: len(v) for k, v in held.items() if len(v) > 1} == {}
    assert len(held) == 300


def test_a_second_run_of_the_same_import_while_the_first_runs_is_refused_and_sends_nothing(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(1_000, external=True)
    storage.put("uploads/history.jsonl", jsonl(given))
    inputs = {"messages_file": {"s3": "uploads/history.jsonl"}, "max_requests_per_minute": 120}  # 10 s of requests
    with Sandbox(bulk_seconds=0.2) as box:
        first: list[Any] = []
        thread = threading.Thread(target=lambda: first.append(run(ws, auth=auth(box), **inputs)))
        thread.start()
        while not any("lease.json" in key for key in storage.objects()) or not box.requests:
            time.sleep(0.05)
        second = run(ws, auth=auth(box), **inputs)
        thread.join()
        third = run(ws, auth=auth(box), **inputs)
        posts = len(bulk_bodies(box))
        held = ids_by_external_id(box)
    assert second.exit_code == 1
    assert second.result["name"] == "ImportBusyError"
    assert "is being run by the flow run" in second.result["message"]
    assert "Nothing was sent by this run" in second.result["message"]
    assert first[0].exit_code == 0, first[0].result
    assert third.exit_code == 0
    assert report_of(third)["counts"]["created"] == 1_000
    assert posts == 10
    assert {k: len(v) for k, v in held.items() if len(v) > 1} == {}


def test_two_runs_started_together_leave_one_to_work_and_create_each_message_once(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(500, external=True)
    storage.put("uploads/history.jsonl", jsonl(given))
    with Sandbox(bulk_seconds=0.2) as box:
        jobs: list[Any] = []
        threads = [
            threading.Thread(
                target=lambda: jobs.append(run(ws, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"}))
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held = ids_by_external_id(box)
    assert sorted(j.exit_code for j in jobs) == [0, 1]
    assert {k: len(v) for k, v in held.items() if len(v) > 1} == {}
    assert len(held) == 500


# ---- lost answers are resolved, never sent again ----


def test_a_lost_bulk_answer_is_resolved_by_lookups_and_never_offered_for_retry(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(250, external=True)
    for message in given[::2]:  # half of each batch, so of the lost one, has no externalId to look up
        del message["externalId"]
    with Sandbox(bulk_seconds=0.2) as box:
        box.configure(fault="applied_503", fault_count=1)  # the first bulk request: applied, its answer lost
        job = run(ws, auth=auth(box), messages=given)
        lost = next(r for r in box.requests if r.get("fault") == "applied_503")
        lookups = [r for r in box.requests if "/externalid=" in r["path"]]
        again = run(ws, auth=auth(box), messages=given)
        posts = len(bulk_bodies(box))
    lost_positions = {int(m["_clientRef"].split("-")[1]) for m in lost["body"]}
    report = report_of(job)
    entries = read_jsonl(storage, report["report_file"])
    without = {p for p in lost_positions if "externalId" not in given[p]}
    assert len(without) == len(lost_positions) // 2
    assert {e["position"] for e in entries if e["outcome"] == "unknown"} == without
    assert {e["position"] for e in entries if e["outcome"] == "created"} == set(range(250)) - without
    assert len(lookups) == len(lost_positions - without)  # one lookup a message that has an externalId
    assert "retry_file" not in report
    for entry in read_jsonl(storage, report["unknown_file"]):
        assert entry["check"].startswith("check its conversation's timeline (batch ")
    assert posts == 3  # the run again sent nothing: those unknown stay unknown, never sent twice
    assert report_of(again)["counts"] == report["counts"]


def test_a_finished_import_run_again_sends_nothing_and_reports_the_same(workspace: Any) -> None:
    ws, _ = workspace
    given = messages(450, external=True)
    given[3]["preview"] = "sandbox:fail"
    with Sandbox(bulk_seconds=0.2) as box:
        first = run(ws, auth=auth(box), messages=given)
        before = len(box.requests)
        again = run(ws, auth=auth(box), messages=given)
        assert len(box.requests) == before  # not one request to Kustomer
    assert (first.exit_code, again.exit_code) == (1, 1)
    assert again.result["message"] == first.result["message"]
    assert report_of(again) == report_of(first)


def test_a_new_import_label_starts_a_new_import(workspace: Any) -> None:
    ws, _ = workspace
    given = messages(120)
    with Sandbox(bulk_seconds=0.2) as box:
        run(ws, auth=auth(box), messages=given)
        run(ws, auth=auth(box), messages=given)
        assert len(bulk_bodies(box)) == 2
        run(ws, auth=auth(box), messages=given, import_label="again, on purpose")
        assert len(bulk_bodies(box)) == 4


# ---- the storage answers 500 ----


def test_storage_errors_now_and_then_are_tried_again_and_change_nothing(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(COUNT, external=True)
    storage.put("uploads/history.jsonl", jsonl(given))
    chaos = Chaos(storage_errors={"state-3.json": 2, "batch-7.json": 1, "manifest.json": 1, "report.jsonl": 1})
    with Sandbox(bulk_seconds=0.2) as box:
        job = run_with(ws, box, chaos, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
        assert job is not None
        assert job.exit_code == 0, job.result
        assert sum("-> 500" in e for e in chaos.events) == 5
        assert_each_created_once(box, storage, report_of(job), COUNT)


def test_a_report_the_storage_failed_is_rebuilt_by_running_again_without_a_request_to_kustomer(
    workspace: Any,
) -> None:
    ws, storage = workspace
    given = messages(COUNT, external=True)
    storage.put("uploads/history.jsonl", jsonl(given))
    with Sandbox(bulk_seconds=0.2) as box:
        failed = run_with(
            ws,
            box,
            Chaos(storage_errors={"report.jsonl": 5}),
            auth=auth(box),
            messages_file={"s3": "uploads/history.jsonl"},
        )
        assert failed is not None
        assert failed.exit_code == 1
        assert failed.result["step_id"] == "report"
        assert failed.result["name"] == "ImportStorageError"
        assert "run the import again once the storage answers" in failed.result["message"]
        before = len(box.requests)
        again = run(ws, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
        assert len(box.requests) == before
        assert_each_created_once(box, storage, report_of(again), COUNT)


# ---- what the storage keeps ----


def test_a_finished_import_keeps_a_tenth_of_its_input_at_most_besides_its_report_files(workspace: Any) -> None:
    ws, storage = workspace
    given = messages(COUNT, external=True, subject="A question about my order")
    data = jsonl(given)
    storage.put("uploads/history.jsonl", data)
    with Sandbox(bulk_seconds=0.2) as box:
        job = run(ws, auth=auth(box), messages_file={"s3": "uploads/history.jsonl"})
    assert job.exit_code == 0, job.result
    kept = storage.objects("kustomer_import/")
    reports = {k: v for k, v in kept.items() if k.endswith(".jsonl")}
    rest = {k: v for k, v in kept.items() if k not in reports}
    assert sorted(k.rsplit("/", 1)[1] for k in rest) == ["lease.json", "manifest.json"]
    assert sum(rest.values()) <= len(data) / 10
    assert json.loads(storage.get(next(k for k in rest if k.endswith("manifest.json"))))["finished"]
