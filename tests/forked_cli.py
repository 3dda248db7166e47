"""Many ``python -m dml_core`` command lines at the cost of one start: imports the CLI and the
trainer once, then forks one child per command line, so each still runs in its own process (its
exit status, its own stderr, nothing left over from the one before) without importing torch again.

    python tests/forked_cli.py [--parallel N] < cases.json

Reads a JSON list of ``{"args": [...], "cwd": "...", "env": {...}}`` (``env`` optional, added to
the environment); prints a JSON list of ``{"returncode", "stderr"}`` in the order of the cases. Its
own stderr holds only what the imports printed (a fresh process would print that too). Two
children run at a time (``--parallel 1``: one after the other, in order, for command lines that use
what the one before wrote). Tests call :func:`run_forked` (``from forked_cli import run_forked``):
``test_faults.py`` (the bad-input test's command lines and the 14 faulted runs), ``test_cli.py``
(its user errors), ``test_hostile_inputs.py``; each would be an import of torch otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path

PARALLEL = 2
CHILD_SECONDS = 300
"""A child still running after this long is killed (SIGALRM), as ``subprocess.run(timeout=)``."""


def child(case: dict, stderr_path: Path) -> None:
    """In the forked process: run ``main(case["args"])`` as ``python -m dml_core`` would, in
    ``case["cwd"]`` with ``case["env"]`` added to the environment; never returns."""
    code = 1
    try:
        signal.alarm(CHILD_SECONDS)
        os.chdir(case["cwd"])
        os.environ.update(case.get("env", {}))
        descriptor = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(descriptor, 2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        from dml_core.cli import main

        code = main(case["args"])
    except SystemExit as error:  # argparse's usage errors
        code = error.code if isinstance(error.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_all(cases: list[dict], parallel: int = PARALLEL) -> list[dict]:
    results: list[dict | None] = [None] * len(cases)
    with tempfile.TemporaryDirectory() as folder:
        running: dict[int, int] = {}  # pid -> case index
        pending = list(range(len(cases)))
        while pending or running:
            while pending and len(running) < parallel:
                index = pending.pop(0)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    child(cases[index], Path(folder) / f"{index}.err")
                running[pid] = index
            pid, status = os.wait()
            index = running.pop(pid)
            stderr = (Path(folder) / f"{index}.err").read_text(errors="replace")
            results[index] = {"returncode": os.waitstatus_to_exitcode(status), "stderr": stderr}
    return results


def run_forked(
    cases: list[dict],
    env: Mapping[str, str] | None = None,
    *,
    parallel: int = PARALLEL,
    timeout: float = 900,
) -> list[dict]:
    """``{"returncode", "stderr"}`` of ``python -m dml_core`` for each case (``args``, ``cwd``,
    optional ``env``), each in its own process forked from one ``python forked_cli.py`` (run with
    ``env``, default this process's environment) that imported the CLI once, ``parallel`` at a
    time; what those imports print would reach every user, so it must be nothing."""
    forked = subprocess.run(
        [sys.executable, __file__, "--parallel", str(parallel)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ if env is None else env),
    )
    assert forked.returncode == 0 and forked.stderr == "", forked.stderr[-3000:]
    return json.loads(forked.stdout)


if __name__ == "__main__":
    # Imported once, before the forks: what train, evaluate, embed, project and report import.
    import dml_core.cli
    import dml_core.engine.evaluation
    import dml_core.engine.stored_evaluation
    import dml_core.engine.trainer
    import dml_core.report  # noqa: F401

    parallel = int(sys.argv[sys.argv.index("--parallel") + 1]) if "--parallel" in sys.argv else 2
    print(json.dumps(run_all(json.load(sys.stdin), parallel)))
