"""The Typer application and the one place where errors become exit codes.

`TurnqGroup.main` runs every command in non-standalone mode and maps what comes
out: a `TurnqError` → its exit status and one line on stderr (a JSON object with
`--json`); a usage error from option parsing → exit 2 and one line; anything else
is a bug → exit 70 (`internal`, sysexits' EX_SOFTWARE, never 1: that is a failed
check) with one line asking to report it; `TURNQ_DEBUG=1` adds the traceback.
Data in a message (session ids, keys, file names) has its control characters
escaped: one line stays one line and cannot drive the terminal.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..errors import ExitStatus, TurnqError
from ..textsafe import escape_control
from .helptext import root_epilog


class ReaderLeft(Exception):
    """stdout's reader went away (`turnq log | head`). Not an OSError, so that Typer's own
    handler (which exits 1) lets it through to `TurnqGroup.main` (which exits 141)."""


class TurnqGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from .helptext import polish

        polish(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        # The registry's order (turnq.cli.MODULES), whichever module happened to load first.
        from . import COMMANDS, MODULES

        names = super().list_commands(ctx)
        rank = {module: index for index, module in enumerate(MODULES)}
        return sorted(names, key=lambda name: rank.get(COMMANDS.get(name, ""), len(rank)))

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:  # `--help` is printed while the context is made
            ctx = super().make_context(info_name, list(args), parent=parent, **extra)
        except BrokenPipeError:
            raise ReaderLeft from None
        # Kept so `enqueue` can recover how --text and --image interleave on the line.
        ctx.meta["turnq.argv"] = list(args)
        return ctx

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise ReaderLeft from None

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        json_mode = "--json" in argv
        try:
            _refuse_undecodable(argv)
            result = super().main(args=argv, prog_name=prog_name or "turnq", complete_var=complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) else ExitStatus.OK
            # Output still buffered (`--json`, export, help) meets a reader that left here, not at exit.
            sys.stdout.flush()
        except TurnqError as err:
            code = report_error(err.exit_status, _with_hint(err), json_mode)
        except typer.Abort:  # a prompt was cut short (Ctrl-C, end of input): an interruption
            code = report_error(INTERRUPTED, "aborted", json_mode)
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            code = INTERRUPTED
        except (BrokenPipeError, ReaderLeft):  # `turnq inspect | head`: the reader left; stop quietly, as Unix tools do
            _silence_stdout()
            code = 141
        except typer.TyperException as err:  # click's usage errors, vendored by Typer
            code = _usage_error(err, json_mode)
        except Exception as err:  # a bug: one line; the traceback on request
            code = _internal_error(err, json_mode)
        _store_warnings()
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


def _with_hint(err: TurnqError) -> str:
    """The message, and for an unreadable store where to look next."""
    if err.exit_status == ExitStatus.STORE_UNREADABLE and "turnq doctor" not in err.message:
        return f"{err.message} (run 'turnq doctor' on this store to see what is wrong)"
    return err.message


def exit_on_broken_pipe(write: Any) -> None:
    """Run `write` (output outside any command, e.g. `--version`); 141 if the reader left."""
    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(141)


def _store_warnings() -> None:
    """What the stores kept to say about writes that happened (a lost audit-log entry): the
    command's exit code stays the operation's, and the warning goes to stderr."""
    module = sys.modules.get(f"{__package__}.options")
    if module is not None:
        try:
            module.show_store_warnings()
        except OSError:  # stderr is gone: nothing more to do
            pass


def _refuse_undecodable(argv: list[str]) -> None:
    """Python hands bytes that are not UTF-8 over as lone surrogates, which would fail much later
    (writing the store, printing): refuse them here, naming the option they were given to."""
    from ..errors import InvalidInput

    for index, arg in enumerate(argv):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            if arg.startswith("--") and "=" in arg:
                where, _, shown = shown.partition("=")
            elif index and argv[index - 1].startswith("-") and "=" not in argv[index - 1]:
                where = argv[index - 1]
            else:
                where = "an argument"
            raise InvalidInput(f"{where}: '{shown}' is not valid UTF-8") from None


INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
#: Set to 1 to get the traceback of an internal error on stderr.
DEBUG_ENV = "TURNQ_DEBUG"


def _internal_error(err: BaseException, json_mode: bool) -> int:
    import os

    debug = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if debug:
        traceback.print_exc()
    where = "the traceback above" if debug else f"the output of the same command run with {DEBUG_ENV}=1"
    detail = str(err)
    return report_error(ExitStatus.INTERNAL, f"internal error ({type(err).__name__}{': ' + detail if detail else ''}): "
                        f"this is a bug in turnq; please report it with {where}", json_mode)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (e.g. under CliRunner)
        pass
    finally:
        os.close(devnull)


def _usage_error(err: Any, json_mode: bool) -> int:
    if type(err).__name__ == "NoArgsIsHelpError":  # `turnq` alone: show the help
        sys.stderr.write(err.format_message() + "\n")
        return ExitStatus.USAGE
    message = one_line(err.format_message().replace("Value error, ", ""))
    command = getattr(getattr(err, "ctx", None), "command_path", None)
    if command:
        message += f" (see '{command} --help')"
    return report_error(ExitStatus.USAGE, message, json_mode)


def one_line(message: str) -> str:
    """Runs of spaces, tabs and line breaks as one space. (Not str.split(): that also eats the
    separators U+001C-U+001F and U+0085 of data in a message, which escape_control shows.)"""
    return re.sub(r"[ \t\n\r]+", " ", message).strip(" ")


def report_error(status: ExitStatus, message: str, json_mode: bool) -> int:
    """One line on stderr: `turnq: error: …`, or `{"error": CODE_NAME, "message": …}` with --json."""
    line = one_line(message)
    if json_mode:  # json.dumps escapes only C0; C1 and DEL must not reach a terminal either
        sys.stderr.write(json.dumps({"error": status.code_name, "message": escape_control(line)},
                                    ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"turnq: error: {escape_control(line)}\n")
    return status


app = typer.Typer(
    cls=TurnqGroup,
    name="turnq",
    help="A durable turn queue for LLM agent runtimes: enqueue, claim, complete and inspect queued work.",
    epilog=root_epilog(),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_line() -> str:
    """`turnq 1.0.0`: the installed distribution's version (package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"turnq {version('turnq')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "turnq (version unknown: not installed)"


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(version_line() + "\n")
        raise typer.Exit()


VersionOpt = Annotated[bool, typer.Option(
    "--version", "-V", is_eager=True, callback=_show_version, help="Print turnq's version and exit.")]


@app.callback()
def _root(version: VersionOpt = False) -> None:
    # Only carries the group's own options (--version is handled by its eager callback);
    # the group's help text is the one given to typer.Typer above.
    return None
