"""Issue 14, a newcomer's first hour: --version, stdin/@FILE for texts, fixture round trips,
image summaries, progress, wrapping, "nothing to claim" reasons, help that reads well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from turnq.cli import app

RUNNER = CliRunner()
pytestmark = pytest.mark.usefixtures("cli_built_once")
NOW_TEXT = "2026-01-01T00:00:00Z"
QUIET_ENV: dict[str, str | None] = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None,
                                    "COLUMNS": "100", "LINES": None}


def cli(*args: Any, input: str | bytes | None = None, env: dict[str, str | None] | None = None):
    argv = [str(arg) for arg in args]
    if "--now" not in argv:
        argv += ["--now", NOW_TEXT]
    return RUNNER.invoke(app, argv, input=input, env={**QUIET_ENV, **(env or {})})


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def turnq(*args: str, input: str | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`turnq ARGS` as a real process (the installed entry point's code path)."""
    return subprocess.run([sys.executable, "-c", "from turnq.cli import main; main()", *args], input=input,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=60)


# --------------------------------------------------------------------------- --version


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_one_line_from_package_metadata(flag: str) -> None:
    from importlib.metadata import version

    done = turnq(flag)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"turnq {version('turnq')}\n", "")
    module = subprocess.run([sys.executable, "-m", "turnq", flag], capture_output=True, text=True, timeout=60)
    assert module.stdout == done.stdout
    # and through the Typer app itself
    assert ok(RUNNER.invoke(app, [flag])) == done.stdout
    assert "-V, --version" in ok(RUNNER.invoke(app, ["--help"]))


# --------------------------------------------------------------------------- --text / --input: stdin, @FILE


def _texts(batch: dict) -> list[str]:
    return [item["text"] for item in batch["items"][0]["payload"]["input"]["items"] if item["type"] == "text"]


def test_text_reads_stdin_and_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("from a file", encoding="utf-8")
    batch = json.loads(ok(cli("enqueue", "s", "--text", "first", "--text", "-", "--text", "@note.txt", "--json",
                              input="from stdin")))
    assert _texts(batch) == ["first", "from stdin", "from a file"]


def test_only_one_option_reads_stdin() -> None:
    result = cli("enqueue", "s", "--text", "-", "--payload", "-", input="x")
    assert result.exit_code == 2 and "only one option can read stdin" in result.stderr
    result = cli("enqueue", "s", "--text", "-", "--text", "-", input="x")
    assert result.exit_code == 2 and result.stderr.startswith("turnq: error: --text: only one")


def test_text_from_a_missing_file_is_a_usage_error() -> None:
    result = cli("enqueue", "s", "--text", "@nowhere.txt")
    assert result.exit_code == 2 and "--text: cannot read nowhere.txt" in result.stderr


def test_wake_input_reads_stdin_and_files(tmp_path: Path) -> None:
    (tmp_path / "wake.txt").write_text("build finished", encoding="utf-8")
    cases = (("1", "-", "from stdin", "from stdin"), ("2", "@wake.txt", None, "build finished"))
    for sequence, value, stdin, expected in cases:
        batch = json.loads(ok(cli("wake", "s", "--process-id", "p", "--sequence", sequence, "--input", value,
                                  "--json", input=stdin)))
        assert batch["items"][0]["payload"]["wake"]["input"] == expected


# --------------------------------------------------------------------------- times and durations


def test_now_in_epoch_seconds_is_refused_with_a_hint() -> None:
    result = cli("inspect", "--now", "1764500000")
    assert result.exit_code == 2
    assert "looks like epoch seconds" in result.stderr and "1764500000000" in result.stderr


def test_compound_durations_work_on_the_command_line() -> None:
    ok(cli("enqueue", "s", "--text", "x"))
    claim = json.loads(ok(cli("claim", "s", "--ttl", "1h30m", "--json")))
    assert claim["expires_at_epoch_ms"] - claim["claimed_at_epoch_ms"] == 90 * 60_000


# --------------------------------------------------------------------------- export → import round trip


def _seed() -> None:
    ok(cli("enqueue", "s", "--text", "hello", "--source-key", "k1"))
    ok(cli("enqueue", "t", "--text", "world", "--delay", "1h30m"))


@pytest.mark.parametrize("name", ["copy.json", "copy.toml", "copy.fixture"])
def test_export_to_a_file_imports_back_by_default(tmp_path: Path, name: str) -> None:
    _seed()
    ok(cli("export", "--output", name))
    text = (tmp_path / name).read_text()
    assert text.lstrip().startswith("{") == name.endswith(".json")  # the format follows the extension
    if name.endswith(".fixture"):  # no known extension: TOML, and import needs to be told
        ok(cli("import", name, "--format", "toml", "--store", "back.json"))
    else:
        ok(cli("import", name, "--store", "back.json"))
    assert ok(cli("diff", "turnq.json", "back.json")).startswith("no differences")


@pytest.mark.parametrize("export_args", [["--json"], [], ["--format", "json"], ["--format", "toml"]])
def test_export_piped_into_import_needs_no_format(export_args: list[str]) -> None:
    _seed()
    fixture = ok(cli("export", *export_args))
    ok(cli("import", "-", "--store", "back.json", input="\n  " + fixture))  # leading blanks are skipped
    assert ok(cli("diff", "turnq.json", "back.json")).startswith("no differences")


def test_an_explicit_format_wins_over_the_sniffed_one() -> None:
    _seed()
    fixture = ok(cli("export", "--json"))
    result = cli("import", "-", "--format", "toml", "--store", "back.json", input=fixture)
    assert result.exit_code == 2 and "not valid TOML" in result.stderr


# --------------------------------------------------------------------------- SIGPIPE: 141 everywhere

#: Every command (but `watch`, which refuses a stdout that is not a terminal) with arguments that
#: make it print something; run in order on one store.
PIPE_RUNS = [
    ["enqueue", "s", "--text", "x", "--json"], ["enqueue", "s", "--text", "y"], ["wake", "s", "--process-id", "p",
    "--sequence", "1", "--input", "w"], ["reset-session", "r", "--reason", "why"],
    ["refresh-tools", "r", "--reason", "why"], ["inspect", "--json"], ["inspect", "s"], ["explain", "s"],
    ["expect", "s", "--count", "3"], ["schema"], ["export"], ["export", "--json"], ["diff", "turnq.json", "x.json"],
    ["log"], ["log", "--json"], ["doctor"], ["claim", "s", "--dry-run"], ["claim", "s", "--json"],
    ["claim", "r", "--json"], ["vacuum"], ["import", "fixture.json", "--store", "other.json"],
    ["migrate", "--from", "turnq.json", "--to", "copy.json"], ["--help"], ["export", "--help"], ["--version"],
    ["config"], ["config", "--json"], ["work", "s", "--idle-exit", "--json", "--", "true"],
]


def test_a_reader_that_leaves_ends_every_command_with_141(tmp_path: Path) -> None:
    (tmp_path / "fixture.json").write_text('{"sessions": [{"id": "f", "drafts": [{"text": "hi"}]}]}')
    (tmp_path / "x.json").write_text('{"sessions": []}')
    env = {"TURNQ_NOW": NOW_TEXT, "TURNQ_STORE": str(tmp_path / "turnq.json")}
    codes = {}
    for args in PIPE_RUNS:
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before turnq writes
        done = subprocess.run([sys.executable, "-c", "from turnq.cli import main; main()", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **env}, cwd=tmp_path, timeout=60)
        os.close(write_end)
        codes[" ".join(args)] = (done.returncode, done.stderr)
    # `turnq work` says a line per claim on stderr by design (its JSON Lines go to stdout)
    work = codes.pop("work s --idle-exit --json -- true")
    assert work[0] == 141 and work[1].startswith("turnq: qwc:"), work
    assert {name: code for name, code in codes.items() if code != (141, "")} == {}
    from turnq.cli import COMMANDS

    assert set(COMMANDS) - {args[0] for args in PIPE_RUNS} == {"complete", "renew", "abandon", "cancel", "watch"}


# --------------------------------------------------------------------------- help


def _commands() -> dict[str, Any]:
    import typer.main

    return typer.main.get_group(app).commands


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_help_has_examples_and_plain_metavars(name: str) -> None:
    import re

    text = ok(RUNNER.invoke(app, [name, "--help"], env={"COLUMNS": "100"}))
    assert "\n  Examples:\n    turnq " in text
    # a Python type after an option or argument, a parameter's Python name, nested brackets
    leaks = re.findall(r"(?m)(?:-[a-z-]+|^  [A-Za-z_]+)(?:\.\.\.)? <[^>]+>|\{[a-z_]+\}|\[\[|list\[", text)
    assert leaks == []
    usage = text.splitlines()[0]
    assert re.fullmatch(r"Usage: turnq [a-z-]+ \[OPTIONS\]( \[?[A-Z_]+\]?(\.\.\.)?| --)*", usage), usage


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_example_names_real_options(name: str) -> None:
    import shlex

    command = _commands()[name]
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    from turnq.cli.helptext import EXAMPLES

    for line in EXAMPLES[name]:
        words = shlex.split(line.split(" | ")[-1] if f"| turnq {name}" in line else line.split(" | ")[0])
        words = words[: words.index(">")] if ">" in words else words
        assert words[:2] == ["turnq", name], line
        assert [w for w in words if w.startswith("-") and w not in ("-", "--") and w not in known] == [], line


@pytest.mark.parametrize("name", ["complete", "renew", "abandon"])
def test_settling_commands_do_not_describe_replays(name: str) -> None:
    text = ok(RUNNER.invoke(app, [name, "--help"]))
    assert "--strict" in text and "replay" not in text
    assert "replay" in ok(RUNNER.invoke(app, ["wake", "--help"]))


def test_turnq_help_ends_with_exit_codes_and_environment() -> None:
    from turnq.errors import ExitStatus

    text = ok(RUNNER.invoke(app, ["--help"], env={"COLUMNS": "100"}))
    exits, env = text.split("\n  Exit codes:\n", 1)[1].split("\n  Environment:\n", 1)
    for name, status in ExitStatus.__members__.items():
        assert f" {int(status)}  {name.lower()} " in exits
    assert "141  (SIGPIPE)" in exits
    names = [line.split()[0] for line in env.strip().splitlines()]
    # every variable turnq reads is listed (those it sets for `turnq work`'s command, the shell
    # completion's and the benchmark's are not settings of turnq's)
    import re

    package = Path(__file__).resolve().parents[1] / "turnq"
    read = {name for path in package.rglob("*.py") for name in re.findall(r"TURNQ_[A-Z_]+", path.read_text())}
    set_for_others = {"TURNQ_CLAIM_FILE", "TURNQ_CLAIM_ID", "TURNQ_FENCING_TOKEN", "TURNQ_LEASE_TOKEN",
                      "TURNQ_SESSION", "TURNQ_COMPLETE", "TURNQ_BENCH_POSTGRES"}
    assert sorted(names) == sorted(read - set_for_others)
    assert "130  (SIGINT)" in exits


def test_schema_takes_json_as_a_no_op() -> None:
    assert ok(RUNNER.invoke(app, ["schema", "draft", "--json"])) == ok(RUNNER.invoke(app, ["schema", "draft"]))


# --------------------------------------------------------------------------- vacuum --dry-run


def test_vacuum_dry_run_shows_what_it_would_drop_and_keeps_it(tmp_path: Path) -> None:
    ok(cli("enqueue", "s", "--text", "x", "--source-key", "k"))
    ok(cli("complete", "--claim", ok(cli("claim", "s", "--json")).strip()))
    before = (tmp_path / "turnq.json").read_bytes()
    planned = json.loads(ok(cli("vacuum", "--dry-run", "--json")))
    assert [t["source_key"] for t in planned["removed"]] == ["k"]
    assert "Would drop 1 tombstone(s)" in ok(cli("vacuum", "--dry-run"))
    assert (tmp_path / "turnq.json").read_bytes() == before
    assert json.loads(ok(cli("vacuum", "--json"))) == planned  # the real run drops exactly those
    assert json.loads(ok(cli("vacuum", "--dry-run", "--json"))) == {"removed": []}


def test_an_unreadable_store_points_to_doctor(tmp_path: Path) -> None:
    (tmp_path / "turnq.json").write_text("{not json")
    for args in (["inspect"], ["inspect", "--json"]):
        result = cli(*args)
        assert result.exit_code == 7 and "run 'turnq doctor' on this store" in result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_a_delayed_enqueue_says_when_the_batch_becomes_claimable() -> None:
    out = ok(cli("enqueue", "s", "--text", "later", "--delay", "1h30m"))
    assert "Claimable from 2026-01-01T01:30:00.000Z (in 1h 30m)." in out
    out = ok(cli("wake", "s", "--process-id", "p", "--sequence", "1", "--input", "w", "--available-at",
                 "2026-01-02T00:00:00Z"))
    assert "Claimable from 2026-01-02T00:00:00.000Z (in 1d)." in out
    assert "Claimable" not in ok(cli("enqueue", "s", "--text", "now"))


# --------------------------------------------------------------------------- images in human views


@pytest.mark.parametrize(("head", "kind"), [
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff\xe0", "JPEG"), (b"GIF89a", "GIF"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"), (b"\x00\x00\x00\x1cftypavif", "AVIF"), (b"<svg xmlns=", "SVG"),
    (b"hello", "unknown type"), (b"", "unknown type"),
])
def test_image_type_from_magic_bytes(head: bytes, kind: str) -> None:
    from turnq.images import image_type

    assert image_type(head + b"\x00" * 32) == kind if head else image_type(b"") == kind


def test_image_summary_is_one_line() -> None:
    import hashlib

    from turnq.images import summary

    blob = b"\x89PNG\r\n\x1a\n" + bytes(100)
    assert summary("shot", blob) == f"image shot: 108 bytes, PNG, sha256 {hashlib.sha256(blob).hexdigest()[:12]}"
    assert summary("gone", None) == "image gone: no blob"


def test_a_big_image_is_a_summary_in_every_human_view_and_bytes_in_json(tmp_path: Path) -> None:
    blob = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 800  # a 200 KB "JPEG"
    (tmp_path / "big.jpg").write_bytes(blob)
    line = "image big: 204804 bytes, JPEG, sha256 "
    out = ok(cli("enqueue", "s", "--text", "see", "--image", "big=big.jpg", env={"COLUMNS": "200"}))
    assert line in out
    batch_id = json.loads(ok(cli("inspect", "s", "--json")))["batches"][0]["batch"]["batch_id"]
    shown = ok(cli("inspect", "s", "--batch", batch_id))
    assert line in shown and len(shown.splitlines()) < 60
    assert line in ok(cli("inspect", "s", env={"COLUMNS": "200"}))
    claimed = ok(cli("claim", "s", "--dry-run", env={"COLUMNS": "200"}))
    assert f"[{line}" in claimed and len(claimed.splitlines()) < 40
    wire = json.loads(ok(cli("inspect", "s", "--batch", batch_id, "--json")))
    assert wire["batch"]["items"][0]["payload"]["input"]["image_blobs"]["big"] == list(blob)


# --------------------------------------------------------------------------- large results, progress


def _big_fixture(tmp_path: Path, per_session: int) -> Path:
    doc = {"now": NOW_TEXT, "sessions": [{"id": f"s{n}", "drafts": [{"text": f"t{i}"} for i in range(per_session)]}
                                         for n in range(2)]}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_large_import_is_summarised(tmp_path: Path) -> None:
    _big_fixture(tmp_path, 25)
    out = ok(cli("import", "big.json", env={"COLUMNS": "200"}))
    lines = out.splitlines()
    assert "Drafts per session" in out and any(line.split() == ["s1", "25"] for line in lines)
    assert sum("sessions[" in line for line in lines) == 10
    assert "… and 40 more draft(s) (--json lists every one)" in out
    assert len(json.loads(ok(cli("import", "big.json", "--store", "other.json", "--json")))["enqueued"]) == 50


def test_a_small_import_lists_every_row(tmp_path: Path) -> None:
    _big_fixture(tmp_path, 3)
    out = ok(cli("import", "big.json", env={"COLUMNS": "200"}))
    assert sum("sessions[" in line for line in out.splitlines()) == 6 and "more" not in out


def _in_pty(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run turnq with stderr on a terminal (a pty) and stdout on a pipe."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", "from turnq.cli import main; main()", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "TURNQ_NOW": NOW_TEXT,
                                                                       "TERM": "xterm"})
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait(timeout=60)
    os.close(master)
    return code, out, seen.decode(errors="replace")


@pytest.mark.parametrize("command", ["import", "migrate"])
def test_progress_shows_on_a_terminal_only(tmp_path: Path, command: str) -> None:
    _big_fixture(tmp_path, 1500)
    args = (["import", "big.json", "--store", "a.json"] if command == "import" else
            ["migrate", "--from", "seed.json", "--to", "b.json"])
    if command == "migrate":
        ok(cli("import", "big.json", "--store", "seed.json"))
    label = "Importing" if command == "import" else "Migrating"
    code, out, terminal = _in_pty(args, tmp_path)
    assert code == 0 and label in terminal and label not in out
    for extra in ([], ["--json"]):  # piped stderr, or --json: no bar
        piped = subprocess.run([sys.executable, "-c", "from turnq.cli import main; main()",
                                *[a.replace(".json", "2.json") if a in ("a.json", "b.json") else a for a in args],
                                *extra], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "TURNQ_NOW": NOW_TEXT})
        assert piped.returncode == 0 and piped.stderr == ""
        (tmp_path / ("a2.json" if command == "import" else "b2.json")).unlink()


# --------------------------------------------------------------------------- wrapping and width


def test_piped_messages_never_wrap_mid_sentence() -> None:
    ok(cli("enqueue", "s", "--text", "x", "--delay", "10m"))
    out = cli("claim", "s", env={"COLUMNS": None}).stdout  # CliRunner's stdout is not a terminal: 80 columns
    line = out.splitlines()[0]
    assert len(out.splitlines()) == 1 and len(line) > 80 and line.endswith("See 'turnq explain s'.")


@pytest.mark.parametrize("width", [40, 60])
def test_a_table_that_cannot_fit_says_which_columns_it_left_out(width: int) -> None:
    ok(cli("enqueue", "s", "--text", "x"))
    ok(cli("claim", "s"))
    out = ok(cli("log", env={"COLUMNS": str(width)}))
    assert max(len(line.rstrip()) for line in out.splitlines()) <= width
    note = " ".join(out.split("column(s) left out at", 1)[1].split())
    assert note.startswith(f"{width} columns:") and "details" in note and "--json shows them" in note
    assert "left out" not in ok(cli("log", env={"COLUMNS": "200"}))


# --------------------------------------------------------------------------- nothing to claim


@pytest.mark.parametrize(("setup", "boundary", "reason"), [
    ([], "idle", "the session is empty"),
    ([["enqueue", "s", "--text", "x", "--delay", "90m"]], "idle",
     "seq 1 is delayed until 2026-01-01T01:30:00.000Z"),
    ([["enqueue", "s", "--text", "x"], ["claim", "s", "--owner", "w1"]], "idle",
     "seq 1 is held by w1 (claim qwc:1:1, fencing token 1) until 2026-01-01T00:15:00.000Z"),
    ([["enqueue", "s", "--text", "x"]], "active_turn_checkpoint",
     "the head (seq 1) is after_current_turn_commit and waits for the idle boundary"),
])
def test_nothing_to_claim_says_why_in_one_line(setup: list[list[str]], boundary: str, reason: str) -> None:
    for args in setup:
        ok(cli(*args))
    result = cli("claim", "s", "--boundary", boundary)
    assert result.exit_code == 3
    assert result.stdout.count("\n") == 1 and f": {reason}. See 'turnq explain s'." in result.stdout


def test_nothing_to_claim_names_the_exclusive_head_that_blocks_a_named_batch() -> None:
    ok(cli("enqueue", "s", "--text", "alone", "--slot", "exclusive", "--delivery", "earliest_safe_boundary"))
    second = json.loads(ok(cli("enqueue", "s", "--text", "y", "--delivery", "earliest_safe_boundary", "--json")))
    result = cli("claim", "s", "--batch", second["batch_id"], env={"COLUMNS": "300"})
    assert result.exit_code == 3
    assert "seq 2 is not in the run (the head qwb:" in result.stdout and "slot policy exclusive" in result.stdout


def test_turnq_alone_still_shows_the_help() -> None:
    done = turnq()
    assert done.returncode == 2 and "Usage: turnq" in done.stdout + done.stderr
