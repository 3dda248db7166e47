"""Every ```python and ```bash block of README.md runs, so the README cannot rot.

Blocks run in a temporary folder (with ``checkpoints/`` and ``docs/`` linked in). A block whose
first line is ``# skip-test: <reason>`` is skipped with that reason (it needs a dataset,
a GPU, or it is the test command itself).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"^#\s*skip-test:\s*(.+)$")


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
    if language == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, f"README block failed:\n{code}\n{output}"
