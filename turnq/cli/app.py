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
from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import ExitStatus, TurnqError
from ..textsafe import escape_control


class TurnqGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        # The registry's order (turnq.cli.MODULES), whichever module happened to load first.
        from . import COMMANDS, MODULES

        names = super().list_commands(ctx)
        rank = {module: index for index, module in enumerate(MODULES)}
        return sorted(names, key=lambda name: rank.get(COMMANDS.get(name, ""), len(rank)))

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        ctx = super().make_context(info_name, list(args), parent=parent, **extra)
        # Kept so `enqueue` can recover how --text and --image interleave on the line.
        ctx.meta["turnq.argv"] = list(args)
        return ctx

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        json_mode = "--json" in argv
        try:
            result = super().main(args=argv, prog_name=prog_name or "turnq", complete_var=complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) else ExitStatus.OK
        except TurnqError as err:
            code = report_error(err.exit_status, err.message, json_mode)
        except typer.Abort:  # a prompt was cut short (Ctrl-C, end of input): an interruption
            code = report_error(INTERRUPTED, "aborted", json_mode)
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            code = INTERRUPTED
        except BrokenPipeError:  # `turnq inspect | head`: the reader left; stop quietly, as Unix tools do
            _silence_stdout()
            code = 141
        except typer.TyperException as err:  # click's usage errors, vendored by Typer
            code = _usage_error(err, json_mode)
        except Exception as err:  # a bug: one line; the traceback on request
            code = _internal_error(err, json_mode)
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


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
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
