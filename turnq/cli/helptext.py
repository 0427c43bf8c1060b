"""Help that reads well: metavars, per-command examples, and `turnq --help`'s closing sections.

Typer shows a Python type as an option's metavar (`<list[str]>`, `<str>`) and a
parameter's Python name as an argument's (`{session}`). `polish` gives every
parameter without an explicit metavar a word a person understands (`DURATION`,
`TIME`, `SESSION`), and every command its "Examples" epilog. It runs once per
built command group (`TurnqGroup.__init__`), so a new command or option is
covered without repeating the metavar at each declaration.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument

#: Option name → metavar, for options whose type says too little (all `str`).
OPTION_METAVARS = {
    "--store": "PATH|URL", "--from": "PATH|URL", "--to": "PATH|URL",
    "--now": "TIME", "--available-at": "TIME", "--since": "TIME|DURATION",
    "--ttl": "DURATION", "--delay": "DURATION", "--older-than": "DURATION", "--lock-timeout": "DURATION",
    "--interval": "DURATION", "--stale-after": "DURATION",
    "--owner": "OWNER", "--batch": "BATCH_ID", "--claim-id": "CLAIM_ID", "--lease-token": "TOKEN",
    "--process-id": "PROCESS_ID", "--wake-id": "WAKE_ID", "--event-type": "TYPE", "--scope-id": "SCOPE_ID",
    "--source-key": "KEY", "--dedupe-key": "KEY", "--idempotency-key": "KEY", "--reason": "TEXT",
    "--next-text": "TEXT",
}

#: Command → 1-3 real command lines (each runs as shown on the README's session store).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "claim": ("turnq claim root --owner worker-a --ttl 5m --json > claim.json",
              "turnq claim root --boundary active_turn_checkpoint --dry-run"),
    "complete": ("turnq complete --claim @claim.json",
                 "turnq claim root --json | turnq complete --claim -"),
    "renew": ("turnq renew --claim @claim.json --ttl 10m",),
    "abandon": ("turnq abandon --claim @claim.json",),
    "cancel": ("turnq cancel root qwb:52cc55faa9",),
    "vacuum": ("turnq vacuum --dry-run", "turnq vacuum root --older-than 7d"),
    "enqueue": ('turnq enqueue root --text "Summarise the build log" --source-key host:msg-1',
                "turnq enqueue root --text @prompt.txt --image shot=screen.png --delay 1h30m",
                "turnq enqueue --draft @drafts.jsonl --json"),
    "wake": ('turnq wake root --process-id build-7 --sequence 3 --input "build finished"',
             "tail -1 build.log | turnq wake root --process-id build-7 --sequence 4 --input -"),
    "reset-session": ('turnq reset-session root --reason "user pressed /clear"',),
    "refresh-tools": ('turnq refresh-tools root --reason "MCP server restarted"',),
    "inspect": ("turnq inspect", "turnq inspect root --pending", "turnq inspect root --batch qwb:52cc --json"),
    "import": ("turnq import examples/fixtures/chat.toml --store ci.json",
               "turnq export --json | turnq import - --store copy.json"),
    "export": ("turnq export --output queue.json", "turnq export root --format toml"),
    "expect": ("turnq expect root --count 2 --state ready", "turnq expect root --next-text 'hi'"),
    "diff": ("turnq diff turnq.json examples/fixtures/chat.toml",),
    "schema": ("turnq schema draft > draft.schema.json", "turnq schema"),
    "migrate": ("turnq migrate --from turnq.json --to sqlite:///turnq.db",),
    "explain": ("turnq explain root", "turnq explain root qwb:52cc --json"),
    "log": ("turnq log root --since 10m", "turnq log --json --follow"),
    "watch": ("turnq watch root",),
    "doctor": ("turnq doctor", "turnq doctor --fix --dry-run"),
    "config": ("turnq config", "turnq config set tombstone-retention 7d", "turnq config get tombstone-retention --json"),
    "work": ("turnq work root -- ./handle-turn.sh",
             "turnq work root --wait 30s --ttl 1m --max-claims 100 --json -- python handler.py",
             "turnq work root --idle-exit --on-failure keep -- ./handle-turn.sh"),
}

EXIT_CODES = {
    "ok": "done (also an idempotent replay)",
    "internal": "a bug in turnq: one line asking for a report (TURNQ_DEBUG=1: the traceback)",
    "check_failed": "expect/diff/doctor: a check does not hold",
    "usage": "bad option, value, JSON or payload",
    "empty": "claim: nothing to claim now",
    "lease_lost": "the claim no longer holds its batches; cancel of a held batch",
    "not_found": "unknown batch; a store that does not exist, given to a command that reads",
    "conflict": "a replay with different payloads under --strict",
    "store_unreadable": "store corrupt or of a newer schema ('turnq doctor' says why)",
    "store_busy": "the store lock was not free within --lock-timeout",
    "store_unwritable": "the store could not be written; it is left as it was",
    "limit": "a store counter would pass its limit; nothing changed",
}

ENVIRONMENT = (
    ("TURNQ_STORE", "--store (default turnq.json)"),
    ("TURNQ_NOW", "--now: a fixed clock"),
    ("TURNQ_OWNER", "claim --owner"),
    ("TURNQ_LOCK_TIMEOUT", "--lock-timeout (default 10s)"),
    ("TURNQ_LOG", "off: keep no audit log"),
    ("TURNQ_LOG_MAX_ENTRIES", "audit-log entries kept (default 10000)"),
    ("TURNQ_MAX_INPUT_BYTES", "the largest input file read (default 64 MiB)"),
    ("TURNQ_MAX_IMAGE_BYTES", "the largest image (default 4 MiB)"),
    ("TURNQ_DEBUG", "1: an internal error (exit 70) prints its traceback"),
)


def _block(title: str, lines: list[str]) -> str:
    # `\b` keeps Click from re-flowing the lines into one paragraph.
    return f"\b\n{title}:\n" + "\n".join(f"  {line}" for line in lines)


def root_epilog() -> str:
    """Exit codes and TURNQ_* variables, for the end of `turnq --help`."""
    from ..errors import ExitStatus

    codes = sorted((int(status), name == "CHECK_FAILED", name.lower())
                   for name, status in ExitStatus.__members__.items())
    rows = [(str(value), name, EXIT_CODES.get(name, "")) for value, _, name in codes]
    rows.append(("130", "(SIGINT)", "interrupted; turnq work: its claim abandoned (143: SIGTERM)"))
    rows.append(("141", "(SIGPIPE)", "the reader of stdout left (turnq ... | head)"))
    width = max(len(name) for _, name, _ in rows)
    exits = [f"{value:>3}  {name:<{width}}  {meaning}".rstrip() for value, name, meaning in rows]
    env_width = max(len(name) for name, _ in ENVIRONMENT)
    env = [f"{name:<{env_width}}  {meaning}" for name, meaning in ENVIRONMENT]
    return _block("Exit codes", exits) + "\n\n" + _block("Environment", env)


def examples_epilog(command: str) -> str | None:
    lines = EXAMPLES.get(command)
    return None if not lines else _block("Examples", list(lines))


class _Argument(TyperArgument):
    """An argument shown by its metavar alone: SESSION, [SESSION], [SESSION]..., SHAPE."""

    def _usage_display_name(self) -> str:
        name = self.metavar or self.name.upper()
        name = name if self.required else f"[{name}]"
        return name + "..." if self.nargs != 1 else name

    def display_type_rich(self, ctx: Any) -> str | None:
        choices = getattr(self.type_descriptor, "choices", None) if self.type_descriptor.is_choice else None
        return "{" + "|".join(str(c) for c in choices) + "}" if choices else None


def _option_metavar(param: Any) -> str:
    name = max(param.opts, key=len)
    if name in OPTION_METAVARS:
        return OPTION_METAVARS[name]
    descriptor = param.type_descriptor
    if descriptor.is_choice and descriptor.choices:
        return "|".join(str(choice) for choice in descriptor.choices)
    return "N" if descriptor.annotation is int else "TEXT"


def polish(commands: dict[str, Any]) -> None:
    """Metavars and examples for every command (left alone where a declaration sets them)."""
    for name, command in commands.items():
        if command.epilog is None:
            command.epilog = examples_epilog(name)
        for param in command.params:
            if param.param_type_name == "argument":
                if type(param) is TyperArgument:
                    param.__class__ = _Argument  # a subclass that only changes how it is shown
                # `[SESSION]...` declared for Typer's old display: the bare word, as usage adds the rest
                # (a metavar of several words, `-- COMMAND [ARGS]`, is left as written)
                metavar = param.metavar or param.name.upper()
                param.metavar = metavar.strip("[].") if " " not in metavar else metavar
            elif param.metavar is None and not param.is_flag and not param.hidden:
                param.metavar = _option_metavar(param)
