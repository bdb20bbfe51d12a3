"""The README's commands are the ones that run: CI's test command, and the demo output it shows."""

from __future__ import annotations

import re

from workbench.paths import ROOT


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^\$ (npm ci .*uv run pytest.*)$", readme, re.M)
    assert command, "the README's test command is missing"
    ci_lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == command.group(1)


def test_readme_shows_the_demos_sections() -> None:
    readme = (ROOT / "README.md").read_text()
    for line in (
        "$ uv run demo",
        "=== create_message  with examples/create_message.json",
        "=== bulk_create_messages  with examples/bulk_create_messages.json",
        "=== wait_for_bulk_results  with the bulk_id ",
        "Kustomer received: nothing (the job failed before sending)",
    ):
        assert line in readme
