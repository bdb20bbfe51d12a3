"""Put the scripts, the resource type and the import flow into a Windmill workspace, and nothing else.

    WM_TOKEN=... uv run deploy --base-url URL --workspace WS [--folder kustomer] [--dry-run]

Stages a copy of the repository in Windmill's sync layout (f/<folder>/..., the resource type at the
root, this repository's wmill.yaml), then runs the official wmill CLI (npm windmill-cli, pinned in
package.json) with single-item commands only: `resource-type push`, `folder push` (only when the
folder does not exist yet, so an existing folder's owners and permissions stay as they are),
`script push` for each script and `flow push`. Each of these creates or updates the one item it
names; none deletes anything. `wmill sync push`, which deletes what is missing locally, is never
used. --dry-run prints the staged files and the commands, and runs nothing. Every argument is
checked first; the token comes from WM_TOKEN (or --token) and reaches the CLI through its environment.
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
from urllib.parse import urlsplit

from workbench.cli import Parser
from workbench.hosts import is_loopback
from workbench.paths import FLOWS, ROOT, SCRIPTS, workspace_scripts

WMILL = ROOT / "node_modules" / ".bin" / "wmill"
TOKEN_VARIABLE = "WM_TOKEN"  # noqa: S105  # the name of the variable the wmill CLI reads its token from


def stage(folder: str, into: Path) -> list[list[str]]:
    """Write the sync layout for `folder` under `into`; return the wmill commands that push it."""
    target = into / "f" / folder
    target.mkdir(parents=True)
    shutil.copyfile(ROOT / "wmill.yaml", into / "wmill.yaml")
    settings = (into / "wmill.yaml").read_text().replace("f/kustomer/**", f"f/{folder}/**")
    (into / "wmill.yaml").write_text(settings)
    shutil.copyfile(ROOT / "resource_types" / "kustomer.resource-type.yaml", into / "kustomer.resource-type.yaml")
    (target / "folder.meta.yaml").write_text(
        "summary: Kustomer scripts and flows\ndisplay_name: Kustomer\nowners: []\nextra_perms: {}\n"
    )

    def relocate(text: str) -> str:  # paths, and the flow steps' imports of the scripts (from f.kustomer import ...)
        return text.replace("f/kustomer/", f"f/{folder}/").replace("from f.kustomer import", f"from f.{folder} import")

    for name in workspace_scripts():  # the scripts, and the modules the flows import
        shutil.copyfile(SCRIPTS / f"{name}.py", target / f"{name}.py")
        shutil.copyfile(SCRIPTS / f"{name}.script.lock", target / f"{name}.script.lock")
        (target / f"{name}.script.yaml").write_text(relocate((SCRIPTS / f"{name}.script.yaml").read_text()))
    flows = []
    for flow in sorted(FLOWS.glob("*.flow")):
        shutil.copytree(flow, target / flow.name)
        for file in [flow / "flow.yaml", *sorted(flow.glob("*.py"))]:
            (target / flow.name / file.name).write_text(relocate(file.read_text()))
        flows.append(flow.name.removesuffix(".flow"))

    commands = [["resource-type", "push", "kustomer.resource-type.yaml", "kustomer"]]
    commands += [["script", "push", f"f/{folder}/{name}.py"] for name in workspace_scripts()]
    commands += [["flow", "push", f"f/{folder}/{flow}.flow", f"f/{folder}/{flow}"] for flow in flows]
    return commands


def problems(
    base_url: str, workspace: str, token: str | None, folder: str, dry_run: bool, allow_http: bool
) -> list[str]:
    """Every argument checked before anything is staged or sent, one line each; none echoes a value
    that could be a secret pasted in the wrong place (a token in the URL or as the workspace)."""
    found = []
    url_problem = base_url_problem(base_url, allow_http)
    if url_problem:
        found.append(f"--base-url {url_problem}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,49}", workspace):
        found.append(
            "--workspace must be a workspace id (letters, digits, - and _, as in its URL), "
            f"got {len(workspace)} characters (not shown)"
        )
    if not token and not dry_run:
        found.append(f"no token: set {TOKEN_VARIABLE} (the variable the wmill CLI reads) or pass --token")
    if not re.fullmatch(r"[a-z0-9_]+", folder):
        found.append(f"--folder must be lowercase letters, digits and _, got {folder[:40]!r}")
    return found


def base_url_problem(base_url: str, allow_http: bool) -> str | None:
    """The scripts' rule for baseUrl: a scheme, a host that can be reached and nothing else."""
    example = "e.g. https://app.windmill.dev"
    try:
        parts = urlsplit(base_url.strip())
        port = parts.port
    except ValueError:
        return f"must be the Windmill instance's URL, {example} (not shown: it does not parse)"
    if parts.username is not None or parts.password is not None:
        return "holds a user name or password before the host (not shown): give the token in WM_TOKEN instead"
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", parts.netloc or "-"):
        return f"must be the Windmill instance's http(s) URL with a host, {example}"
    if not host or (port is not None and not 0 < port < 65536):
        return f"must name a host and a port below 65536, {example}"
    if parts.path.rstrip("/") or parts.query or parts.fragment:
        return f"must be the instance's address and nothing else (no path, ?query or #fragment), {example}"
    if parts.scheme == "http" and not is_loopback(host) and not allow_http:
        return "uses plain http, which would send the token unencrypted: use https://, or --allow-http if you must"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the Windmill instance, e.g. https://app.windmill.dev")
    parser.add_argument("--workspace", required=True, help="the workspace id")
    parser.add_argument(
        "--token", help=f"a Windmill API token; better, set {TOKEN_VARIABLE}, which keeps it out of shell history"
    )
    parser.add_argument("--folder", default="kustomer", help="the folder to deploy into (default kustomer)")
    parser.add_argument("--dry-run", action="store_true", help="show the plan; push nothing (no token needed)")
    parser.add_argument("--allow-http", action="store_true", help="allow plain http to a Windmill that is not loopback")
    options = parser.parse_args(argv)
    token = options.token or os.environ.get(TOKEN_VARIABLE, "")
    found = problems(options.base_url, options.workspace, token, options.folder, options.dry_run, options.allow_http)
    if found:
        for problem in found:
            print(f"deploy: {problem}", file=sys.stderr)
        return 2

    try:
        return deploy(options, token)
    except KeyboardInterrupt:
        print("deploy: interrupted: what was pushed before it stays; nothing was deleted", file=sys.stderr)
        return 130


def deploy(options: argparse.Namespace, token: str) -> int:
    with tempfile.TemporaryDirectory(prefix="kustomer-deploy-") as staging:
        root = Path(staging)
        commands = stage(options.folder, root)
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
            print("deploy: the wmill CLI is not installed: run `npm ci` in this repository first", file=sys.stderr)
            return 2
        config = root / ".wmill-config"  # no saved profile of the user's may redirect the pushes
        config.mkdir()
        # The token reaches the CLI through the environment it reads, never through its arguments.
        env = {**os.environ, TOKEN_VARIABLE: token, "WM_WORKSPACE": options.workspace, "BASE_URL": options.base_url}
        env.update({"WMILL_CONFIG_DIR": str(config), "NO_COLOR": "1"})
        for name in ("BASE_INTERNAL_URL", "HEADERS"):
            env.pop(name, None)

        def wmill(command: list[str]) -> tuple[int, str]:
            done = subprocess.run(
                [str(WMILL), *command], cwd=root, capture_output=True, text=True, env=env, check=False
            )
            return done.returncode, re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).replace(token, "[token]")

        def push(command: list[str]) -> None:
            print(f"$ wmill {' '.join(command)}", flush=True)
            code, output = wmill(command)
            if code != 0:
                raise SystemExit(
                    f"deploy: `wmill {' '.join(command)}` failed (exit {code}): {error_lines(output)}\n"
                    "What was pushed before it stays; nothing was deleted."
                )
            for line in progress_lines(output):
                print(f"  {line}")

        code, output = wmill(folder_check)
        if code != 0:
            if "Not Found" not in output and "not found" not in output:
                print(
                    f"deploy: could not look up folder f/{options.folder}: {error_lines(output)}\n"
                    "Nothing was pushed. Check --base-url, --workspace and the token.",
                    file=sys.stderr,
                )
                return 1
            push(["folder", "push", options.folder])
        try:
            for command in commands:
                push(command)
        except SystemExit as failure:
            print(failure, file=sys.stderr)
            return 1
    print(f"Deployed to f/{options.folder} in workspace {options.workspace}.")
    return 0


def error_lines(output: str) -> str:
    """The CLI's own error lines, once: not its usage text, not its progress."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [
        line for line in lines if re.search(r"error|failed|not successful|unauthorized|denied|invalid", line, re.I)
    ]
    return " / ".join(dict.fromkeys(errors or lines[-3:]))[:600] or "(no output)"


def progress_lines(output: str) -> list[str]:
    """What the CLI did, without its notes about metadata it does not need here: the .script.yaml and
    .script.lock pushed with each script are that metadata, and a staged copy has no wmill-lock.yaml."""
    noise = ("No metadata generated yet", "wmill-lock.yaml created", "Using workspace")
    return [line.strip() for line in output.splitlines() if line.strip() and not any(n in line for n in noise)]


if __name__ == "__main__":
    sys.exit(main())
