"""Queued data is shown literally in every human output (issue 11, item 1).

Agent input is full of square brackets, and a queued text may carry terminal control sequences.
Rich must never read data as markup, and no control character may reach the terminal raw: each is
shown escaped (`turnq.textsafe.escape_control`: `\\x1b`, `\\n`, `\\t`). A property test sends
arbitrary texts, session ids, source keys, owners and a store file name through every human
renderer and checks that each appears exactly as a person would read it.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from typer.testing import CliRunner

from turnq.cli import app
from turnq.textsafe import escape_control

pytestmark = pytest.mark.usefixtures("cli_built_once")

NOW = 1767225600000
#: Wide enough that no table folds a cell: each value must appear in one piece.
ENV = {"COLUMNS": "5000", "TURNQ_NOW": str(NOW)}
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # any control character but the line feed

CONTROLS = [chr(c) for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]]
MARKUP = ["[", "]", "[/]", "[b]", "[/b]", "[i]", "[bold red]", "[link=https://x]", "\\", "\\[", ":smile:",
          "\x1b[2J", "\x1b[31m", "\x07", "\n", "\t"]
PIECES = st.one_of(
    st.sampled_from(CONTROLS), st.sampled_from(MARKUP),
    st.characters(whitelist_categories=("L", "N", "P", "S", "Zs"), max_codepoint=0x2FFF),
)


def data(prefix: str, *, nul: bool = True) -> st.SearchStrategy[str]:
    """A value from data. The prefix keeps it from reading as an option (`-x`), stdin (`-`) or a
    file (`@x`); identifiers carry no NUL (refused there, as no argv can hold one)."""
    pieces = PIECES if nul else PIECES.filter(lambda p: "\x00" not in p)
    return st.lists(pieces, min_size=1, max_size=10).map(lambda parts: prefix + "".join(parts))


def run(*args: str, store: Path) -> object:
    return CliRunner().invoke(app, [*args, "--store", str(store)], env=ENV)


def ok(result, code: int = 0) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    for stream in (result.stdout, result.stderr):
        assert not RAW_CONTROL.search(stream), repr(stream)
    return result.stdout + result.stderr


def one_line(value: str) -> str:
    return escape_control(value)


def lines_of(value: str) -> list[str]:
    """A multi-line text as a panel shows it: its lines, control characters escaped."""
    return escape_control(value, keep_newlines=True).split("\n")


def shows(output: str, *values: str) -> None:
    for value in values:
        assert value in output, (value, output)


# No shrinking: each example runs some twenty commands, and a failure's own example is readable.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@example(text="see [/] and [b]bold[/b] \x1b[2J\x07 \\[i]", session="s[b]\x1e", key="k[/]\x7f", owner="o\x9b[i]")
@given(text=data("t"), session=data("s", nul=False), key=data("k", nul=False), owner=data("o", nul=False))
def test_every_human_renderer_shows_data_literally(text, session, key, owner):
    with tempfile.TemporaryDirectory() as folder:
        check_all_renderers(Path(folder), text, session, key, owner)


def check_all_renderers(folder: Path, text: str, session: str, key: str, owner: str) -> None:
    store = folder / "q[b][i]\x1b\x07.json"  # a file name is data too
    where = one_line(str(store))
    add = ["enqueue", session, "--text", text, "--source-key", key, "--delivery", "earliest_safe_boundary"]
    shows(ok(run(*add, store=store)), one_line(session), one_line(key))
    shows(ok(run(*add, store=store)), escape_control(repr(key)))  # the replay note on stderr
    shows(ok(run("inspect", store=store)), one_line(session))
    shows(ok(run("inspect", session, store=store)), one_line(session), one_line(key), *lines_of(text))
    listed = run("inspect", session, "--json", store=store)  # machine output: JSON, not for this check
    batch_id = json.loads(listed.stdout)["batches"][0]["batch"]["batch_id"]
    as_json = re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))
    shows(ok(run("inspect", session, "--batch", batch_id, store=store)), one_line(session), one_line(key), as_json)
    shows(ok(run("explain", session, store=store)), one_line(session))
    shows(ok(run("expect", session, "--next-text", text, store=store)), escape_control(repr(text)),
          one_line(session))
    shows(ok(run("expect", session, "--count", "7", store=store), 1), one_line(session))
    shows(ok(run("claim", session, "--owner", owner, store=store)), one_line(session), one_line(owner),
          *lines_of(text))
    shows(ok(run("inspect", session, store=store)), f"held by {one_line(owner)}")
    shows(ok(run("log", store=store)), one_line(session), one_line(key), one_line(owner))
    shows(ok(run("doctor", store=store)), where)
    other = folder / "other.json"
    ok(run("enqueue", "x", "--text", "x", store=other))
    shows(ok(CliRunner().invoke(app, ["diff", str(other), str(store)], env=ENV), 1), one_line(session), where)
    shows(ok(run("inspect", session, "--batch", "qwb:" + text, store=store), 5),
          escape_control(re.sub(r"[ \t\n\r]+", " ", "qwb:" + text)))
    shows(watch_frame(store, session), one_line(session), where)


def watch_frame(store: Path, session: str) -> str:
    """One frame of `turnq watch`, drawn as the watcher draws it, without colours."""
    from rich.console import Console

    from turnq import Queue, render_debug

    queue = Queue(store, now=NOW)
    frame = render_debug.watch_frame(queue.inspect(session), queue.store.location, 5000, None)
    out = io.StringIO()
    Console(file=out, width=5000, color_system=None).print(frame)
    text = out.getvalue()
    assert not RAW_CONTROL.search(text), repr(text)
    return text


# ----------------------------------------------------------------- the repro


def test_brackets_in_a_text_are_text(tmp_path):
    store = tmp_path / "q.json"
    text = "see [/] and [b]bold[/b]"
    enqueued = ok(run("enqueue", "s", "--text", text, store=store))
    assert f'"{text}"' in enqueued  # the items column: nothing parsed, nothing vanished
    claimed = ok(run("claim", "s", store=store))
    assert text in claimed and "lease token" in claimed
    made = json.loads(ok(run("inspect", "s", "--json", store=store)))["batches"][0]
    assert made["claim"]["lease_token"] in claimed.replace("\n", "").replace("│", "").replace(" ", "")


def test_terminal_sequences_in_a_text_are_shown_escaped(tmp_path):
    store = tmp_path / "q.json"
    out = ok(run("enqueue", "s", "--text", "\x1b[2J\x1b[31mred\x07\x9b", store=store))
    assert "\\x1b[2J\\x1b[31mred\\x07\\x9b" in out
    out = ok(run("claim", "s", store=store))
    assert "\\x1b[2J\\x1b[31mred\\x07\\x9b" in out


def test_errors_and_notes_stay_one_line_and_escaped(tmp_path):
    store = tmp_path / "q.json"
    ok(run("enqueue", "s", "--text", "x", store=store))
    result = run("cancel", "s\x1b[2J\nforged", "qwb:1234", store=store)
    assert result.exit_code == 5 and result.stderr.count("\n") == 1
    assert "\x1b" not in result.stderr and "\\x1b[2J" in result.stderr
    ok(run("enqueue", "s", "--text", "x", "--source-key", "k\x1b]0;title\x07", store=store))
    replay = run("enqueue", "s", "--text", "y", "--source-key", "k\x1b]0;title\x07", store=store)
    assert replay.exit_code == 0 and "\x1b" not in replay.stderr and "\\x1b]0;title\\x07" in replay.stderr


# ----------------------------------------------------------------- rendering after a write never fails


def broken(*_args, **_kwargs):
    raise RuntimeError("renderer bug")


def test_a_failing_renderer_after_enqueue_still_prints_the_batch(tmp_path, monkeypatch):
    from turnq import render

    monkeypatch.setattr(render, "enqueued", broken)
    result = run("enqueue", "s", "--text", "x", store=tmp_path / "q.json")
    assert result.exit_code == 0
    batch = json.loads(result.stdout)
    assert batch["session_id"] == "s" and batch["batch_id"].startswith("qwb:")
    [warning] = result.stderr.splitlines()
    assert warning.startswith("turnq: warning: ") and "RuntimeError" in warning


def test_a_failing_renderer_after_claim_still_prints_the_lease_token(tmp_path, monkeypatch):
    from turnq import render

    store = tmp_path / "q.json"
    ok(run("enqueue", "s", "--text", "x", store=store))
    monkeypatch.setattr(render, "claim", broken)
    result = run("claim", "s", store=store)
    assert result.exit_code == 0 and "turnq: warning:" in result.stderr
    made = json.loads(result.stdout)
    monkeypatch.undo()
    assert run("complete", "--claim", json.dumps(made), store=store).exit_code == 0  # the token works


@pytest.mark.parametrize("command, renderer", [("renew", "renewed"), ("abandon", "released"),
                                               ("complete", "completed")])
def test_a_failing_renderer_after_settling_prints_json(tmp_path, monkeypatch, command, renderer):
    from turnq import render

    store = tmp_path / "q.json"
    ok(run("enqueue", "s", "--text", "x", store=store))
    made = json.loads(ok(run("claim", "s", "--json", store=store)))
    monkeypatch.setattr(render, renderer, broken)
    result = run(command, "--claim", json.dumps(made), store=store)
    assert result.exit_code == 0 and "turnq: warning:" in result.stderr
    assert json.loads(result.stdout)


def test_escape_control_is_readable():
    assert escape_control("a\x1b[2Jb\nc\td\x7f\x85é[b]") == "a\\x1b[2Jb\\nc\\td\\x7f\\x85é[b]"
    assert escape_control("line\nnext\x07", keep_newlines=True) == "line\nnext\\x07"
    assert escape_control("plain [/] text") == "plain [/] text"
