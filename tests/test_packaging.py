"""Packaging: licence, typing marker, dependency bounds, and the Typer internals turnq leans on."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement(name: str) -> str:
    return next(dep for dep in PROJECT["dependencies"] if dep.split(">")[0].split(";")[0].strip() == name)


def test_licence_is_an_spdx_string_with_its_file() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_package_is_typed_and_described() -> None:
    assert (ROOT / "turnq" / "py.typed").exists()
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert PROJECT["keywords"]
    # no invented home page: every URL given (if any) is a real https address, not a placeholder
    for url in PROJECT.get("urls", {}).values():
        assert url.startswith("https://") and "example" not in url


def test_filelock_is_required_only_where_turnq_uses_it(tmp_path) -> None:
    import subprocess
    import sys

    assert _requirement("filelock").replace(" ", "").endswith(";sys_platform=='win32'")
    if sys.platform == "win32":
        return
    # off Windows, taking and releasing the store lock never imports filelock
    code = ("import sys; from turnq.store.lockfile import file_lock, FlockLock\n"
            f"lock = file_lock({str(tmp_path / 'x.lock')!r}, timeout=1); lock.acquire(); lock.release()\n"
            "assert isinstance(lock, FlockLock) and 'filelock' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_typer_is_bounded_below_its_next_minor() -> None:
    spec = _requirement("typer").replace(" ", "")
    assert ">=0.29" in spec and ",<0." in spec


def test_the_typer_internals_turnq_uses_still_exist() -> None:
    """turnq.cli builds a one-command group (registered_commands, get_group) and recognises
    NoArgsIsHelpError by name: if a Typer release moves them, this fails before users do."""
    import typer
    import typer.main
    from typer._click import exceptions

    app = typer.Typer()

    @app.command()
    def one() -> None:
        pass

    @app.command()
    def two() -> None:
        pass

    assert [info.callback for info in app.registered_commands] == [one, two]
    app.registered_commands = app.registered_commands[:1]
    group = typer.main.get_group(app)
    assert hasattr(group, "commands") and list(group.commands) == ["one"]
    assert issubclass(exceptions.NoArgsIsHelpError, typer.TyperException)
    from turnq.cli.app import _usage_error  # noqa: F401  (the code that names it)
    assert "NoArgsIsHelpError" in (ROOT / "turnq" / "cli" / "app.py").read_text()
