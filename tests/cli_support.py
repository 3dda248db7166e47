"""Running the CLI on many bad inputs at once, for the hostile-input tests: each case in a process
forked from one that imported the CLI once (``forked_cli.py``), so a process that aborts shows up
as a negative exit status, not as a dead pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def forked_cli(cases: list[dict], parallel: int = 2) -> list[dict]:
    """``{"returncode", "stderr"}`` of ``python -m dml_core`` for each case (``args``, ``cwd``,
    optional ``env``), each in its own forked process (``forked_cli.py``), ``parallel`` at a time."""
    forked = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("forked_cli.py")),
            "--parallel",
            str(parallel),
        ],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    assert forked.returncode == 0 and forked.stderr == "", forked.stderr[-3000:]
    return json.loads(forked.stdout)


def assert_one_line(result: dict, *fragments: str) -> None:
    """A non-zero exit (not a signal) and exactly one ``error: …`` line holding every fragment."""
    lines = result["stderr"].splitlines()
    assert result["returncode"] > 0, result
    assert len(lines) == 1 and lines[0].startswith("error: "), result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
