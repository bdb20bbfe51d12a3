"""Put the scripts, the resource type and the import flow into a Windmill workspace, and nothing else.

    uv run deploy --base-url URL --token TOKEN --workspace WS [--folder kustomer] [--dry-run]

Stages a copy of the repository in Windmill's sync layout (f/<folder>/..., the resource type at the
root, this repository's wmill.yaml), then runs the official wmill CLI (npm windmill-cli, pinned in
package.json) with single-item commands only: `resource-type push`, `folder push` (only when the
folder does not exist yet, so an existing folder's owners and permissions stay as they are),
`script push` for each script and `flow push`. Each of these creates or updates the one item it
names; none deletes anything. `wmill sync push`, which deletes what is missing locally, is never
used. --dry-run prints the staged files and the commands, and runs nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from workbench.worker import FLOWS, ROOT, SCRIPTS, script_names

WMILL = ROOT / "node_modules" / ".bin" / "wmill"


def stage(folder: str, into: Path) -> list[list[str]]:
    """Write the sync layout for `folder` under `into`; return the wmill commands that push it."""
    if not re.fullmatch(r"[a-z0-9_]+", folder):
        raise SystemExit(f"deploy: --folder must be lowercase letters, digits and _, got {folder!r}")
    target = into / "f" / folder
    target.mkdir(parents=True)
    shutil.copyfile(ROOT / "wmill.yaml", into / "wmill.yaml")
    settings = (into / "wmill.yaml").read_text().replace("f/kustomer/**", f"f/{folder}/**")
    (into / "wmill.yaml").write_text(settings)
    shutil.copyfile(ROOT / "resource_types" / "kustomer.resource-type.yaml", into / "kustomer.resource-type.yaml")
    (target / "folder.meta.yaml").write_text(
        "summary: Kustomer scripts and flows\ndisplay_name: Kustomer\nowners: []\nextra_perms: {}\n"
    )

    def relocate(text: str) -> str:
        return text.replace("f/kustomer/", f"f/{folder}/")

    for name in script_names():
        shutil.copyfile(SCRIPTS / f"{name}.py", target / f"{name}.py")
        shutil.copyfile(SCRIPTS / f"{name}.script.lock", target / f"{name}.script.lock")
        (target / f"{name}.script.yaml").write_text(relocate((SCRIPTS / f"{name}.script.yaml").read_text()))
    flows = []
    for flow in sorted(FLOWS.glob("*.flow")):
        shutil.copytree(flow, target / flow.name)
        (target / flow.name / "flow.yaml").write_text(relocate((flow / "flow.yaml").read_text()))
        flows.append(flow.name.removesuffix(".flow"))

    commands = [["resource-type", "push", "kustomer.resource-type.yaml", "kustomer"]]
    commands += [["script", "push", f"f/{folder}/{name}.py"] for name in script_names()]
    commands += [["flow", "push", f"f/{folder}/{flow}.flow", f"f/{folder}/{flow}"] for flow in flows]
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the Windmill instance, e.g. https://app.windmill.dev")
    parser.add_argument("--token", required=True, help="a Windmill API token (user settings > tokens)")
    parser.add_argument("--workspace", required=True, help="the workspace id")
    parser.add_argument("--folder", default="kustomer", help="the folder to deploy into (default kustomer)")
    parser.add_argument("--dry-run", action="store_true", help="show the plan; push nothing")
    options = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kustomer-deploy-") as staging:
        root = Path(staging)
        commands = stage(options.folder, root)
        connection = ["--base-url", options.base_url, "--token", options.token, "--workspace", options.workspace]
        folder_check = ["folder", "get", options.folder, "--json"]
        if options.dry_run:
            print(f"Would deploy to workspace {options.workspace!r} on {options.base_url}, folder f/{options.folder}:")
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                print(f"  {path.relative_to(root)}")
            print("with these wmill commands (run from the staged copy; nothing is deleted):")
            print(f"  wmill {' '.join(folder_check)}   # then `wmill folder push {options.folder}` if missing")
            for command in commands:
                print(f"  wmill {' '.join(command)}")
            return 0
        if not WMILL.exists():
            raise SystemExit("deploy: the wmill CLI is not installed: run `npm ci` in this repository first")

        def wmill(command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
            print(f"$ wmill {' '.join(command)}", flush=True)
            done = subprocess.run(
                [str(WMILL), *command, *connection],
                cwd=root,
                capture_output=True,
                text=True,
                env={**os.environ, "NO_COLOR": "1"},
                check=False,
            )
            output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).replace(options.token, "[token]")
            # The CLI looks for its own wmill-lock.yaml hashes, which a staged copy never has; the
            # metadata it asks for is the .script.yaml and .script.lock pushed with each script.
            output = "\n".join(line for line in output.splitlines() if "No metadata generated yet" not in line).strip()
            if output:
                print("  " + output.replace("\n", "\n  "))
            if check and done.returncode != 0:
                raise SystemExit(
                    f"deploy: `wmill {' '.join(command)}` failed (exit {done.returncode}); "
                    "what was pushed before it stays, nothing was deleted"
                )
            return done

        if wmill(folder_check, check=False).returncode != 0:
            wmill(["folder", "push", options.folder])
        for command in commands:
            wmill(command)
    print(f"Deployed to f/{options.folder} in workspace {options.workspace}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
