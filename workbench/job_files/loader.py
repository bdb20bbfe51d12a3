r"""The worker's Python loader (windmill-worker loader.py, WindmillFinder), same rule in our words.

The job's wrapper imports it when the script's text has a relative import (worker: the text matches
`(import|from)\s(((u|f)\.)|\.)`). A module f.<folder>.<script> (or u.<user>.<script>) not found beside
the job is fetched from {BASE_INTERNAL_URL}/api/w/{WM_WORKSPACE}/scripts/raw/p/<path>.py with the
job's token, written under ./tmp/ and imported; f and f.<folder> are namespaces, and a 404 makes a
namespace too.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from types import ModuleType


class WorkspaceScripts(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        parts = name.split(".")
        if parts[0] not in ("f", "u"):
            return None
        if len(parts) <= 2:
            return importlib.machinery.ModuleSpec(name, None, is_package=True)
        folder = os.path.join(os.getcwd(), "tmp", *parts[:-1])
        file = os.path.join(folder, parts[-1] + ".py")
        if not os.path.exists(file):
            url = "{}/api/w/{}/scripts/raw/p/{}.py".format(
                os.environ.get("BASE_INTERNAL_URL"), os.environ.get("WM_WORKSPACE"), "/".join(parts)
            )
            token = {"Authorization": "Bearer " + os.environ.get("WM_TOKEN", "")}
            try:
                with urllib.request.urlopen(urllib.request.Request(url, None, token)) as answer:  # noqa: S310
                    code = answer.read().decode("utf-8")
            except urllib.error.HTTPError:
                return importlib.machinery.ModuleSpec(name, None, is_package=True)
            os.makedirs(folder, exist_ok=True)
            with open(file, "w") as out:
                out.write(code)
        return importlib.machinery.ModuleSpec(name, importlib.machinery.SourceFileLoader(name, file), origin=file)


sys.meta_path.append(WorkspaceScripts())
