"""README.md and .ci/run agree: CI runs exactly what the README tells a new user (then the suite on more Pythons)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line for line in lines if line and not line.startswith(("#", "set ", "cd ", "python3 --version"))]


def _more_pythons() -> list[str]:
    """The versions .ci/run runs the suite on after README's commands (`bash .ci/more-pythons X.Y ...`)."""
    last = _ci_commands()[-1].split()
    assert last[:2] == ["bash", ".ci/more-pythons"]
    return last[2:]


def test_ci_runs_exactly_the_readme_start_here_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    start_here = readme.split("## Start here", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", start_here, re.S)
    assert len(blocks) == 2
    # README's commands first, exactly as a new user types them; then only the other Pythons.
    assert _ci_commands() == [*blocks, f"bash .ci/more-pythons {' '.join(_more_pythons())}"]


def test_readme_and_classifiers_name_exactly_the_pythons_ci_covers() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # README's commands run on python3, which must be the oldest supported Python (requires-python).
    oldest = re.fullmatch(r">=(3\.\d+)", project["requires-python"])[1]
    covered = sorted({oldest, *_more_pythons()}, key=lambda v: tuple(map(int, v.split("."))))
    prefix = "Programming Language :: Python :: 3."
    classified = [c.rsplit(" ", 1)[1] for c in project["classifiers"] if c.startswith(prefix)]
    assert classified == covered
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Supported Python versions", 1)[1].split("\n## ", 1)[0]
    listed = re.search(r"covers Python ((?:3\.\d+(?:, | and )?)+)", section)[1]
    assert re.findall(r"3\.\d+", listed) == covered


def test_readme_documents_every_exit_code_and_env_var() -> None:
    from turnq.errors import ExitStatus

    readme = (ROOT / "README.md").read_text()
    for status in ExitStatus:
        assert f"| {status.value} | {status.code_name} |" in readme
    for name in ("TURNQ_STORE", "TURNQ_NOW", "TURNQ_OWNER", "TURNQ_LOCK_TIMEOUT"):
        assert f"`{name}`" in readme


def test_readme_mentions_every_command() -> None:
    from typer.main import get_command

    from turnq.cli import app

    readme = (ROOT / "README.md").read_text()
    for name in get_command(app).commands:  # type: ignore[attr-defined]
        # `turnq complete|renew|abandon` names three commands in one row
        assert re.search(rf"turnq [a-z\\|-]*\b{re.escape(name)}\b", readme), name


def _session_block() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A session", 1)[1]
    block = section.split("```text\n", 1)[1].split("\n```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in steps]


def test_the_readme_session_is_real_output(tmp_path) -> None:
    """Each command of "A session" run in order prints what the README shows."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNQ_")}
    env.update(TURNQ_NOW="2026-01-01T00:00:00Z", COLUMNS="90",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    steps = _session_block()
    assert [c.split()[1] for c, _ in steps][:4] == ["enqueue", "enqueue", "wake", "inspect"]
    for command, shown in steps:
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
        printed = result.stderr + result.stdout  # as a terminal shows them: the notes come first
        assert [line.rstrip() for line in printed.splitlines()] == [line.rstrip() for line in shown.splitlines()], \
            command
