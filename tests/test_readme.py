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


def test_the_postgresql_start_is_one_quiet_line_without_postgresql(tmp_path) -> None:
    """README's second command on a machine without PostgreSQL: no shell errors, one line."""
    import subprocess

    readme = (ROOT / "README.md").read_text()
    start_here = readme.split("## Start here", 1)[1].split("\n## ", 1)[0]
    second = re.findall(r"```bash\n(.*?)\n```", start_here, re.S)[1]
    start_pg = second.split("; . .venv/bin/activate", 1)[0]
    # an empty PATH: no pg_isready, no pg_ctlcluster, not even ls
    done = subprocess.run(["/bin/bash", "-c", start_pg], env={"PATH": str(tmp_path)}, capture_output=True,
                          text=True, timeout=30)
    assert (done.stdout, done.stderr) == ("no PostgreSQL server: its tests will skip\n", "")


def test_readme_links_only_files_a_clone_has() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#][^)]*)\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local and [t for t in local if not (ROOT / t).exists()] == []
    assert re.findall(r"`?spec/[a-z]+\.(?:md|jsonl)", readme) == []  # the spec is not in the repository


def test_readme_says_which_commands_take_store_now_and_json() -> None:
    """The README's sentence on the common options matches the commands."""
    from typer.main import get_command

    from turnq.cli import app

    options = {name: {o for p in command.params for o in getattr(p, "opts", [])}
               for name, command in get_command(app).commands.items()}  # type: ignore[attr-defined]
    assert {n for n, o in options.items() if "--store" not in o} == {"diff", "migrate", "schema"}
    assert {n for n, o in options.items() if "--now" not in o} == {"schema"}
    assert {n for n, o in options.items() if "--json" not in o} == {"watch"}
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`diff` takes its two stores as arguments, `migrate` as `--from`/`--to`, and `schema` reads none" in readme
    assert "Every command but `schema` takes `--now TIME`, and every one but `watch`" in readme
