"""Shared fixtures: the scripts as modules, a fake clock, replay of recorded Kustomer answers, and the
servers tests stand up: a respx router for Kustomer, the sandbox, a forward proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bulk_create_messages
import create_message
import pytest
import respx
import wait_for_bulk_results
from create_message import kustomer
from forward_proxy import ForwardProxy
from hypothesis import HealthCheck, settings

from workbench.sandbox import Sandbox

# Fuzzing depth: `ci` keeps the suite quick; HYPOTHESIS_PROFILE=long searches far deeper.
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

RECORDINGS = Path(__file__).parent / "recordings"
SCRIPTS = (create_message, bulk_create_messages, wait_for_bulk_results)
# Stands for a real key; every test checks it never shows. Re-recording sets a real one (README).
API_KEY = os.environ.get("KUSTOMER_RECORD_API_KEY") or "test-key-0123456789abcdef"
US = "https://api.kustomerapp.com"


class FakeTime:
    """Stands in for time.sleep and time.time, so no test waits for real."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Every test runs with the fake clock; the retry policy is otherwise the shipped one."""
    clock = FakeTime()
    for script in SCRIPTS:
        monkeypatch.setattr(script, "POLICY", script.POLICY._replace(sleep=clock.sleep, clock=clock.clock))
    return clock


@pytest.fixture
def auth() -> kustomer:
    return {"apiKey": API_KEY}


# ---- replaying recorded answers (pytest-recording / vcrpy) ----


def bearer_matches(live: Any, recorded: Any) -> None:
    """The live request carries a bearer token, as the recorded one did before its token was filtered."""
    for request in (live, recorded):
        value = request.headers.get("Authorization", "")
        assert value.startswith("Bearer "), "no bearer token"
        assert value != "Bearer ", "an empty bearer token"


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    vcr.register_matcher("bearer", bearer_matches)


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": [("authorization", "Bearer <filtered>")],
        "match_on": ["method", "uri", "body", "bearer"],
        "decode_compressed_response": True,
    }


@pytest.fixture
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_contract_")
    return str(RECORDINGS / module)


@pytest.fixture
def default_cassette_name(request: pytest.FixtureRequest) -> str:
    name: str = request.node.name
    return name.removeprefix("test_")


@pytest.fixture
def api() -> Iterator[respx.Router]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    forward = ForwardProxy()
    yield forward
    forward.server.shutdown()
    forward.server.server_close()
