"""Run many agentctl commands in one process, for the benchmark's set-up.

Usage: .venv/bin/python -m bench.agentctl_batch < commands.json

Reads a JSON list of argument lists (each what follows ``agentctl`` on a command
line) and calls agentctl's own ``main`` for each, so a few hundred agents cost one
interpreter start instead of one each. Prints a JSON list of exit codes and stops
at the first failure, whose error line agentctl has printed on stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

from gatehouse.agentctl.cli import main as agentctl_main


def main() -> int:
    commands = json.load(sys.stdin)
    codes = []
    for argv in commands:
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            try:
                code = agentctl_main(argv)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
        codes.append(code)
        if code != 0:
            print(f"agentctl {' '.join(argv[:3])} failed with {code}", file=sys.stderr)
            break
    print(json.dumps(codes))
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
