"""Every ```python and ```bash block of README.md runs, so the README cannot rot.

Blocks run in a temporary folder (with ``checkpoints/`` and ``docs/`` linked in). A block whose
first line is ``# skip-test: <reason>`` is skipped with that reason (it needs a dataset,
a GPU, or it is the test command itself).

A bash block made only of ``python -m dml_core …`` lines runs them one after the other, each in its
own process forked from one that imported the CLI once (``forked_cli.py``): the same ``main()``
with the same arguments, folder and environment, without importing torch once per line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from forked_cli import run_forked

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"^#\s*skip-test:\s*(.+)$")
BLOCKS = BLOCK.findall((ROOT / "README.md").read_text())
SHELL_SYNTAX = set(";&|<>$`*?(){}~")
"""A line holding any of these is more than one plain command: it runs in bash."""


def dml_core_commands(code: str) -> list[list[str]] | None:
    """The arguments of each line of a bash block made only of plain ``python -m dml_core …``
    lines (a backslash at a line's end continues it; ``#`` lines are comments), else None."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if SHELL_SYNTAX & set(line):
            return None
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # a quote that closes on a later line
            return None
        if words[:3] != ["python", "-m", "dml_core"]:
            return None
        commands.append(words[3:])
    return commands or None


def bash_words(code: str) -> list[list[str]]:
    """The arguments bash passes to each ``python`` command of ``code`` (``python`` made a function
    that prints them): the reference :func:`dml_core_commands` is checked against."""
    printer = 'python() { printf "%s\\0" "$@"; printf "\\n"; }\n'
    shown = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", printer + code], capture_output=True, text=True
    ).stdout
    return [line.split("\0")[:-1] for line in shown.splitlines()]


def test_dml_core_commands_split_lines_as_bash_does() -> None:
    continued = "python -m dml_core train --preset toy \\\n    --out 'runs/a b'  # two words\n"
    blocks = [f"{continued}# a comment\npython -m dml_core report runs\n"]
    blocks += [code for language, code in BLOCKS if language == "bash"]
    checked = 0
    for code in blocks:
        commands = dml_core_commands(code)
        if commands is not None:
            assert [["-m", "dml_core", *args] for args in commands] == bash_words(code)
            checked += 1
    assert checked >= 2  # the block above and README's quick run
    assert dml_core_commands("python -m dml_core report runs > out.txt\n") is None
    assert dml_core_commands("python -m dml_core report runs\nls runs\n") is None
    assert dml_core_commands("python -c 'print(1)'\n") is None
    assert dml_core_commands('python -m dml_core report "runs\nx"\n') is None


def readme_blocks() -> list:
    text = (ROOT / "README.md").read_text()
    params = []
    for number, match in enumerate(BLOCK.finditer(text)):
        language, code = match.group(1), match.group(2)
        line = text[: match.start()].count("\n") + 1
        skip = SKIP.match(code.splitlines()[0]) if code.strip() else None
        marks = [pytest.mark.skip(reason=skip.group(1))] if skip else [pytest.mark.slow]
        params.append(pytest.param(language, code, id=f"block{number}-line{line}", marks=marks))
    return params


@pytest.mark.parametrize(("language", "code"), readme_blocks())
def test_readme_block_runs(language: str, code: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DML_EXPLORER_CACHE"] = env.get("DML_EXPLORER_CACHE", str(tmp_path / "cache"))
    # Blocks run in a scratch folder that sees the repository's shipped files, so `runs/…` they
    # write never lands in the working tree.
    for shipped in ("checkpoints", "docs"):
        (tmp_path / shipped).symlink_to(ROOT / shipped)
    commands = dml_core_commands(code) if language == "bash" else None
    if commands is not None:
        cases = [{"args": args, "cwd": str(tmp_path)} for args in commands]
        for args, result in zip(commands, run_forked(cases, env, parallel=1), strict=True):
            assert result["returncode"] == 0, (
                f"README block failed at `python -m dml_core {shlex.join(args)}`:\n"
                f"{code}\n--- stderr\n{result['stderr']}"
            )
        return
    if language == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, f"README block failed:\n{code}\n{output}"
