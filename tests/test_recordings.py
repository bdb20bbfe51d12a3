"""The recordings themselves: each says where it comes from, holds no secret, and replays strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import create_message
import pytest
import vcr
import yaml
from conftest import API_KEY, RECORDINGS, bearer_matches
from vcr.errors import CannotOverwriteExistingCassetteException

CASSETTES = sorted(RECORDINGS.rglob("*.yaml"))


def test_every_endpoint_and_scenario_is_recorded() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in CASSETTES}
    for scenario in (
        "201_created",
        "400_short_error_shape",
        "400_json_api_error_shape",
        "401_wrong_region",
        "404_unknown_conversation",
        "429_then_created",
    ):
        assert f"create_message/{scenario}" in names
    for scenario in (
        "200_bulk_operation",
        "400_short_error_shape",
        "400_json_api_error_shape",
        "401_missing_role",
        "404_unknown_conversation",
        "413_too_large",
        "429_then_accepted",
    ):
        assert f"bulk_create_messages/{scenario}" in names


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recording_says_where_its_content_comes_from(path: Path) -> None:
    comment = path.read_text().split("interactions:")[0]
    assert comment.startswith("# Source: ")
    header = " ".join(line.removeprefix("#").strip() for line in comment.splitlines())
    assert "not recorded from the live API" in header or "recorded from the live API on" in header


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recording_holds_no_key(path: Path) -> None:
    cassette: dict[str, Any] = yaml.safe_load(path.read_text())
    for interaction in cassette["interactions"]:
        headers = {k.lower(): v for k, v in interaction["request"]["headers"].items()}
        assert headers["authorization"] == ["Bearer <filtered>"]
    assert API_KEY not in path.read_text()


def strict_vcr() -> vcr.VCR:
    recorder = vcr.VCR(record_mode="none", match_on=["method", "uri", "body", "bearer"])
    recorder.register_matcher("bearer", bearer_matches)
    return recorder


def test_replay_refuses_a_different_body() -> None:
    with strict_vcr().use_cassette(str(RECORDINGS / "create_message" / "201_created.yaml")):
        body = {"channel": "chat", "app": "postmark", "direction": "in"}
        with pytest.raises(create_message.KustomerError, match="CannotOverwriteExistingCassetteException"):
            create_message.main({"apiKey": API_KEY}, body)


def test_replay_refuses_a_request_without_a_bearer_token() -> None:
    import httpx

    cassette = yaml.safe_load((RECORDINGS / "create_message" / "201_created.yaml").read_text())
    request = cassette["interactions"][0]["request"]
    with (
        strict_vcr().use_cassette(str(RECORDINGS / "create_message" / "201_created.yaml")),
        pytest.raises(CannotOverwriteExistingCassetteException),
    ):
        httpx.post(request["uri"], content=request["body"], headers={"Content-Type": "application/json"})
