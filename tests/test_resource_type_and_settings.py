"""The kustomer resource type matches what the scripts read, and wmill.yaml cannot reach past f/kustomer."""

from __future__ import annotations

import re
from typing import Any

import create_message
import pytest
import yaml
from conftest import API_KEY

from workbench.paths import ROOT


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def test_resource_type_describes_the_fields_the_scripts_read() -> None:
    resource = load("resource_types/kustomer.resource-type.yaml")
    schema = resource["schema"]
    assert resource["description"].strip()
    assert schema["type"] == "object"
    assert set(schema["properties"]) == set(create_message.kustomer.__annotations__) == {"apiKey", "baseUrl"}
    assert schema["required"] == ["apiKey"]  # a Hub-style resource with only apiKey keeps working
    for host in (
        "https://api.kustomerapp.com",
        "https://api.prod2.kustomerapp.com",
        "https://api.prod4.kustomerapp.com",
        "https://<your-org>.api.kustomerapp.com",
    ):
        assert host in schema["properties"]["baseUrl"]["description"]


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://api.prod2.kustomerapp.com", True),
        ("https://acme.api.kustomerapp.com/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://api.kustomerapp.com", False),
        ("api.kustomerapp.com", False),
    ],
)
def test_resource_type_pattern_agrees_with_the_scripts(url: str, accepted: bool) -> None:
    pattern = load("resource_types/kustomer.resource-type.yaml")["schema"]["properties"]["baseUrl"]["pattern"]
    assert bool(re.search(pattern, url)) is accepted
    assert (create_message.base_url_problem(url, API_KEY) is None) is accepted


def test_wmill_yaml_sees_only_the_kustomer_folder() -> None:
    settings = load("wmill.yaml")
    assert settings["includes"] == ["f/kustomer/**"]
    for kind in ("skipVariables", "skipResources", "skipResourceTypes", "skipSecrets", "skipApps", "skipFolders"):
        assert settings[kind] is True, f"{kind} must be true: sync push could otherwise delete such items"
    for kind in ("includeSchedules", "includeTriggers", "includeSettings", "includeKey"):
        assert settings[kind] is False
