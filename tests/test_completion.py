"""Shell completion (bash and zsh) through Typer's mechanism, run as the shells run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TURNQ = [sys.executable, "-m", "turnq"]


def run(*args: str, env: dict[str, str] | None = None, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TURNQ_", "_TURNQ_", "_TYPER_"))}
    if home is not None:
        full["HOME"] = str(home)
    full.update(env or {})
    return subprocess.run([*TURNQ, *args], check=False, env=full, capture_output=True, text=True, timeout=60)


def complete_bash(words: str, cword: int) -> list[str]:
    done = run(env={"_TURNQ_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_command_names() -> None:
    found = complete_bash("turnq ex", 1)
    assert {"export", "expect"} <= set(found) and all(name.startswith("ex") for name in found)
    everything = set(complete_bash("turnq ", 1))
    assert {"enqueue", "claim", "complete", "inspect", "import", "export", "expect", "diff", "schema"} <= everything


def test_bash_completes_options_and_choices() -> None:
    assert {"--state", "--store", "--source-keys"} <= set(complete_bash("turnq expect chat --s", 3))
    assert complete_bash("turnq expect chat --state ", 4) == ["ready", "delayed", "held", "expired"]
    assert complete_bash("turnq schema c", 2) == ["claim", "completion"]
    assert complete_bash("turnq claim s --boundary ", 4) == ["idle", "active_turn_checkpoint"]


def test_zsh_completes_command_names() -> None:
    done = run(env={"_TURNQ_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "turnq exp"})
    assert done.returncode == 0, done.stderr
    assert '"export":' in done.stdout and '"expect":' in done.stdout and '"claim"' not in done.stdout


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F _turnq_completion turnq"),
                                                ("zsh", "compdef _turnq_completion turnq")])
def test_show_completion_prints_the_script(shell: str, marker: str) -> None:
    done = run("--show-completion", shell, env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout and "_TURNQ_COMPLETE=complete_" + shell in done.stdout


def test_the_bash_script_works_in_bash(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = run("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}).stdout
    (tmp_path / "completion.sh").write_text(script)
    shim = tmp_path / "turnq"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m turnq "$@"\n')
    shim.chmod(0o755)
    code = ('source completion.sh; COMP_WORDS=(turnq di); COMP_CWORD=1; _turnq_completion turnq; '
            'printf "%s\\n" "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([bash, "-c", code], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["diff"]


def test_install_completion_for_bash_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    done = run("--install-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
               home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "bash completion installed" in done.stdout
    installed = (tmp_path / ".bash_completions" / "turnq.sh").read_text()
    assert "_TURNQ_COMPLETE=complete_bash" in installed
    assert "source" in (tmp_path / ".bashrc").read_text()
