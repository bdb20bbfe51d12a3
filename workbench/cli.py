"""What every workbench tool does alike at its command line: a wrong switch is one line, not a usage block."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line, `<prog>: <what is wrong> (see --help)`, exit 2;
    `--help` prints the full help as ever. An unknown word that is no switch is not echoed: it may be a
    key pasted in the wrong place."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")

    def parse_args(  # type: ignore[override]  # the one signature the tools use
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        options, extra = self.parse_known_args(args, namespace)
        if extra:
            self.error(self._unknown(extra))
        return options

    def _unknown(self, extra: list[str]) -> str:
        switches = [word.split("=", 1)[0] for word in extra if word.startswith("-") and len(word) > 1]
        if not switches:
            return f"{len(extra)} argument{'s' if len(extra) > 1 else ''} too many (not shown: it may hold a key)"
        known = [s for action in self._actions for s in action.option_strings]
        hints = []
        for switch in switches:
            close = difflib.get_close_matches(switch, known, n=1, cutoff=0.6)
            hints.append(switch + (f" (did you mean {close[0]}?)" if close else ""))
        return f"no switch {', '.join(hints)}"
