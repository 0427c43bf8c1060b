"""Start-up guard (issue 7): the hot `--json` commands import only what they need.

Each command runs in a fresh interpreter through `turnq.cli.main`, as the `turnq`
script runs it; at exit the test looks at `sys.modules` and at the wire models:
no Rich, no filelock, no command module but the command's own, no reading views,
no store-record models, and no pydantic validator or serialiser built for a wire
shape (the fast paths in turnq/fastwire.py and turnq/store/fastcodec.py do that work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Never imported by `enqueue/claim/complete --json`.
HEAVY = (
    "rich",  # human output only
    "turnq.render",
    "filelock",  # turnq.store.lockfile takes the same flock directly
    "turnq.views", "turnq.materialize",  # inspect/explain
    "turnq.store.records",  # the store records' pydantic models: only for documents the fast path refuses
    "sqlite3", "psycopg", "jsonschema", "tomli_w",  # other backends, schema, fixtures
)

PROBE = textwrap.dedent("""
    import json, sys
    sys.argv = ["turnq", *json.loads(sys.argv[1])]
    from turnq.cli import main
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    from turnq import models
    built = sorted(name for name, cls in vars(models).items()
                   if isinstance(cls, type) and issubclass(cls, models.BaseModel) and cls is not models.BaseModel
                   and cls is not models.WireModel and cls.__pydantic_complete__)
    report = {"code": code, "modules": sorted(m for m in sys.modules if m.startswith(("turnq", "rich", "filelock",
              "sqlite3", "psycopg", "jsonschema", "tomli_w"))), "built": built,
              "adapters": [str(t) for t in models._ADAPTERS]}
    sys.stderr.write("\\nPROBE " + json.dumps(report) + "\\n")
""")


def _run(args: list[str], store: Path) -> tuple[str, dict]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TURNQ_")}
    env["TURNQ_STORE"] = str(store)
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                          env=env, check=False, timeout=120)
    marker = done.stderr.rfind("\nPROBE ")
    assert marker >= 0, done.stderr
    report = json.loads(done.stderr[marker + len("\nPROBE "):])
    assert report["code"] == 0, done.stderr
    return done.stdout, report


def _check(report: dict, own_module: str) -> None:
    modules = set(report["modules"])
    heavy = [name for name in HEAVY if name in modules or any(m.startswith(name + ".") for m in modules)]
    assert heavy == [], f"imported: {heavy}"
    commands = sorted(m for m in modules if m.startswith("turnq.cli.") and m.endswith(("_cmds", "_cmd")))
    assert commands == [f"turnq.cli.{own_module}"]
    assert report["built"] == [], "pydantic schemas were built for these models"
    assert report["adapters"] == [], "pydantic TypeAdapters were built for these wire types"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    store = tmp_path_factory.mktemp("guard") / "turnq.json"
    results = {"enqueue": _run(["enqueue", "s", "--text", "hello", "--source-key", "k", "--json"], store)}
    results["claim"] = _run(["claim", "s", "--json"], store)
    results["complete"] = _run(["complete", "--claim", results["claim"][0].strip(), "--json"], store)
    results["enqueue_again"] = _run(["enqueue", "s", "--text", "again", "--json"], store)  # a store with a tombstone
    return results


@pytest.mark.parametrize("command,module", [("enqueue", "enqueue_cmds"), ("claim", "claim_cmds"),
                                            ("complete", "claim_cmds"), ("enqueue_again", "enqueue_cmds")])
def test_json_commands_import_only_what_they_need(runs, command, module):
    stdout, report = runs[command]
    assert json.loads(stdout)  # the command did its work and printed its JSON
    _check(report, module)


def test_the_probe_sees_heavy_imports_when_there_are_some(tmp_path):
    # Human output imports Rich: the guard above would catch it on a --json path.
    _run(["enqueue", "s", "--text", "hello"], tmp_path / "turnq.json")
    _, report = _run(["claim", "s"], tmp_path / "turnq.json")
    assert "turnq.render" in report["modules"] and "rich" in report["modules"]


def test_help_still_lists_every_command(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TURNQ_")}
    done = subprocess.run([sys.executable, "-m", "turnq", "--help"], capture_output=True, text=True, env=env,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    from turnq.cli import COMMANDS

    listed = [line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert set(COMMANDS) <= set(listed)
    order = [name for name in listed if name in COMMANDS]
    assert order[:3] == ["claim", "complete", "renew"]
